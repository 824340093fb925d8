"""Parity and speed of the reference implementations against `warden eval` on real features.

Fits reference.py's KD / LID / MGM / UAD on the same clean rows of a feature dump as the bundle (the bundle's
header names its train / calibration sources; KD's bandwidth and the KD/LID bank rows are taken from the bundle,
everything else is re-fitted independently), scores the rows of `scores.csv` written by `warden eval`, and
prints the worst relative score difference and the reference's scoring time per instance (one at a time, as a
gateway scores, and batched).

    /usr/bin/python3 lab/detectors/parity_real.py --features data/features --bundle models/warden-cxr-ref.bundle \
        --scores data/eval/scores.csv [--n 300] [--json out.json]
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402
from bundle import parse_source, read_bundle, read_dump, select  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--features', required=True)
    ap.add_argument('--bundle', required=True)
    ap.add_argument('--scores', required=True)
    ap.add_argument('--train', help='split values of the fit rows (default: from the bundle header)')
    ap.add_argument('--calibration', help='split values of the calibration rows (default: from the bundle header)')
    ap.add_argument('--n', type=int, default=300, help='rows of scores.csv to compare and time')
    ap.add_argument('--json')
    a = ap.parse_args()
    header, arrays = read_bundle(a.bundle)
    dump = read_dump(a.features)
    tr_values = a.train.split(',') if a.train else parse_source(header['fit']['source'])[1]
    cal_values = a.calibration.split(',') if a.calibration else parse_source(header['calibration']['source'])[1]
    train, cal = select(dump, tr_values), select(dump, cal_values)
    assert len(train['pred']) == header['fit']['n'], 'train rows %d != bundle fit n %d' % (len(train['pred']), header['fit']['n'])
    dets = {d['id']: d for d in header['detectors']}
    C = header['numClasses']
    out = {}
    fitted = {}
    t0 = time.time()
    for did, d in dets.items():
        kind, prm, arr = d['kind'], d['params'], arrays[did]
        if kind == 'kd':
            det = R.KD(layer=prm['layer'], bandwidth=d['meta']['bandwidth'])
            det.fit(train['layers'], train['pred'], C, bank_index=[arr['bank_index_%d' % c] for c in range(C)])
        elif kind == 'lid':
            det = R.LID(d['meta']['layerOrder'], k=prm['k']).fit(train['layers'], bank_index=arr['bank_index'])
        elif kind == 'mgm':
            det = R.MGM(prm['layer']).fit(train['layers'])
        elif kind == 'uad':
            det = R.UAD(d['meta']['layerOrder'], prm['combine'], prm.get('layerP', 'tail'), prm.get('tailK', 40)).fit(train['layers'], train['pred'], C)
            det.split_calibration(cal['layers'])
        elif kind == 'nrd':
            det = R.NRD(prm['layer'], prm['transform'], prm['offset']).fit(train['layers'])
        else:
            continue
        fitted[did] = det
    fit_s = time.time() - t0
    with open(a.scores, newline='') as f:
        srows = list(csv.DictReader(f))
    pos = {m['file']: i for i, m in enumerate(dump['meta'])}
    srows = [r for r in srows if r['file'] in pos][:a.n]
    ix = np.array([pos[r['file']] for r in srows])
    X = {k: v[ix] for k, v in dump['layers'].items()}
    P = dump['pred'][ix]
    for did, det in fitted.items():
        ts = np.array([float(r[did + '_score']) for r in srows])
        t = time.time()
        ref = det.score(X, P)
        batch_ms = (time.time() - t) * 1000 / len(ix)
        m = min(len(ix), 100)
        t = time.time()
        for i in range(m):
            det.score({k: v[i:i + 1] for k, v in X.items()}, P[i:i + 1])
        single_ms = (time.time() - t) * 1000 / m
        rel = np.abs(ts - ref) / np.maximum(np.abs(ref), 1e-12)
        out[did] = dict(max_rel_err=float(rel.max()), median_rel_err=float(np.median(rel)), n=int(len(ix)),
                        ref_ms_per_instance_single=single_ms, ref_ms_per_instance_batched=batch_ms)
    res = dict(fit_s=fit_s, detectors=out)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
