"""Hardening, measured: a squeezer chosen at random per request, attacked with EOT (issue 17, item 4).

    /usr/bin/python3 lab/adaptive/randomized.py [--n 40] [--steps 100] [--eps 2] [--out data/adaptive-randomized]

Candidate policy: per request one view v drawn uniformly from VIEWS; the squeeze score of that view (margin metric,
calibrated on the same clean calibration split as the shipped squeeze: the candidate bundle of the detection issue,
data/candidates.bundle, whose median2 calibration equals the shipped one) replaces the shipped median2 squeeze in the
Bonferroni merge with coherence and margin. Each view's p-value is valid, so the mixture keeps the clean rate.
Two attacks, same budget (orthogonal PGD of full.py, L-inf, random start, 1 restart):
- 'fixed': against the shipped policy (median2 only) — the attacker ignores the randomisation;
- 'eot': the squeeze penalty averaged over every view (expectation over the random choice, Athalye et al. 2018);
  bits views pass the gradient straight through (BPDA), median3 and blur are differentiable.
Each final 8-bit example is judged under both policies: shipped (median2) and randomised (the expected catch rate over
the views' draws). Writes summary.json beside a printed table; docs/adaptive.md quotes it.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.dirname(HERE)
sys.path.insert(0, LAB)
sys.path.insert(0, HERE)
from common import DATA, SEED, image_cache, load_model, log, read_splits  # noqa: E402
from full import Attacker  # noqa: E402
from twins import MEMBERS, Twins, margin_of, median2  # noqa: E402
from bundle import read_bundle  # noqa: E402

VIEWS = ('median2', 'median3', 'bits4', 'bits5', 'blur')
CANDIDATES = os.path.join(DATA, 'candidates.bundle')


def bits(x, b):
    L = float(2 ** b - 1)
    return x + (torch.floor(x * L + 0.5) / L - x).detach()  # BPDA: identity on the backward pass


def median3(x):
    p = F.pad(x, (1, 1, 1, 1), mode='replicate')
    return p.unfold(2, 3, 1).unfold(3, 3, 1).reshape(*x.shape, 9).median(-1).values


def blur(x):
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16.0).view(1, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode='replicate'), k)


VIEW_FN = {'median2': median2, 'median3': median3, 'bits4': lambda x: bits(x, 4), 'bits5': lambda x: bits(x, 5), 'blur': blur}


class ViewTwins(Twins):
    """The shipped twins plus a squeeze score per view, each calibrated like the shipped squeeze."""

    def __init__(self):
        super().__init__()
        _, arr = read_bundle(CANDIDATES)
        if not np.array_equal(np.sort(arr['squeeze_margin_median2']['calibration_scores']), self.cal_np['squeeze']):
            raise SystemExit('the candidate bundle was not calibrated on the shipped calibration split')
        for v in VIEWS:
            cal = np.sort(np.array(arr['squeeze_margin_' + v]['calibration_scores'], dtype=np.float64))
            self.cal_np['sq_' + v], self.cal_t['sq_' + v], self.sd['sq_' + v] = cal, torch.from_numpy(cal), float(np.std(cal)) + 1e-6

    def scores(self, model, x, out=None, extra=False):
        s, z = super().scores(model, x, out, extra)
        c = z.argmax(1)
        m = margin_of(z, c)
        s['sq_median2'] = s['squeeze']
        for v in VIEWS[1:]:
            s['sq_' + v] = m - margin_of(model(VIEW_FN[v](x)), c)
        return s, z

    def merged(self, s, view):
        p = [self.p_value_t('sq_' + view, s['sq_' + view]), self.p_value_t('coherence', s['coherence']), self.p_value_t('margin', s['margin'])]
        return torch.clamp(torch.stack(p, 0).min(0).values * 3, max=1.0)

    def policy(self, s):
        """adv_p: the mean over the views' draws of the merged p (what the EOT attacker maximises when selecting)."""
        out = {'adv_p': torch.stack([self.merged(s, v) for v in VIEWS], 0).mean(0)}
        if 'uad' in s:
            out['uad_p'] = self.p_value_t('uad', s['uad'])
        return out


class EotAttacker(Attacker):
    def __init__(self, model, twins, **kw):
        super().__init__(model, twins, 'cpu', {}, **kw)
        self.thr.update({'sq_' + v: float(twins.threshold('sq_' + v, 0.05 / 3)) for v in VIEWS})

    def penalty(self, s):
        sq = sum(F.relu(s['sq_' + v] - self.thr['sq_' + v]) / self.t.sd['sq_' + v] for v in VIEWS) / len(VIEWS)
        return sq + sum(F.relu(s[k] - self.thr[k]) / self.t.sd[k] for k in ('coherence', 'margin'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=40)
    ap.add_argument('--steps', type=int, default=100)
    ap.add_argument('--eps', type=float, default=2)
    ap.add_argument('--out', default=os.path.join(DATA, 'adaptive-randomized'))
    a = ap.parse_args()
    torch.manual_seed(SEED)
    model, _ = load_model()
    for p in model.parameters():
        p.requires_grad_(False)
    shipped, vt = Twins(), ViewTwins()
    idx, imgs = image_cache()
    test = [r for r in read_splits() if r['split'] == 'test']
    sel = np.load(os.path.join(DATA, 'attacks', 'subset.npz'))['sel'][:a.n]
    x0 = torch.from_numpy(imgs[[idx[test[i]['path']] for i in sel]].astype(np.float32) / 255).unsqueeze(1)
    y = torch.tensor([test[i]['label'] for i in sel])
    rows = []
    for name, att in (('fixed', Attacker(model, shipped, 'cpu', {})), ('eot', EotAttacker(model, vt))):
        t = time.time()
        u8, _, _, _ = att.run('orthogonal', x0, y, a.eps / 255, a.steps, 1, SEED)
        with torch.no_grad():
            s, z = vt.scores(model, u8 / 255)
        fl = (z.argmax(1) != y)
        per_view = {v: vt.merged(s, v) for v in VIEWS}
        row = dict(attack=name, n=a.n, eps=a.eps, steps=a.steps, seconds=round(time.time() - t, 1), flipped=int(fl.sum()),
                   caught_shipped_5=int((fl & (per_view['median2'] <= 0.05)).sum()),
                   caught_shipped_05=int((fl & (per_view['median2'] <= 0.005)).sum()),
                   caught_random_5=float(sum((fl & (per_view[v] <= 0.05)).sum().item() for v in VIEWS) / len(VIEWS)),
                   caught_random_05=float(sum((fl & (per_view[v] <= 0.005)).sum().item() for v in VIEWS) / len(VIEWS)),
                   caught_by_view_5={v: int((fl & (per_view[v] <= 0.05)).sum()) for v in VIEWS})
        rows.append(row)
        log(json.dumps(row))
    os.makedirs(a.out, exist_ok=True)
    json.dump({'views': VIEWS, 'rows': rows}, open(os.path.join(a.out, 'summary.json'), 'w'), indent=1)
    print('| attack | fools the model | caught, shipped policy (median2) 5 % / 0.5 % | caught, random view (expected) 5 % / 0.5 % |')
    print('|---|---|---|---|')
    for r in rows:
        f = max(r['flipped'], 1)
        print('| %s | %d / %d | %.1f %% / %.1f %% | %.1f %% / %.1f %% |' % (
            r['attack'], r['flipped'], r['n'], 100 * r['caught_shipped_5'] / f, 100 * r['caught_shipped_05'] / f,
            100 * r['caught_random_5'] / f, 100 * r['caught_random_05'] / f))


if __name__ == '__main__':
    main()
