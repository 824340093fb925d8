"""Differentiable twins of Warden's detectors (torch), read from the shipped bundle (models/warden-cxr-ref.bundle).

Only torch and numpy: this module also runs on the lab's GPU loan, where there is no pydicom.

- squeeze: margin(z) - margin_c(z_median2), c = argmax z; median2 = (sum - min - max) / 2 of the 2x2 block with the far
  row/column repeated (src/models/views.ts); piecewise linear, so exact gradients flow and no BPDA is needed.
- coherence: per probe r = y - ((x - x_mean) / x_scale) W - y_mean - mean; s = (log r'P r - log_mean) / log_sd; max.
- margin ('low'): -margin(z).
- uad (domain signal): per layer min over classes of the squared Mahalanobis distance under the layer's tied
  covariance; per-layer p-value against calibration half A (conformal in the bulk, exponential tail beyond the
  tailK-th largest score, src/detectors/uad.ts); T = -log min_l p_l.
- nrd: squared Mahalanobis distance of the residual statistics (src/detectors/nrd.ts, transform 'none').
Every twin's p-value is conformal against the bundle's calibration scores, (1 + #{cal >= s}) / (n + 1).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(LAB, 'detectors'))
from bundle import read_bundle  # noqa: E402

BUNDLE = os.path.join(os.path.dirname(LAB), 'models', 'warden-cxr-ref.bundle')
MEMBERS = ('squeeze', 'coherence', 'margin')  # the shipped adversarial signal (Bonferroni)
UAD_LAYERS = ('stage1_mean', 'stage1_std', 'stage2_mean', 'stage2_std', 'stage3_mean', 'stage3_std', 'stage4_mean',
              'stage4_std', 'penultimate', 'residual_stats')


def median2(x):
    """x [N,1,H,W] in [0,1] -> the 2x2 median view (src/models/views.ts)."""
    p = F.pad(x, (0, 1, 0, 1), mode='replicate')
    a, b, c, d = p[..., :-1, :-1], p[..., :-1, 1:], p[..., 1:, :-1], p[..., 1:, 1:]
    lo = torch.maximum(torch.minimum(a, b), torch.minimum(c, d))
    hi = torch.minimum(torch.maximum(a, b), torch.maximum(c, d))
    return (lo + hi) / 2


def margin_of(z, c):
    zc = z.gather(1, c[:, None])[:, 0]
    other = z.masked_fill(F.one_hot(c, z.shape[1]).bool(), -1e9).max(1).values
    return zc - other


class Twins:
    def __init__(self, bundle_path=BUNDLE, device='cpu'):
        header, arrays = read_bundle(bundle_path)
        self.dev = device
        self.det = {d['id']: d for d in header['detectors']}
        f64 = lambda v: torch.from_numpy(np.array(v, dtype=np.float64)).to(device)  # noqa: E731
        f = lambda v: f64(v).float()  # noqa: E731
        coh = self.det['coherence']
        meta = coh['state']['meta']['probes'] if 'state' in coh else coh['meta']['probes']
        self.probes = []
        for i, (m, (src, tgt)) in enumerate(zip(meta, coh['params']['probes'])):
            a = arrays['coherence']
            t = lambda k: f(a['p%d_%s' % (i, k)])  # noqa: E731
            dd, tt = m['d'], m['t']
            self.probes.append(dict(src=src, tgt=tgt, x_mean=t('x_mean'), x_scale=t('x_scale'), y_mean=t('y_mean'),
                                    W=t('w').view(dd, tt), mean=t('mean')[:tt], P=t('precision').view(tt, tt),
                                    log_mean=m['logMean'], log_sd=m['logSd']))
        self.uad = []
        ua = arrays['uad']
        tail_k = self.det['uad']['params']['tailK']
        for l in UAD_LAYERS:
            P = f(ua[l + ':precision'])
            d = int(round(math.sqrt(P.numel())))
            A = np.sort(np.array(ua[l + ':layer_calibration'], dtype=np.float64))
            k = min(tail_k, len(A))
            u = A[len(A) - k]
            beta = max(float(np.mean(A[len(A) - k:] - u)), 1e-12)
            self.uad.append(dict(layer=l, means=f64(ua[l + ':mean']).view(-1, d), P=f64(ua[l + ':precision']).view(d, d), A=torch.from_numpy(A).to(device),
                                 n=len(A), k=k, u=float(u), beta=beta, median=float(np.median(A))))
        na = arrays['nrd']
        d = int(round(math.sqrt(len(na['precision']))))
        self.nrd = dict(mean=f64(na['mean']).view(1, d), P=f64(na['precision']).view(d, d))
        names = MEMBERS + ('uad', 'nrd')
        self.cal_np = {k: np.sort(np.array(arrays[k]['calibration_scores'], dtype=np.float64)) for k in names}
        self.cal_t = {k: torch.from_numpy(v).to(device) for k, v in self.cal_np.items()}
        self.sd = {k: float(np.std(v)) + 1e-6 for k, v in self.cal_np.items()}

    # ------------------------------------------------------------------ scores
    def scores(self, model, x, out=None, extra=False):
        """-> ({detector: score [N]}, logits [N,C]); with extra=True also uad and nrd (and 'uad_layers' [N,L])."""
        if out is None:
            out = model(x, feats=True)
        z = out['logits']
        c = z.argmax(1)
        zv = model(median2(x))
        s = {'squeeze': margin_of(z, c) - margin_of(zv, c)}
        per = []
        for p in self.probes:
            X = torch.cat([out[n] for n in p['src']], 1)
            Y = torch.cat([z if n == 'logits' else out[n] for n in p['tgt']], 1)
            r = Y - ((X - p['x_mean']) / p['x_scale']) @ p['W'] - p['y_mean'] - p['mean']
            q = ((r @ p['P']) * r).sum(1)
            per.append((torch.log(torch.clamp(q, min=1e-12)) - p['log_mean']) / p['log_sd'])
        s['coherence'] = torch.stack(per, 1).max(1).values
        s['margin'] = -margin_of(z, c)
        if extra:
            s.update(self.domain_scores(out))
        return s, z

    def uad_layer_scores(self, out, target=None):
        """[N, L] squared Mahalanobis distances, to the closest class mean (or to `target`'s mean, for HFC)."""
        cols = []
        for g in self.uad:
            v = out[g['layer']].double()  # float64 as in Warden: the quadratic forms lose digits in float32
            diff = v[:, None, :] - g['means'][None]                    # N, K, d
            m2 = torch.einsum('nkd,de,nke->nk', diff, g['P'], diff)
            cols.append(m2.min(1).values if target is None else m2.gather(1, target[:, None])[:, 0])
        return torch.stack(cols, 1)

    def domain_scores(self, out):
        s = self.uad_layer_scores(out)
        logp = []
        for j, g in enumerate(self.uad):
            sj = s[:, j]
            cnt = (g['n'] - torch.searchsorted(g['A'], sj.detach().contiguous(), right=False)).double()
            bulk = torch.log((1 + cnt) / (g['n'] + 2))
            tail = math.log(g['k'] / (g['n'] + 2)) - (sj - g['u']) / g['beta']
            logp.append(torch.where(cnt >= g['k'], bulk, torch.clamp(tail, min=math.log(1e-300))))
        uad = -torch.stack(logp, 1).min(1).values
        r = out['residual_stats'].double() - self.nrd['mean']
        nrd = ((r @ self.nrd['P']) * r).sum(1)
        return {'uad': uad, 'nrd': nrd, 'uad_layers': s}

    # ------------------------------------------------------------------ calibration
    def p_value(self, name, s):
        cal = self.cal_np[name]
        return (1 + (len(cal) - np.searchsorted(cal, s, side='left'))) / (len(cal) + 1)

    def p_value_t(self, name, s):
        cal = self.cal_t[name]
        return (1 + (len(cal) - torch.searchsorted(cal, s.detach().double().contiguous(), right=False))).double() / (len(cal) + 1)

    def threshold(self, name, p):
        """The score above which the conformal p-value is <= p."""
        cal = self.cal_np[name]
        k = int(np.floor(p * (len(cal) + 1))) - 1  # number of calibration scores allowed above
        return cal[len(cal) - 1 - max(k, 0)]

    def policy(self, s):
        """The shipped policy on twin scores: merged adversarial p (Bonferroni over MEMBERS) and the domain p (uad)."""
        pm = torch.stack([self.p_value_t(k, s[k]) for k in MEMBERS], 0).min(0).values * len(MEMBERS)
        out = {'adv_p': torch.clamp(pm, max=1.0)}
        if 'uad' in s:
            out['uad_p'] = self.p_value_t('uad', s['uad'])
        return out
