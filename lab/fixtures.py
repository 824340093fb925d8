"""Copy a small, seeded selection of data/dicom into test/fixtures/lab with its own manifest.csv."""
import csv
import os
import shutil

import numpy as np

from common import DATA, REPO, SEED, log

FIX = os.environ.get('LAB_FIXTURES', os.path.join(REPO, 'test', 'fixtures', 'lab'))
ROOT = os.environ.get('LAB_DICOM_ROOT', DATA)
N_CLEAN_TEST = 36       # 18 normal + 18 pneumonia
N_ADV = 36              # successful adversarial, round-robin over attack configs
N_BENIGN = 10           # round-robin over benign kinds
N_CALIB = 8             # 4 + 4 clean calibration-split images
MAX_BYTES = 5 * 1024 * 1024


def main():
    rows = list(csv.DictReader(open(os.path.join(ROOT, 'manifest.csv'), newline='')))
    cols = list(rows[0].keys())
    rs = np.random.RandomState(SEED)
    pick = []

    def take(cands, n):
        cands = sorted(cands, key=lambda r: r['file'])
        if not cands:
            return []
        ii = rs.choice(len(cands), size=min(n, len(cands)), replace=False)
        return [cands[i] for i in sorted(ii)]

    for split, n in (('test', N_CLEAN_TEST), ('calibration', N_CALIB)):
        for lab in ('0', '1'):
            pick += take([r for r in rows if r['kind'] == 'clean' and r['split'] == split and r['label'] == lab], n // 2)

    def round_robin(cands, key, n):
        by = {}
        for r in sorted(cands, key=lambda r: r['file']):
            by.setdefault(key(r), []).append(r)
        for k in by:
            perm = rs.permutation(len(by[k]))
            by[k] = [by[k][i] for i in perm]
        out, keys, i = [], sorted(by), 0
        while len(out) < n and any(by.values()):
            k = keys[i % len(keys)]
            if by[k]:
                out.append(by[k].pop(0))
            i += 1
        return out

    pick += round_robin([r for r in rows if r['kind'] == 'adversarial' and r['success'] == '1'],
                        lambda r: (r['attack'], r['eps']), N_ADV)
    pick += round_robin([r for r in rows if r['kind'] == 'benign'], lambda r: r['attack'], N_BENIGN)
    if os.path.exists(FIX):
        shutil.rmtree(FIX)
    os.makedirs(FIX)
    out = []
    total = 0
    for r in pick:
        src = os.path.join(ROOT, r['file'])
        rel = r['file'][len('dicom/'):] if r['file'].startswith('dicom/') else r['file']
        dst = os.path.join(FIX, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        total += os.path.getsize(dst)
        rr = dict(r)
        rr['file'] = rel
        out.append(rr)
    with open(os.path.join(FIX, 'manifest.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator='\n')
        w.writeheader()
        w.writerows(out)
    assert total <= MAX_BYTES, total
    kinds = {}
    for r in out:
        kinds[r['kind']] = kinds.get(r['kind'], 0) + 1
    log('fixtures: %d files (%s), %.2f MB in %s' % (len(out), kinds, total / 1e6, FIX))


if __name__ == '__main__':
    main()
