"""Reference implementations (numpy / scipy / scikit-learn) of Warden's detectors KD, LID, MGM and UAD.

They are written independently of the TypeScript code in src/detectors, from the same definitions, so that the
parity test (test/unit/detectors-parity.test.ts, golden vectors written by make_golden.py) checks the maths, not
a transliteration:

- KD   Gaussian KDE on the predicted class's bank (sklearn.neighbors.KernelDensity holds the bank; the density is
       an exact scipy logsumexp over cdist distances -- KernelDensity.score_samples itself is off by up to 70 %
       relative far from the data); score = -log density. Bandwidth: leave-one-out log-likelihood over grid * median pairwise distance.
- LID  exact k-NN by scipy cdist (sklearn's brute NearestNeighbors uses a cancelling dot-product expansion), MLE
       LID from the k nearest bank rows per layer (bank rows exclude themselves); log-LID vector -> squared Mahalanobis under a Ledoit-Wolf Gaussian of the bank's vectors.
- MGM  sklearn.covariance.ledoit_wolf on centred penultimate features, numpy inverse, squared Mahalanobis.
- UAD  per layer: class means + tied Ledoit-Wolf covariance of within-class residuals; layer score = min over
       classes of squared Mahalanobis; per-layer p-values against the even-indexed half A of the calibration set
       (default 'tail': conformal (1 + #{A >= s}) / (n_A + 2) in the bulk, exponential tail fitted to the top
       tail_k A scores beyond; or log-normal; or conformal); Cauchy
       combination; final conformal p-value against the odd-indexed half.

All maths in float64 on float32 inputs. Run with /usr/bin/python3 (Debian numpy/scipy/sklearn).
"""
import numpy as np
from scipy.special import erfc, logsumexp
from scipy.spatial.distance import cdist, pdist
from sklearn.covariance import ledoit_wolf
from sklearn.neighbors import KernelDensity, NearestNeighbors

LID_MIN_DISTANCE = 1e-12
KD_GRID = [0.05, 0.0707, 0.1, 0.1414, 0.2, 0.2828, 0.4, 0.5657, 0.8, 1.1314]


def conformal_p(cal, s):
    """(1 + #{cal >= s}) / (n + 1), vectorised over s."""
    cal = np.sort(np.asarray(cal, dtype=np.float64))
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    count_ge = len(cal) - np.searchsorted(cal, s, side='left')
    return (1.0 + count_ge) / (len(cal) + 1.0)


def tied_gaussian(X, labels=None, k=1):
    """Means (k x d) and precision of the Ledoit-Wolf covariance of residuals (+ the same tiny ridge as TS)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.zeros(len(X), dtype=int) if labels is None else np.asarray(labels)
    d = X.shape[1]
    means = np.full((k, d), np.nan)
    for c in range(k):
        if np.any(labels == c):
            means[c] = X[labels == c].mean(axis=0)
    R = X - means[labels]
    if d == 1:
        cov = np.array([[np.mean(R[:, 0] ** 2)]])
    else:
        cov, _ = ledoit_wolf(R, assume_centered=True)
    ridge = max(np.trace(cov) / d, 1e-12) * 1e-9
    cov = cov + ridge * np.eye(d)
    return means, np.linalg.inv(cov)


def maha2(X, mean, prec):
    V = np.asarray(X, dtype=np.float64) - mean
    return np.einsum('ij,jk,ik->i', V, prec, V)


# ----------------------------------------------------------------------------------------------------- KD
class KD:
    def __init__(self, layer='penultimate', bandwidth=None, grid=KD_GRID):
        self.layer, self.bandwidth, self.grid = layer, bandwidth, grid

    def fit(self, layers, pred, num_classes, bank_index=None, selection_index=None):
        X = np.asarray(layers[self.layer], dtype=np.float64)
        rows = [np.flatnonzero(pred == c) for c in range(num_classes)]
        if self.bandwidth is None:
            sel = rows if selection_index is None else selection_index
            self.bandwidth_ = select_bandwidth(X, sel, self.grid)
        else:
            self.bandwidth_ = self.bandwidth
        bank = rows if bank_index is None else bank_index
        self.kdes_ = [KernelDensity(kernel='gaussian', bandwidth=self.bandwidth_).fit(X[b]) if len(b) else None for b in bank]
        return self

    def score(self, layers, pred, exact=True):
        """-log density. exact=True: logsumexp over exact squared distances (scipy cdist). exact=False: sklearn
        KernelDensity.score_samples, which agrees in the bulk but loses precision far from the data (measured up
        to 0.7 relative on 8/255 attacks), so the parity checks use the exact form."""
        X = np.asarray(layers[self.layer], dtype=np.float64)
        out = np.empty(len(X))
        h = self.bandwidth_
        for c, kde in enumerate(self.kdes_):
            m = pred == c
            if not m.any():
                continue
            if kde is None:
                out[m] = np.inf
            elif not exact:
                out[m] = -kde.score_samples(X[m])
            else:
                B = kde.tree_.data if hasattr(kde, 'tree_') else None
                B = np.asarray(B)
                D = B.shape[1]
                ll = logsumexp(-cdist(X[m], B, 'sqeuclidean') / (2 * h * h), axis=1) - np.log(len(B)) - D / 2 * np.log(2 * np.pi * h * h)
                out[m] = -ll
        return out


def select_bandwidth(X, rows_per_class, grid):
    D = X.shape[1]
    d2s = [cdist(X[r], X[r], 'sqeuclidean') for r in rows_per_class]
    allpairs = np.sort(np.concatenate([pdist(X[r], 'sqeuclidean') for r in rows_per_class if len(r) > 1]))
    median = np.sqrt(allpairs[(len(allpairs) - 1) // 2])
    best, best_ll = None, -np.inf
    for g in grid:
        h = g * median
        tot, cnt = 0.0, 0
        for d2 in d2s:
            n = len(d2)
            if n < 2:
                continue
            E = -d2 / (2 * h * h)
            np.fill_diagonal(E, -np.inf)
            ll = logsumexp(E, axis=1) - np.log(n - 1) - D / 2 * np.log(2 * np.pi * h * h)
            tot += ll.sum()
            cnt += n
        if tot / cnt > best_ll:
            best, best_ll = h, tot / cnt
    return best


# ---------------------------------------------------------------------------------------------------- LID
def mle_lid(dist):
    """dist: (n, k) ascending neighbour distances -> MLE LID per row."""
    d = np.maximum(dist, LID_MIN_DISTANCE)
    m = np.mean(np.log(d / d[:, -1:]), axis=1)
    return np.where(m < 0, -1.0 / np.where(m < 0, m, -1.0), 1.0 / LID_MIN_DISTANCE)


class LID:
    def __init__(self, layers, k=20):
        self.layers, self.k = list(layers), k

    def fit(self, layers, bank_index=None):
        n = len(next(iter(layers.values())))
        self.bank_index_ = np.arange(n) if bank_index is None else np.asarray(bank_index)
        self.banks_, vecs = [], []
        for l in self.layers:
            B = np.asarray(layers[l], dtype=np.float64)[self.bank_index_]
            dist = self._knn(B, B, self.k + 1)
            vecs.append(np.log(mle_lid(dist[:, 1:])))  # drop self (distance 0)
            self.banks_.append(B)
        V = np.stack(vecs, axis=1)
        means, self.prec_ = tied_gaussian(V)
        self.mean_ = means[0]
        return self

    @staticmethod
    def _knn(X, B, k, chunk=256):
        """Ascending distances to the k nearest rows of B, from exact differences (scipy cdist). sklearn's
        NearestNeighbors(algorithm='brute') uses the |x|^2 + |b|^2 - 2 x.b expansion, which cancels badly for
        close neighbours of large-norm features (LID off by up to 8 % relative on the real features)."""
        out = []
        for i in range(0, len(X), chunk):
            d = cdist(X[i:i + chunk], B, 'euclidean')
            part = np.partition(d, k - 1, axis=1)[:, :k]
            out.append(np.sort(part, axis=1))
        return np.concatenate(out)

    def lid_vectors(self, layers):
        cols = []
        for l, B in zip(self.layers, self.banks_):
            cols.append(mle_lid(self._knn(np.asarray(layers[l], dtype=np.float64), B, self.k)))
        return np.stack(cols, axis=1)

    def score(self, layers, pred=None):
        return maha2(np.log(self.lid_vectors(layers)), self.mean_, self.prec_)


# ---------------------------------------------------------------------------------------------------- MGM
class MGM:
    def __init__(self, layer='penultimate'):
        self.layer = layer

    def fit(self, layers):
        means, self.prec_ = tied_gaussian(layers[self.layer])
        self.mean_ = means[0]
        return self

    def score(self, layers, pred=None):
        return maha2(layers[self.layer], self.mean_, self.prec_)


# ---------------------------------------------------------------------------------------------------- NRD
class NRD:
    """One Ledoit-Wolf Gaussian on (optionally log-transformed) residual statistics; squared Mahalanobis."""

    def __init__(self, layer='residual_stats', transform='none', offset=1e-3):
        self.layer, self.transform, self.offset = layer, transform, offset

    def _tf(self, X):
        X = np.asarray(X, dtype=np.float64)
        return np.log(np.maximum(X, 0) + self.offset) if self.transform == 'log' else X

    def fit(self, layers):
        X = self._tf(layers[self.layer])
        if self.transform == 'log':
            X = X.astype(np.float32)  # TS stores the transformed training matrix as float32
        means, self.prec_ = tied_gaussian(X)
        self.mean_ = means[0]
        return self

    def score(self, layers, pred=None):
        return maha2(self._tf(layers[self.layer]), self.mean_, self.prec_)


# ---------------------------------------------------------------------------------------------------- UAD
class UAD:
    def __init__(self, layers, combine='bonferroni', layer_p='tail', tail_k=40):
        self.layers, self.combine, self.layer_p, self.tail_k = list(layers), combine, layer_p, tail_k

    def fit(self, layers, pred, num_classes):
        self.g_ = [tied_gaussian(layers[l], pred, num_classes) for l in self.layers]
        return self

    def layer_scores(self, layers):
        cols = []
        for l, (means, prec) in zip(self.layers, self.g_):
            X = np.asarray(layers[l], dtype=np.float64)
            d = np.stack([maha2(X, m, prec) for m in means if not np.isnan(m[0])], axis=1)
            cols.append(d.min(axis=1))
        return np.stack(cols, axis=1)

    def split_calibration(self, cal_layers):
        n = len(next(iter(cal_layers.values())))
        a, b = np.arange(0, n, 2), np.arange(1, n, 2)
        S = self.layer_scores({l: np.asarray(cal_layers[l])[a] for l in self.layers})
        self.layer_cal_ = [np.sort(S[:, i]) for i in range(S.shape[1])]
        L = np.log(np.maximum(S, 1e-300))
        self.log_mean_ = L.mean(axis=0)
        sd = L.std(axis=0, ddof=1) if len(L) > 1 else np.ones(L.shape[1])
        self.log_sd_ = np.where(sd > 0, sd, 1.0)
        return b

    def score(self, layers, pred=None):
        S = self.layer_scores(layers)
        if self.layer_p == 'tail':
            cols = []
            for i, c in enumerate(self.layer_cal_):
                n = len(c)
                k = min(self.tail_k, n)
                u = c[n - k]
                beta = max(np.mean(c[n - k:] - u), 1e-12)
                cnt = n - np.searchsorted(c, S[:, i], side='left')
                tail = np.maximum(k / (n + 2.0) * np.exp(-(S[:, i] - u) / beta), 1e-300)
                cols.append(np.where(cnt >= k, (1.0 + cnt) / (n + 2.0), tail))
            P = np.stack(cols, axis=1)
        elif self.layer_p == 'lognormal':
            Z = (np.log(np.maximum(S, 1e-300)) - self.log_mean_) / self.log_sd_
            P = np.maximum(0.5 * erfc(Z / np.sqrt(2)), 1e-300)
        else:
            P = np.stack([conformal_p(c, S[:, i]) * (len(c) + 1) / (len(c) + 2) for i, c in enumerate(self.layer_cal_)], axis=1)
        if self.combine == 'cauchy':
            return np.mean(np.where(P < 0.5, 1 / np.tan(np.minimum(P, 0.5) * np.pi), np.tan((0.5 - P) * np.pi)), axis=1)
        if self.combine == 'fisher':
            return -2 * np.sum(np.log(P), axis=1)
        return -np.log(P.min(axis=1))


def subset(layers, idx):
    return {k: np.asarray(v)[idx] for k, v in layers.items()}


def fit_all(train, cal, num_classes, kd_kwargs=None, lid_kwargs=None, uad_layers=None, lid_layers=None, nrd_kwargs=None):
    """Fits the four detectors as `warden fit` does; returns {name: (detector, calibration scores)}."""
    kd_kwargs = kd_kwargs or {}
    lid_kwargs = lid_kwargs or {}
    all_layers = sorted(train['layers'])
    out = {}
    kd = KD(**{k: v for k, v in kd_kwargs.items() if k in ('layer', 'bandwidth', 'grid')})
    kd.fit(train['layers'], train['pred'], num_classes, kd_kwargs.get('bank_index'), kd_kwargs.get('selection_index'))
    out['kd'] = (kd, kd.score(cal['layers'], cal['pred']))
    lid = LID(lid_layers or all_layers, k=lid_kwargs.get('k', 20)).fit(train['layers'], lid_kwargs.get('bank_index'))
    out['lid'] = (lid, lid.score(cal['layers']))
    mgm = MGM().fit(train['layers'])
    out['mgm'] = (mgm, mgm.score(cal['layers']))
    uad = UAD(uad_layers or all_layers).fit(train['layers'], train['pred'], num_classes)
    b = uad.split_calibration(cal['layers'])
    out['uad'] = (uad, uad.score(subset(cal['layers'], b)))
    if nrd_kwargs is not None:
        nrd = NRD(**nrd_kwargs).fit(train['layers'])
        out['nrd'] = (nrd, nrd.score(cal['layers']))
    return out
