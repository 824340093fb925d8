"""Seed baselines on a feature dump from `warden features`, in the row format `warden eval --baselines` merges.

Unsupervised (fit on clean training splits only, thresholds from the clean calibration split):
  iforest   IsolationForest on standardised concatenated feature layers
  ocsvm     One-class SVM (RBF, nu=0.05, gamma='scale') on the same, fitted on a 2,000-row subsample
Supervised (trained WITH adversarial examples -- labelled supervised everywhere):
  dfeat     RandomForest on raw penultimate features (adversarial vs clean)
  qfeat     features binarised at the clean-train median, RBF SVM
  lr_scores logistic regression over Warden's own detector scores (scores.csv of a first `warden eval` run,
            --scores), the supervised mode of the KD/LID papers
  Protocol: 2-fold split of the clean test images by `source`; a fold's model is trained on the other fold's
  clean test rows and successful adversarial rows (all attacks), scores this fold (out-of-fold), and its
  operating points come from its own scores on the clean calibration split.

    /usr/bin/python3 lab/detectors/baselines.py --features data/features --out data/eval/baselines.json \
        --train model_train,detector_fit --calibration calibration
"""
import argparse
import json
import os
import sys
import time
import zlib

import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, OneClassSVM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle import read_dump, select  # noqa: E402


def conformal_p(cal, s):
    cal = np.sort(cal)
    return (1.0 + len(cal) - np.searchsorted(cal, s, side='left')) / (len(cal) + 1.0)


def truthy(v):
    return str(v).strip() in ('1', 'true', 'True', 'TRUE', 'yes')


def concat(layers, names):
    return np.concatenate([layers[n] for n in names], axis=1).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--features', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--train', default='model_train,detector_fit')
    ap.add_argument('--calibration', default='calibration')
    ap.add_argument('--clean-split', default='test')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--scores', help='scores.csv of a `warden eval` run: adds lr_scores (supervised)')
    a = ap.parse_args()
    t0 = time.time()
    dump = read_dump(a.features)
    names = sorted(dump['layers'])
    train = select(dump, a.train.split(','))
    cal = select(dump, a.calibration.split(','))
    meta = dump['meta']
    test_clean = np.array([i for i, m in enumerate(meta) if (m.get('kind') or 'clean') == 'clean' and m.get('split') == a.clean_split])
    adv = np.array([i for i, m in enumerate(meta) if m.get('kind') == 'adversarial'])
    benign = np.array([i for i, m in enumerate(meta) if m.get('kind') == 'benign'])
    X_all = concat(dump['layers'], names)
    P_all = dump['layers']['penultimate'].astype(np.float64)

    scores, pvals = {}, {}
    # ---------------- unsupervised
    sc = StandardScaler().fit(concat(train['layers'], names))
    Xtr = sc.transform(concat(train['layers'], names))
    Xcal = sc.transform(concat(cal['layers'], names))
    Xa = sc.transform(X_all)
    rng = np.random.default_rng(a.seed)
    ifo = IsolationForest(n_estimators=300, random_state=a.seed).fit(Xtr)
    scores['iforest'] = -ifo.score_samples(Xa)
    pvals['iforest'] = conformal_p(-ifo.score_samples(Xcal), scores['iforest'])
    sub = rng.choice(len(Xtr), size=min(2000, len(Xtr)), replace=False)
    oc = OneClassSVM(kernel='rbf', nu=0.05, gamma='scale').fit(Xtr[sub])
    scores['ocsvm'] = -oc.score_samples(Xa)
    pvals['ocsvm'] = conformal_p(-oc.score_samples(Xcal), scores['ocsvm'])

    # ---------------- supervised, 2-fold by source
    def fold_of(m):
        return zlib.crc32(m.get('source', '').encode()) % 2

    folds = np.array([fold_of(m) for m in meta])
    succ = np.array([i for i in adv if truthy(meta[i].get('success'))], dtype=int)
    med = np.median(train['layers']['penultimate'], axis=0)
    Q_all = (P_all > med).astype(np.float64)
    Pcal = cal['layers']['penultimate'].astype(np.float64)
    Qcal = (Pcal > med).astype(np.float64)
    for name, feats, featcal, make in [
        ('dfeat', P_all, Pcal, lambda: RandomForestClassifier(n_estimators=300, random_state=a.seed, n_jobs=2)),
        ('qfeat', Q_all, Qcal, lambda: SVC(kernel='rbf', gamma='scale', C=1.0, random_state=a.seed)),
    ]:
        s = np.full(len(meta), np.nan)
        p = np.full(len(meta), np.nan)
        for f in (0, 1):
            tr = np.concatenate([test_clean[folds[test_clean] != f], succ[folds[succ] != f]])
            y = np.concatenate([np.zeros((folds[test_clean] != f).sum()), np.ones((folds[succ] != f).sum())])
            clf = make().fit(feats[tr], y)
            score = (lambda X: clf.predict_proba(X)[:, 1]) if hasattr(clf, 'predict_proba') and name == 'dfeat' else clf.decision_function
            ev = np.flatnonzero(folds == f)
            ev = ev[np.isin(ev, np.concatenate([test_clean, adv, benign]))]
            s[ev] = score(feats[ev])
            p[ev] = conformal_p(score(featcal), s[ev])
        scores[name], pvals[name] = s, p

    supervised = {'iforest': False, 'ocsvm': False, 'dfeat': True, 'qfeat': True, 'lr_scores': True}
    if a.scores:
        import csv
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        with open(a.scores, newline='') as f:
            srows = list(csv.DictReader(f))
        cols = [c for c in srows[0] if c.endswith('_score')]
        by_file = {r['file']: r for r in srows}

        def feat(i):
            r = by_file.get(meta[i]['file'])
            return [np.sign(float(r[c])) * np.log1p(abs(float(r[c]))) for c in cols] if r else [np.nan] * len(cols)
        S_all = np.array([feat(i) for i in range(len(meta))])
        S_all = np.nan_to_num(S_all, nan=0.0, posinf=50.0, neginf=-50.0)
        # calibration rows are not in scores.csv (eval scores test/adversarial/benign only): use out-of-fold clean
        # test scores for the operating points of this one, and say so.
        s = np.full(len(meta), np.nan)
        for f in (0, 1):
            tr = np.concatenate([test_clean[folds[test_clean] != f], succ[folds[succ] != f]])
            y = np.concatenate([np.zeros((folds[test_clean] != f).sum()), np.ones((folds[succ] != f).sum())])
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(S_all[tr], y)
            ev = np.flatnonzero(folds == f)
            s[ev] = clf.decision_function(S_all[ev])
        scores['lr_scores'] = s
        pvals['lr_scores'] = np.full(len(meta), np.nan)
        for f in (0, 1):
            ref = s[test_clean[folds[test_clean] == f]]
            ev = np.flatnonzero(folds == f)
            pvals['lr_scores'][ev] = conformal_p(ref, s[ev])
    rows, ben, clean_rows = [], [], []
    groups = {}
    for i in adv:
        groups.setdefault((meta[i].get('attack', ''), meta[i].get('eps', ''), meta[i].get('norm', '')), []).append(i)
    for (att, eps, norm), ix in sorted(groups.items()):
        ok = np.array([i for i in ix if truthy(meta[i].get('success'))], dtype=int)
        for d in scores:
            if len(ok):
                y = np.r_[np.zeros(len(test_clean)), np.ones(len(ok))]
                auc = float(roc_auc_score(y, np.r_[scores[d][test_clean], scores[d][ok]]))
            else:
                auc = float('nan')
            rows.append(dict(attack=att, eps=eps, norm=norm, detector=d, supervised=supervised[d], n_adv=int(len(ok)),
                             n_attempted=len(ix), n_clean=int(len(test_clean)), auroc=auc,
                             tpr_at_fpr_1=float(np.mean(pvals[d][ok] <= 0.01)) if len(ok) else float('nan'),
                             tpr_at_fpr_5=float(np.mean(pvals[d][ok] <= 0.05)) if len(ok) else float('nan')))
    shifts = {}
    for i in benign:
        shifts.setdefault(meta[i].get('attack') or 'benign', []).append(i)
    for sh, ix in sorted(shifts.items()):
        for d in scores:
            ben.append(dict(shift=sh, detector=d, supervised=supervised[d], n=len(ix),
                            flag_rate_5=float(np.mean(pvals[d][ix] <= 0.05)), flag_rate_1=float(np.mean(pvals[d][ix] <= 0.01))))
    for d in scores:
        pc = pvals[d][test_clean]
        clean_rows.append(dict(detector=d, supervised=supervised[d], n=int(len(test_clean)), flag_rate_5=float(np.mean(pc <= 0.05)),
                               flag_rate_1=float(np.mean(pc <= 0.01)), flag_rate_05=float(np.mean(pc <= 0.005))))
    notes = ['Lab baselines (lab/detectors/baselines.py, %.0f s): iforest and ocsvm are unsupervised (fit on clean %s); '
             'dfeat and qfeat are SUPERVISED (trained with successful adversarial examples of all attacks, 2-fold by source '
             'image, out-of-fold scores; their clean-test flag rates are out-of-fold too).' % (time.time() - t0, a.train)]
    if a.scores:
        notes.append('lr_scores is SUPERVISED: logistic regression over the Warden detector scores, 2-fold by source image; its '
                     'operating points come from the out-of-fold clean TEST scores (the calibration split is not scored by '
                     '`warden eval`), so its TPR columns are optimistic and its clean flag rate is ~nominal by construction.')
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, 'w') as f:
        json.dump(dict(rows=rows, benign=ben, clean=clean_rows, notes=notes), f, indent=1)
    print('wrote %s: %d rows in %.1f s' % (a.out, len(rows), time.time() - t0))


if __name__ == '__main__':
    main()
