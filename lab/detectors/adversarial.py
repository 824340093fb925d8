"""Candidate adversarial-signal detectors (issue 12), numpy reference implementations.

The domain detectors (KD, LID, MGM, UAD, NRD in reference.py) answer "is this image unlike the clean training
images?". These answer "does the decision carry adversarial structure?": how the decision behaves under
deterministic squeezers (views.py), how coherent the model's layers are with its logits, how close the decision is
to the boundary. Every detector is fitted on clean data only and calibrated conformally like the others:
p = (1 + #{calibration scores >= s}) / (n + 1) (reference.conformal_p).

Interface (sklearn-like): __init__ stores the parameters; fit(F, pred, labels=None) with F a dict of feature arrays
(base outputs under their manifest names, e.g. `logits`, `penultimate`, `stage2_mean`; a view's outputs under
`<view>/<output>`, e.g. `median2/logits`), pred the predicted class per row, labels the ground-truth class of clean
training rows (only DkNN reads them); score(F, pred) -> float64 [n], higher = more suspicious; `requires` lists the
features read. All maths in float64 on float32 inputs.

Detectors:
- FeatureSqueezing  Xu, Evans & Qi (NDSS 2018): distance between the base image's output and each squeezed view's
                    output, max over views. metric 'l1' = L1 norm of the softmax difference (the paper's);
                    'margin' = drop of the base-predicted class's logit margin under the view; 'penultimate' =
                    relative L2 change of the pooled features. No fitted state.
- SqueezeGaussian   (this work) a Ledoit-Wolf Gaussian of the clean logit changes under the views
                    (z - z_view, concatenated over views); squared Mahalanobis.
- Coherence         in the spirit of NIC (Ma et al., NDSS 2019): clean-fit ridge probes from tapped layers to the
                    logits and from a layer to the next; per probe the squared Mahalanobis distance of the residual
                    (actual - probe) under the clean covariance of out-of-fold residuals; the log of it standardised
                    by its clean out-of-fold mean / sd; fused by max over probes.
- Margin            logit margin z_c - max_{j != c} z_j of the predicted class c: 'low' scores -margin (near the
                    boundary), 'two_sided' scores |log margin - mu| / sd (near the boundary or over-confident;
                    mu, sd of the clean log margins).
- Energy            Liu et al. (NeurIPS 2020): E = -logsumexp(z); 'high' scores E, 'two_sided' |E - mu| / sd.
- DkNN              Papernot & McDaniel (2018), deep k-nearest neighbours: per layer the k nearest clean training
                    rows (Euclidean, standardised features); nonconformity = number of neighbours, over all layers,
                    whose training label differs from the predicted class.
"""
import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp, softmax

from reference import conformal_p, maha2, tied_gaussian  # noqa: F401  (conformal_p re-exported for callers)

LOG_FLOOR = 1e-12


def margin_of(z, c=None):
    """Logit margin of class c (default: the argmax) per row: z_c - max_{j != c} z_j."""
    z = np.asarray(z, dtype=np.float64)
    if c is None:
        c = z.argmax(1)
    rows = np.arange(len(z))
    zc = z[rows, c]
    other = z.copy()
    other[rows, c] = -np.inf
    return zc - other.max(1)


class FeatureSqueezing:
    def __init__(self, views=('median2',), metric='margin', combine='max'):  # the TypeScript defaults (SQUEEZE_DEFAULTS)
        self.views, self.metric, self.combine = list(views), metric, combine

    @property
    def requires(self):
        out = 'penultimate' if self.metric == 'penultimate' else 'logits'
        return [out] + ['%s/%s' % (v, out) for v in self.views]

    def fit(self, F, pred=None, labels=None):
        return self

    def view_distances(self, F):
        cols = []
        if self.metric == 'penultimate':
            h = np.asarray(F['penultimate'], dtype=np.float64)
            hn = np.linalg.norm(h, axis=1)
            for v in self.views:
                hv = np.asarray(F[v + '/penultimate'], dtype=np.float64)
                cols.append(np.linalg.norm(h - hv, axis=1) / np.maximum(hn, LOG_FLOOR))
        else:
            z = np.asarray(F['logits'], dtype=np.float64)
            c = z.argmax(1)
            p = softmax(z, axis=1)
            m = margin_of(z, c)
            for v in self.views:
                zv = np.asarray(F[v + '/logits'], dtype=np.float64)
                if self.metric == 'l1':
                    cols.append(np.abs(p - softmax(zv, axis=1)).sum(1))
                elif self.metric == 'margin':
                    cols.append(m - margin_of(zv, c))
                else:
                    raise ValueError(self.metric)
        return np.stack(cols, 1)

    def score(self, F, pred=None):
        D = self.view_distances(F)
        return D.max(1) if self.combine == 'max' else D.sum(1)


class SqueezeGaussian:
    def __init__(self, views=('median2', 'bits5')):
        self.views = list(views)

    @property
    def requires(self):
        return ['logits'] + ['%s/logits' % v for v in self.views]

    def _delta(self, F):
        z = np.asarray(F['logits'], dtype=np.float64)
        return np.concatenate([z - np.asarray(F[v + '/logits'], dtype=np.float64) for v in self.views], 1)

    def fit(self, F, pred=None, labels=None):
        means, self.prec_ = tied_gaussian(self._delta(F))
        self.mean_ = means[0]
        return self

    def score(self, F, pred=None):
        return maha2(self._delta(F), self.mean_, self.prec_)


def _stack(F, names):
    return np.concatenate([np.asarray(F[n], dtype=np.float64) for n in names], 1)


class Ridge:
    """Ridge regression on standardised inputs (unit variance per column), centred target:
    W = (Xs^T Xs + alpha * n * I)^-1 Xs^T (Y - mean Y); prediction = Xs W + mean Y."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, Y):
        self.x_mean_ = X.mean(0)
        sd = X.std(0)
        self.x_scale_ = np.where(sd > 0, sd, 1.0)
        Xs = (X - self.x_mean_) / self.x_scale_
        self.y_mean_ = Y.mean(0)
        n, d = Xs.shape
        A = Xs.T @ Xs + self.alpha * n * np.eye(d)
        self.W_ = np.linalg.solve(A, Xs.T @ (Y - self.y_mean_))
        return self

    def predict(self, X):
        return ((X - self.x_mean_) / self.x_scale_) @ self.W_ + self.y_mean_


class Coherence:
    """probes: list of (source layer names, target layer names); target 'logits' means the model's logits."""

    def __init__(self, probes=None, alpha=1.0, folds=5, fuse='max'):
        self.probes = probes or [(['stage1_mean', 'stage1_std'], ['logits']), (['stage2_mean', 'stage2_std'], ['logits']),
                                 (['stage3_mean', 'stage3_std'], ['logits'])]
        self.alpha, self.folds, self.fuse = alpha, folds, fuse

    @property
    def requires(self):
        return sorted({n for s, t in self.probes for n in s + t})

    def fit(self, F, pred=None, labels=None):
        self.models_ = []
        n = len(F['logits'])
        fold = np.arange(n) % self.folds
        for src, tgt in self.probes:
            X, Y = _stack(F, src), _stack(F, tgt)
            R = np.empty_like(Y)
            for k in range(self.folds):
                tr, te = fold != k, fold == k
                R[te] = Y[te] - Ridge(self.alpha).fit(X[tr], Y[tr]).predict(X[te])
            means, prec = tied_gaussian(R)
            s = np.log(np.maximum(maha2(R, means[0], prec), LOG_FLOOR))
            self.models_.append(dict(ridge=Ridge(self.alpha).fit(X, Y), r_mean=means[0], prec=prec,
                                     log_mean=s.mean(), log_sd=max(s.std(ddof=1), LOG_FLOOR)))
        return self

    def probe_scores(self, F):
        cols = []
        for (src, tgt), m in zip(self.probes, self.models_):
            R = _stack(F, tgt) - m['ridge'].predict(_stack(F, src))
            s = np.log(np.maximum(maha2(R, m['r_mean'], m['prec']), LOG_FLOOR))
            cols.append((s - m['log_mean']) / m['log_sd'])
        return np.stack(cols, 1)

    def score(self, F, pred=None):
        Z = self.probe_scores(F)
        return Z.max(1) if self.fuse == 'max' else Z.mean(1)


class Margin:
    def __init__(self, mode='low'):
        self.mode = mode

    requires = ['logits']

    def fit(self, F, pred=None, labels=None):
        lm = np.log(np.maximum(margin_of(F['logits']), LOG_FLOOR))
        self.mu_, self.sd_ = lm.mean(), max(lm.std(ddof=1), LOG_FLOOR)
        return self

    def score(self, F, pred=None):
        m = margin_of(F['logits'])
        if self.mode == 'low':
            return -m
        return np.abs(np.log(np.maximum(m, LOG_FLOOR)) - self.mu_) / self.sd_


class Energy:
    def __init__(self, mode='high'):
        self.mode = mode

    requires = ['logits']

    def fit(self, F, pred=None, labels=None):
        e = -logsumexp(np.asarray(F['logits'], dtype=np.float64), axis=1)
        self.mu_, self.sd_ = e.mean(), max(e.std(ddof=1), LOG_FLOOR)
        return self

    def score(self, F, pred=None):
        e = -logsumexp(np.asarray(F['logits'], dtype=np.float64), axis=1)
        return e if self.mode == 'high' else np.abs(e - self.mu_) / self.sd_


class DkNN:
    def __init__(self, layers=(('stage2_mean',), ('stage3_mean',), ('penultimate',)), k=50, bank=2000, seed=20240601):
        self.layers, self.k, self.bank, self.seed = [list(l) for l in layers], k, bank, seed

    @property
    def requires(self):
        return sorted({n for l in self.layers for n in l})

    def fit(self, F, pred=None, labels=None):
        n = len(labels)
        idx = np.arange(n)
        if n > self.bank:
            idx = np.sort(np.random.RandomState(self.seed).choice(n, self.bank, replace=False))
        self.bank_index_ = idx
        self.bank_labels_ = np.asarray(labels)[idx]
        self.banks_ = []
        for l in self.layers:
            X = _stack(F, l)
            mu, sd = X.mean(0), X.std(0)
            sd = np.where(sd > 0, sd, 1.0)
            self.banks_.append((mu, sd, (X[idx] - mu) / sd))
        return self

    def score(self, F, pred):
        pred = np.asarray(pred)
        out = np.zeros(len(pred))
        for l, (mu, sd, B) in zip(self.layers, self.banks_):
            X = (_stack(F, l) - mu) / sd
            for i in range(0, len(X), 512):
                d = cdist(X[i:i + 512], B)
                nn = np.argpartition(d, self.k - 1, axis=1)[:, :self.k]
                out[i:i + 512] += (self.bank_labels_[nn] != pred[i:i + 512, None]).sum(1)
        return out


# ------------------------------------------------------------------------------------------- p-value merging
def merge_bonferroni(P):
    """P [n, k] -> min(1, k * min p): valid under any dependence."""
    P = np.atleast_2d(P)
    return np.minimum(1.0, P.shape[1] * P.min(1))


def merge_twice_mean(P):
    """P [n, k] -> min(1, 2 * mean p): valid under any dependence (Vovk & Wang 2020, arithmetic mean, r = 1)."""
    P = np.atleast_2d(P)
    return np.minimum(1.0, 2.0 * P.mean(1))


MERGERS = {'bonferroni': merge_bonferroni, 'twice_mean': merge_twice_mean}


CLASSES = {c.__name__: c for c in (FeatureSqueezing, SqueezeGaussian, Coherence, Margin, Energy, DkNN)}


def build(spec):
    """A detector from a JSON spec: {"class": "FeatureSqueezing", "views": [...], "metric": "l1", ...}; keys other
    than the constructor's parameters ("class", "calibration", "about", "reads") are ignored."""
    kw = {k: v for k, v in spec.items() if k not in ('class', 'calibration', 'about', 'reads')}
    return CLASSES[spec['class']](**kw)
