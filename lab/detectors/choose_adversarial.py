"""Choose the shipped adversarial-signal detectors from the DEV split only (issue 12).

    /usr/bin/python3 lab/detectors/choose_adversarial.py data/eval-dev/scores.csv [--out data/eval-dev/choice.json]

Input: the scores.csv of `warden eval --clean-split calibration` on the dev rows (dev attacks and dev corruptions:
seeded detector_fit images, never test) with the candidate bundle (lab/detectors/adversarial_candidates.json).
Negatives: the clean calibration rows. For every adversarial-signal candidate alone and every pair and triple of
them, merged by Bonferroni (k * min p) and twice the mean (2 * mean p; Vovk & Wang 2020), it reports:
- benign: the worst block rate (p <= 0.005) and flag rate (p <= 0.05) over the dev corruptions at severity 1-2;
- attacks: TPR at p <= 0.01 per dev attack x eps, the worst over the L-inf attacks at eps >= 2/255, and AUROC of
  -log p for the minimal-norm attacks (CW-L2, DeepFool, PGD-L2 0.5).
The choice: among the sets whose benign rates pass the goals (block <= 1 %, flag <= 10 % at severity 1-2), the one
with the highest worst-case L-inf TPR at eps >= 2/255, ties broken by mean minimal-norm AUROC, then fewer detectors
(fewer views = cheaper scans).
"""
import csv
import itertools
import json
import math
import sys

import numpy as np
from scipy.stats import rankdata

ADVERSARIAL_KINDS = ('squeeze', 'sqzg', 'coherence', 'margin', 'energy')
CANDIDATES = __import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), 'adversarial_candidates.json')
BLOCK, FLAG, OP = 0.005, 0.05, 0.01


def auroc(neg, pos):
    neg, pos = np.asarray(neg), np.asarray(pos)
    ranks = rankdata(np.concatenate([neg, pos]))  # ties share their mean rank
    rp = ranks[len(neg):].sum()
    return (rp - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos))


def main():
    path = sys.argv[1]
    out = sys.argv[sys.argv.index('--out') + 1] if '--out' in sys.argv else None
    rows = list(csv.DictReader(open(path)))
    dets = [c[:-2] for c in rows[0] if c.endswith('_p') and c[:-2].split('_')[0] in ADVERSARIAL_KINDS]
    P = {d: np.array([float(r[d + '_p']) for r in rows]) for d in dets}
    kind = np.array([r['kind'] or 'clean' for r in rows])
    split = np.array([r['split'] for r in rows])
    attack = np.array([r['attack'] for r in rows])
    eps = np.array([r['eps'] for r in rows])
    sev = np.array([r.get('severity', '') for r in rows])
    succ = np.array([r['success'] in ('1', 'true', 'True') for r in rows])
    clean = (kind == 'clean') & (split == 'calibration')
    adv_groups = sorted({(a, e) for a, e, k, s in zip(attack, eps, kind, succ) if k == 'adversarial' and s})
    ben_groups = sorted({(a, s) for a, s, k in zip(attack, sev, kind) if k == 'benign' and s in ('1', '2')})
    print('dev rows: %d clean calibration, %d adversarial groups, %d benign groups (severity 1-2); candidates: %s' % (
        clean.sum(), len(adv_groups), len(ben_groups), ', '.join(dets)))

    def linf_ge2(a, e):
        return a in ('fgsm', 'pgd_linf', 'mim', 'bim') and e and float(e) >= 2

    def minimal(a, e):
        return a in ('cw_l2', 'cw_l2_k0', 'deepfool') or (a == 'pgd_l2' and e == '0.5')

    spec = {s['id']: s for s in json.load(open(CANDIDATES))}

    def views_of(combo):
        return sorted({v for d in combo for v in (spec.get(d, {}).get('params', {}).get('views') or
                                                   (['median2', 'bits5'] if spec.get(d, {}).get('kind') in ('squeeze', 'sqzg') else []))})

    ben_masks = {'%s s%s' % (a, s): np.where((kind == 'benign') & (attack == a) & (sev == s))[0] for a, s in ben_groups}
    adv_masks = {'%s %s' % (a, e): np.where((kind == 'adversarial') & (attack == a) & (eps == e) & succ)[0] for a, e in adv_groups}
    results = []
    for k in (1, 2, 3):
        for combo in itertools.combinations(dets, k):
            # one view set per squeezer family member at most: combos of two squeeze variants are allowed (they read views)
            M = np.stack([P[d] for d in combo], 1)
            for rule in (('bonferroni', 'twice-mean') if k > 1 else ('single',)):
                p = np.minimum(1, M.min(1) * k) if rule in ('bonferroni', 'single') else np.minimum(1, 2 * M.mean(1))
                score = -np.log(np.maximum(p, 1e-300))
                ben = {}
                for name, m in ben_masks.items():
                    ben[name] = (float((p[m] <= BLOCK).mean()), float((p[m] <= FLAG).mean()))
                adv = {}
                for name, m in adv_masks.items():
                    adv[name] = (float((p[m] <= OP).mean()), float(auroc(score[clean], score[m])), int(len(m)))
                worst_block = max(v[0] for v in ben.values()) if ben else 0.0
                worst_flag = max(v[1] for v in ben.values()) if ben else 0.0
                linf = [adv['%s %s' % g][0] for g in adv_groups if linf_ge2(*g)]
                mins = [adv['%s %s' % g][1] for g in adv_groups if minimal(*g)]
                results.append(dict(members=list(combo), rule=rule, views=views_of(combo), worst_block=worst_block, worst_flag=worst_flag,
                                    clean_flag=float((p[clean] <= FLAG).mean()),
                                    worst_linf_tpr1=min(linf) if linf else float('nan'),
                                    mean_minimal_auroc=float(np.mean(mins)) if mins else float('nan'),
                                    min_minimal_auroc=min(mins) if mins else float('nan'), benign=ben, attacks=adv))
    ok = [r for r in results if r['worst_block'] <= 0.01 and r['worst_flag'] <= 0.10]
    key = lambda r: (r['worst_linf_tpr1'], r['mean_minimal_auroc'], -len(r['views']), -len(r['members']))
    print('\nBest passing sets per number of views (cost: one extra image per view in the batch):')
    for n in sorted({len(r['views']) for r in ok}):
        for r in sorted([r for r in ok if len(r['views']) == n], key=key, reverse=True)[:5]:
            print('  %d views %-30s %-52s %-10s linf %5.1f%%  blk %.1f%% flag %.1f%%' % (n, ','.join(r['views']), '+'.join(r['members']), r['rule'],
                                                                                100 * r['worst_linf_tpr1'], 100 * r['worst_block'], 100 * r['worst_flag']))
    for title, pool in (('all candidates', results), ('passing the benign goals', ok)):
        print('\nTop 15 by worst L-inf TPR@1%% at eps >= 2, %s:' % title)
        print('%-55s %-10s %7s %7s %7s %7s %7s %s' % ('members', 'rule', 'blk%', 'flag%', 'linf', 'minAUC', 'meanAUC', 'views'))
        for r in sorted(pool, key=key, reverse=True)[:15]:
            print('%-55s %-10s %7.1f %7.1f %7.1f %7.3f %7.3f %s' % ('+'.join(r['members']), r['rule'], 100 * r['worst_block'], 100 * r['worst_flag'],
                                                            100 * r['worst_linf_tpr1'], r['min_minimal_auroc'], r['mean_minimal_auroc'], ','.join(r['views'])))
    print('\nSingle detectors:')
    for r in sorted([r for r in results if r['rule'] == 'single'], key=key, reverse=True):
        print('%-20s blk %5.1f%% flag %5.1f%% (worst benign s1-2: %s) linf %5.1f%% minimal AUROC %.3f / mean %.3f; clean flag %.1f%%' % (
            r['members'][0], 100 * r['worst_block'], 100 * r['worst_flag'], max(r['benign'], key=lambda b: r['benign'][b][1]),
            100 * r['worst_linf_tpr1'], r['min_minimal_auroc'], r['mean_minimal_auroc'], 100 * r['clean_flag']))
    best = max(ok, key=key) if ok else None
    if best:
        print('\nCHOICE: %s (%s)' % ('+'.join(best['members']), best['rule']))
        for g, v in best['attacks'].items():
            print('  %-22s TPR@1%% %5.1f%%  AUROC %.3f  n=%d' % (g, 100 * v[0], v[1], v[2]))
        for g, v in best['benign'].items():
            print('  %-22s block %5.1f%%  flag %5.1f%%' % (g, 100 * v[0], 100 * v[1]))
    if out:
        json.dump({'choice': best, 'ranked': sorted(results, key=key, reverse=True)[:50]}, open(out, 'w'), indent=1)


if __name__ == '__main__':
    main()
