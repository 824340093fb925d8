"""Check that the lab's model input for the 12-bit `requant12` corruption (corruptions.voi_window_f32) is bit for bit
what Warden computes from the written DICOM (decode + preprocess in dist/, through lab/warden_tensors.js).
Reads 8 files per (set, severity) from data/manifest.csv; writes data/foreign/voi_check.json; fails on any difference."""
import csv
import json
import os
import subprocess
import tempfile

import numpy as np

from common import DATA, REPO, log


def main():
    rows = [r for r in csv.DictReader(open(os.path.join(DATA, 'manifest.csv'), newline='')) if r['attack'] == 'requant12']
    pick = {}
    for r in rows:
        key = (r['split'], r['severity'])
        if len(pick.setdefault(key, [])) < 8:
            pick[key].append(r)
    sel = [r for v in pick.values() for r in v]
    inputs = {}
    for r in sel:
        set_name = 'test' if r['split'] == 'test' else 'dev'
        fp = os.path.join(DATA, 'corruptions', '%s_requant12_s%s.npz' % (set_name, r['severity']))
        if fp not in inputs:
            z = np.load(fp)
            inputs[fp] = ({str(p): i for i, p in enumerate(z['paths'])}, z['model_input'])
    with tempfile.TemporaryDirectory(dir=DATA) as td:
        lst = os.path.join(td, 'list.txt')
        with open(lst, 'w') as f:
            f.write('\n'.join(os.path.join(DATA, r['file']) for r in sel) + '\n')
        subprocess.run(['node', os.path.join('lab', 'warden_tensors.js'), '--files', lst, os.path.join(td, 'out')], cwd=REPO, check=True)
        idx = json.load(open(os.path.join(td, 'out', 'index.json')))
        n_equal, worst = 0, 0.0
        for r, e in zip(sel, idx):
            assert e['status'] == 'ok' and e['window'] == 'voi', e
            got = np.load(os.path.join(td, 'out', e['tensor']))[0, 0]
            set_name = 'test' if r['split'] == 'test' else 'dev'
            m, arr = inputs[os.path.join(DATA, 'corruptions', '%s_requant12_s%s.npz' % (set_name, r['severity']))]
            want = arr[m[r['source']]]
            worst = max(worst, float(np.abs(got.astype(np.float64) - want).max()))
            n_equal += int(np.array_equal(got, want))
    res = dict(files=len(sel), bit_identical=n_equal, max_abs_diff=worst)
    os.makedirs(os.path.join(DATA, 'foreign'), exist_ok=True)
    json.dump(res, open(os.path.join(DATA, 'foreign', 'voi_check.json'), 'w'), indent=1)
    log('requant12 through Warden decode + preprocess: %d of %d files bit-identical to the lab input (max |diff| %.3g)' % (
        n_equal, len(sel), worst))
    assert n_equal == len(sel)


if __name__ == '__main__':
    main()
