"""Writes test/fixtures/detectors/golden.json: a small seeded synthetic feature set (train / calibration / test,
three layers, two classes) and the reference scores and p-values of KD, LID, MGM and UAD computed by
reference.py. The TS parity test fits the same detectors on the same features and must match within 1e-5
relative (CI has no Python, so the vectors are committed).

    /usr/bin/python3 lab/detectors/make_golden.py
"""
import base64
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, 'test', 'fixtures', 'detectors', 'golden.json')
LAYERS = {'penultimate': 12, 'stage1_std': 5, 'stage2_mean': 7, 'residual_stats': 6}


def make(rng, n, shift=0.0):
    pred = rng.integers(0, 2, n).astype(np.int32)
    layers = {}
    for i, (name, d) in enumerate(LAYERS.items()):
        A = np.random.default_rng(100 + i).normal(0, 0.4, (d, d)) + np.eye(d)
        mu = np.where(pred[:, None] == 0, 1.5, -1.5) * np.linspace(1, 0.2, d)
        X = mu + rng.normal(size=(n, d)) @ A.T + 4.0
        if shift:
            X = X + shift * rng.normal(size=(n, d))
        # a ReLU-like floor to make the data less Gaussian, as real pooled features are
        layers[name] = np.maximum(X, 0.5).astype(np.float32)
    return {'pred': pred, 'layers': layers}


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode('ascii')


def enc(t):
    return {'n': int(len(t['pred'])), 'predicted': t['pred'].tolist(), 'layers': {k: b64(v) for k, v in t['layers'].items()}}


def main():
    rng = np.random.default_rng(20240611)
    train, cal = make(rng, 240), make(rng, 160)
    test = make(rng, 30)
    shifted = make(rng, 30, shift=1.5)
    tst = {'pred': np.concatenate([test['pred'], shifted['pred']]),
           'layers': {k: np.concatenate([test['layers'][k], shifted['layers'][k]]) for k in LAYERS}}
    params = {'kd': {'layer': 'penultimate'}, 'lid': {'k': 10}, 'mgm': {'layer': 'penultimate'}, 'uad': {'combine': 'bonferroni'},
              'nrd': {'transform': 'log'}}
    fitted = R.fit_all(train, cal, 2, lid_kwargs={'k': 10}, nrd_kwargs={'transform': 'log'})
    expected, pvalues, extra = {}, {}, {}
    for name, (det, cal_scores) in fitted.items():
        s = det.score(tst['layers'], tst['pred'])
        expected[name] = s.tolist()
        if name in ('kd', 'mgm'):  # class-conditional (Mondrian) calibration by default
            p = np.empty(len(s))
            for c in (0, 1):
                p[tst['pred'] == c] = R.conformal_p(cal_scores[cal['pred'] == c], s[tst['pred'] == c])
            pvalues[name] = p.tolist()
        else:
            pvalues[name] = R.conformal_p(cal_scores, s).tolist()
    extra['kd_bandwidth'] = float(fitted['kd'][0].bandwidth_)
    extra['lid_vectors'] = fitted['lid'][0].lid_vectors(tst['layers']).tolist()
    extra['uad_layer_scores'] = fitted['uad'][0].layer_scores(tst['layers']).tolist()
    doc = {
        'about': 'Golden vectors from lab/detectors/make_golden.py (reference.py); float32 arrays are base64 little-endian, row-major.',
        'layers': LAYERS, 'numClasses': 2, 'params': params,
        'train': enc(train), 'calibration': enc(cal), 'test': enc(tst),
        'expected': {'scores': expected, 'pValues': pvalues, **extra},
    }
    with open(OUT, 'w') as f:
        json.dump(doc, f)
    print('wrote %s (%d bytes); kd bandwidth %.6g' % (OUT, os.path.getsize(OUT), extra['kd_bandwidth']))


if __name__ == '__main__':
    main()
