"""Measure the adversarial-signal candidates (adversarial.py) and the domain detectors (reference.py), and the
candidate policies built from them, on the dev set (every choice) or the test set (final numbers, once).

    /usr/bin/python3 lab/detectors/eval_adversarial.py dev     # -> data/adversarial/dev.json (+ printed tables)
    /usr/bin/python3 lab/detectors/eval_adversarial.py test    # -> data/adversarial/test.json, policy from lab/detectors/adversarial_policy.json

Protocol (lab/README.md, "Dev set"):
- dev: detectors fitted on clean model_train + detector_fit minus the 200 dev images; negatives = the 200 clean dev
  images; positives = successful attacks on the dev images; benign = dev corruptions; plus the foreign radiographs.
- test: detectors fitted on clean model_train + detector_fit (as the shipped bundle); negatives = the 624 clean
  test images; positives = successful attacks on test images; benign = test corruptions and the four original
  shifts; foreign radiographs.
- both: calibrated on the clean calibration split only; p = (1 + #{cal >= s}) / (n + 1); TPR at 1 % / 5 % FPR =
  share of positives with p <= 0.01 / 0.05; flag = p <= 0.05, block = p <= 0.005 (policy.flagFpr / blockFpr).
"""
import itertools
import json
import os
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import adversarial as A  # noqa: E402
import reference as R  # noqa: E402
from bundle import read_bundle  # noqa: E402
from common import DATA, REPO, log  # noqa: E402
from extract_views import load  # noqa: E402

OUT = os.path.join(DATA, 'adversarial')
FLAG, BLOCK = 0.05, 0.005
POLICY_FILE = os.path.join(HERE, 'adversarial_policy.json')
DOMAIN_LAYERS = ['penultimate', 'residual_stats', 'stage1_mean', 'stage1_std', 'stage2_mean', 'stage2_std', 'stage3_mean',
                 'stage3_std', 'stage4_mean', 'stage4_std']


# ---------------------------------------------------------------------------------------------------- data
def cat(parts):
    F = {}
    keys = set.intersection(*[set(p[0]) for p in parts])
    for k in keys:
        F[k] = np.concatenate([p[0][k] for p in parts])
    meta = [m for p in parts for m in p[1]]
    return F, meta


def take(F, meta, mask):
    ix = np.flatnonzero(mask)
    return {k: v[ix] for k, v in F.items()}, [meta[i] for i in ix]


def sort_by_source(F, meta):
    order = np.argsort([m['source'] for m in meta], kind='stable')
    return {k: v[order] for k, v in F.items()}, [meta[i] for i in order]


def build(phase):
    """-> dict of (features, meta): fit, cal, neg, pos, benign, foreign."""
    mt = sort_by_source(*load('clean_model_train'))
    df = sort_by_source(*load('clean_detector_fit'))
    cal = sort_by_source(*load('clean_calibration'))
    foreign = load('foreign')
    if phase == 'dev':
        isdev = np.array([m['attack'] == 'dev' for m in df[1]])
        fit_views = take(*df, ~isdev)
        neg = take(*df, isdev)
        pos = load('dev_adv')
        ben = load('dev_benign')
    else:
        fit_views = df
        neg = load('clean_test')
        pos = load('test_adv')
        ben = load('test_benign')
    fit = cat([fit_views, mt])   # manifest order: detector_fit then model_train, each by source (= the bundle's fit rows)
    # `fit`: base outputs of every fit row; `fit_views`: the detector_fit part, which also has the views' outputs
    return dict(fit=fit, fit_views=fit_views, cal=cal, neg=neg, pos=pos, benign=ben, foreign=foreign)


def pred_of(F):
    return np.asarray(F['logits']).argmax(1)


# ------------------------------------------------------------------------------------------------ detectors
def candidates(views_available):
    """name -> (constructor, calibration mode). Only candidates whose views exist in every set."""
    c = {}
    singles = [v for v in ('bits3', 'bits4', 'bits5', 'bits6', 'bits7', 'median2', 'median3', 'blur') if v in views_available]
    combos = [('median2', 'bits5'), ('median2', 'bits4'), ('median2', 'bits6'), ('median2', 'median3'), ('median3', 'bits5'),
              ('median2', 'blur'), ('median2', 'bits5', 'blur'), ('median2', 'median3', 'bits5'), ('median2', 'median3', 'bits5', 'blur'),
              ('bits5', 'blur'), ('median3', 'blur')]
    combos = [cb for cb in combos if all(v in views_available for v in cb)]
    for metric in ('l1', 'margin', 'penultimate'):
        for vs in [(v,) for v in singles] + combos:
            c['fs_%s_%s' % (metric, '+'.join(vs))] = (lambda vs=vs, metric=metric: A.FeatureSqueezing(vs, metric), 'marginal')
    for vs in [(v,) for v in singles] + combos:
        c['sqg_%s' % '+'.join(vs)] = (lambda vs=vs: A.SqueezeGaussian(vs), 'marginal')
    s = lambda i: ['stage%d_mean' % i, 'stage%d_std' % i]  # noqa: E731
    probe_sets = {
        'logit': [(s(1), ['logits']), (s(2), ['logits']), (s(3), ['logits']), (['stage4_std'], ['logits'])],
        'chain': [(s(1), s(2)), (s(2), s(3)), (s(3), s(4))],
    }
    probe_sets['both'] = probe_sets['logit'] + probe_sets['chain']
    probe_sets['logit23'] = [(s(2), ['logits']), (s(3), ['logits'])]
    for pname, probes in probe_sets.items():
        for alpha in (0.01, 0.1, 1.0):
            c['coh_%s_a%g' % (pname, alpha)] = (lambda probes=probes, alpha=alpha: A.Coherence(probes, alpha), 'marginal')
    c['coh_both_a0.1_mean'] = (lambda: A.Coherence(probe_sets['both'], 0.1, fuse='mean'), 'marginal')
    c['margin_low'] = (lambda: A.Margin('low'), 'marginal')
    c['margin_two'] = (lambda: A.Margin('two_sided'), 'marginal')
    c['margin_two_cc'] = (lambda: A.Margin('two_sided'), 'class')
    c['energy_high'] = (lambda: A.Energy('high'), 'marginal')
    c['energy_two'] = (lambda: A.Energy('two_sided'), 'marginal')
    c['dknn_k50'] = (lambda: A.DkNN(k=50), 'marginal')
    c['dknn_k50_std'] = (lambda: A.DkNN(layers=(('stage2_mean', 'stage2_std'), ('stage3_mean', 'stage3_std'), ('penultimate',)), k=50), 'marginal')
    return c


def pvalues(cal_scores, cal_pred, s, pred, mode):
    if mode == 'marginal':
        return R.conformal_p(cal_scores, s)
    p = np.empty(len(s))
    for k in np.unique(pred):
        m = pred == k
        p[m] = R.conformal_p(cal_scores[cal_pred == k], s[m])
    return p


def domain_detectors(fit, cal, phase):
    """KD, LID, MGM, UAD, NRD as shipped: hyper-parameters, KD bandwidth and KD/LID banks from the bundle on test;
    on dev the same bandwidth with seeded banks drawn from the dev-phase fit rows (same sizes)."""
    header, arrays = read_bundle(os.path.join(REPO, 'models', 'warden-cxr-ref.bundle'))
    dets = {d['id']: d for d in header['detectors']}
    F, fmeta = fit
    pred = pred_of(F)
    n = len(pred)
    layers = {k: F[k] for k in DOMAIN_LAYERS}
    out = {}
    rs = np.random.RandomState(20240601)
    if phase == 'test':
        assert n == header['fit']['n'], (n, header['fit']['n'])
    for did, d in dets.items():
        kind, prm, arr = d['kind'], d['params'], arrays[did]
        if kind == 'kd':
            if phase == 'test':
                bank = [np.asarray(arr['bank_index_%d' % c]) for c in range(2)]
            else:
                bank = [np.sort(rs.choice(np.flatnonzero(pred == c), min(len(arr['bank_index_%d' % c]), int((pred == c).sum())), replace=False)) for c in range(2)]
            det = R.KD(layer=prm['layer'], bandwidth=d['meta']['bandwidth']).fit(layers, pred, 2, bank_index=bank)
            mode = 'class'
        elif kind == 'lid':
            bank = np.asarray(arr['bank_index']) if phase == 'test' else np.sort(rs.choice(n, len(arr['bank_index']), replace=False))
            det = R.LID(d['meta']['layerOrder'], k=prm['k']).fit(layers, bank_index=bank)
            mode = 'marginal'
        elif kind == 'mgm':
            det = R.MGM(prm['layer']).fit(layers)
            mode = 'class'
        elif kind == 'uad':
            det = R.UAD(d['meta']['layerOrder'], prm['combine'], prm.get('layerP', 'tail'), prm.get('tailK', 40)).fit(layers, pred, 2)
            mode = 'uad'
        elif kind == 'nrd':
            det = R.NRD(prm['layer'], prm['transform'], prm['offset']).fit(layers)
            mode = 'marginal'
        else:
            continue
        out[did] = (det, mode)
    return out


def score_all(sets, phase, only=None, with_domain=True):
    """-> {detector: {set name: p-values}}, {detector: {set name: scores}}"""
    fits = {}
    for key in ('fit', 'fit_views'):
        F, fmeta = sets[key]
        fits[key] = (F, pred_of(F), np.array([int(m['label']) for m in fmeta]))
    views = {k.split('/')[0] for k in set.intersection(*[set(s[0]) for k, s in sets.items() if k != 'fit']) if '/' in k}
    cands = candidates(views)
    if only is not None:
        cands = {k: v for k, v in cands.items() if k in only}
    P, S = {}, {}
    calF, calmeta = sets['cal']
    calpred = pred_of(calF)
    evalsets = {k: v for k, v in sets.items() if k not in ('fit', 'fit_views')}
    for name, (ctor, mode) in cands.items():
        t0 = time.time()
        det = ctor()
        F, fpred, labels = fits['fit_views' if any('/' in r for r in det.requires) else 'fit']
        det.fit(F, fpred, labels)
        cs = det.score(calF, calpred)
        P[name], S[name] = {}, {}
        for sn, (G, gm) in evalsets.items():
            gp = pred_of(G)
            s = det.score(G, gp)
            S[name][sn] = s
            P[name][sn] = pvalues(cs, calpred, s, gp, mode)
        log('%-36s %.1fs' % (name, time.time() - t0))
    if with_domain:
        for did, (det, mode) in domain_detectors(sets['fit'], sets['cal'], phase).items():
            t0 = time.time()
            lay = lambda G: {k: G[k] for k in DOMAIN_LAYERS}  # noqa: E731
            if mode == 'uad':
                n = len(calpred)
                b = det.split_calibration(lay(calF))
                cs, cpred = det.score(R.subset(lay(calF), b), calpred[b]), calpred[b]
                mode = 'marginal'
                del n
            else:
                cs, cpred = det.score(lay(calF), calpred), calpred
            P[did], S[did] = {}, {}
            for sn, (G, gm) in evalsets.items():
                gp = pred_of(G)
                s = det.score(lay(G), gp)
                S[did][sn] = s
                P[did][sn] = pvalues(cs, cpred, s, gp, mode)
            log('%-36s %.1fs' % (did, time.time() - t0))
    return P, S


# -------------------------------------------------------------------------------------------------- metrics
def groups(meta, keys):
    g = {}
    for i, m in enumerate(meta):
        g.setdefault(tuple(m[k] for k in keys), []).append(i)
    return {k: np.array(v) for k, v in g.items()}


def auroc(neg, pos):
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    return float(roc_auc_score(y, np.r_[neg, pos]))


def metrics(p, s, sets):
    """p, s: {set: array}. s may be None (policies: -p is the score)."""
    sc = s if s is not None else {k: -v for k, v in p.items()}
    out = {'clean': dict(n=int(len(p['neg'])), flag=float((p['neg'] <= FLAG).mean()), block=float((p['neg'] <= BLOCK).mean()),
                         fpr1=float((p['neg'] <= 0.01).mean()))}
    att = {}
    for key, ix in sorted(groups(sets['pos'][1], ('attack', 'eps')).items()):
        att['%s|%s' % key] = dict(n=int(len(ix)), auroc=auroc(sc['neg'], sc['pos'][ix]), tpr1=float((p['pos'][ix] <= 0.01).mean()),
                                  tpr5=float((p['pos'][ix] <= 0.05).mean()), block=float((p['pos'][ix] <= BLOCK).mean()))
    out['attacks'] = att
    ben = {}
    for key, ix in sorted(groups(sets['benign'][1], ('attack', 'severity')).items()):
        ben['%s|%s' % key] = dict(n=int(len(ix)), flag=float((p['benign'][ix] <= FLAG).mean()), block=float((p['benign'][ix] <= BLOCK).mean()))
    out['benign'] = ben
    out['foreign'] = dict(n=int(len(p['foreign'])), flag=int((p['foreign'] <= FLAG).sum()), block=int((p['foreign'] <= BLOCK).sum()),
                          p=[float(x) for x in p['foreign']])
    return out


GOAL_AUROC = ('cw_l2_k0|', 'deepfool|', 'pgd_l2|0.5')
LINF = ('fgsm', 'bim', 'pgd_linf', 'mim')


def goals(m):
    """The issue's goals on one metrics dict -> dict of booleans / shortfalls."""
    ben = m['benign']
    mild = {k: v for k, v in ben.items() if k.split('|')[1] in ('1', '2')}
    g = {}
    g['benign_block_ok'] = all(v['block'] <= 0.01 for v in mild.values())
    g['benign_flag_ok'] = all(v['flag'] <= 0.10 for v in mild.values())
    g['benign_worst_block'] = max([v['block'] for v in mild.values()] or [0])
    g['benign_worst_flag'] = max([v['flag'] for v in mild.values()] or [0])
    g['benign_flag_violations'] = sorted(k for k, v in mild.items() if v['flag'] > 0.10)
    g['benign_block_violations'] = sorted(k for k, v in mild.items() if v['block'] > 0.01)
    g['foreign_blocked'] = m['foreign']['block']
    att = m['attacks']
    g['auroc_goal'] = {k: att[k]['auroc'] for k in GOAL_AUROC if k in att}
    g['linf_tpr1'] = {k: v['tpr1'] for k, v in att.items() if k.split('|')[0] in LINF and k.split('|')[1] in ('2', '4', '8')}
    g['n_auroc_met'] = sum(v >= 0.99 for v in g['auroc_goal'].values())
    g['n_linf_met'] = sum(v >= 0.95 for v in g['linf_tpr1'].values())
    g['min_linf_tpr1'] = min(g['linf_tpr1'].values()) if g['linf_tpr1'] else None
    g['mean_linf_tpr1'] = float(np.mean(list(g['linf_tpr1'].values()))) if g['linf_tpr1'] else None
    return g


def policy_p(P, members, rule):
    return {sn: A.MERGERS[rule](np.stack([P[d][sn] for d in members], 1)) for sn in P[members[0]]}


def views_of(name):
    """The views a candidate reads (from its name)."""
    if name.startswith(('fs_', 'sqg_')):
        return set(name.split('_')[-1].split('+'))
    return set()


# ------------------------------------------------------------------------------------------------------ main
def main():
    phase = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    t0 = time.time()
    sets = build(phase)
    for k, (F, m) in sets.items():
        log('%-8s n=%d' % (k, len(m)))
    if phase == 'dev':
        P, S = score_all(sets, phase)
        single = {d: metrics(P[d], S[d], sets) for d in P}
        for d in single:
            single[d]['goals'] = goals(single[d])
        # policies: adversarial candidates that pass the benign constraints alone, combined in pairs and triples
        adv = [d for d in single if d not in ('kd', 'lid', 'mgm', 'uad', 'nrd')]
        ok = [d for d in adv if single[d]['goals']['benign_block_ok'] and single[d]['goals']['foreign_blocked'] == 0]
        # keep the strongest few per family for combinations
        def strength(d):
            g = single[d]['goals']
            return (g['n_auroc_met'] + g['n_linf_met'], (g['mean_linf_tpr1'] or 0) + sum(g['auroc_goal'].values()))
        fam = {}
        for d in sorted(ok, key=strength, reverse=True):
            f = d.split('_')[0]
            fam.setdefault(f, [])
            if len(fam[f]) < 4:
                fam[f].append(d)
        pool = [d for f in fam.values() for d in f]
        log('policy pool (%d): %s' % (len(pool), ', '.join(pool)))
        pol = {}
        for k in (1, 2, 3):
            for members in itertools.combinations(pool, k):
                for rule in (('bonferroni',) if k == 1 else ('bonferroni', 'twice_mean')):
                    pp = policy_p(P, list(members), rule)
                    m = metrics(pp, None, sets)
                    m['goals'] = goals(m)
                    m['views'] = sorted(set().union(*[views_of(d) for d in members]))
                    pol['%s:%s' % (rule, '+'.join(members))] = m
        res = dict(phase=phase, single=single, policies=pol, seconds=time.time() - t0)
    else:
        spec = json.load(open(POLICY_FILE))
        need = set(spec['report'])
        for pdef in spec['policies'].values():
            need |= set(pdef['members'])
        P, S = score_all(sets, phase, only=need)
        single = {d: metrics(P[d], S[d], sets) for d in P}
        for d in single:
            single[d]['goals'] = goals(single[d])
        pol = {}
        for name, pdef in spec['policies'].items():
            m = metrics(policy_p(P, pdef['members'], pdef['rule']), None, sets)
            m['goals'] = goals(m)
            pol[name] = m
        res = dict(phase=phase, single=single, policies=pol, spec=spec, seconds=time.time() - t0)
    with open(os.path.join(OUT, phase + '.json'), 'w') as f:
        json.dump(res, f, indent=1)
    np.savez_compressed(os.path.join(OUT, phase + '_pvalues.npz'), **{'%s__%s' % (d, sn): v for d in P for sn, v in P[d].items()})
    log('wrote %s (%.0fs)' % (os.path.join(OUT, phase + '.json'), time.time() - t0))


if __name__ == '__main__':
    main()
