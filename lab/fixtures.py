"""Copy a small, seeded selection of data/dicom into test/fixtures/lab with its own manifest.csv.

The selection is drawn from the original suite only (the rows dicom.py writes in its phase 1: clean splits, the
original attacks and the four benign shifts, all on test) and written with the original columns, so the committed
fixtures and the CI bounds measured on them do not move when the lab grows (added attacks, dev set, corruptions).

`fixtures.py corruptions` writes the benign-corruption fixtures apart, into test/fixtures/lab-corruptions (its own
manifest.csv with a `severity` column): per corruption, N_CORRUPT_S1 test images at severity 1 and one at severities
2 and 3, seeded draws from the 624 corrupted test images."""
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
FIX_CORRUPT = os.environ.get('LAB_FIXTURES_CORRUPT', os.path.join(REPO, 'test', 'fixtures', 'lab-corruptions'))
N_CORRUPT_S1 = 3
LEGACY_COLUMNS = ['file', 'study_uid', 'sop_uid', 'source', 'split', 'kind', 'attack', 'norm', 'eps', 'success', 'label',
                  'pred_before', 'pred_after', 'linf', 'l2']
ADDED_ATTACKS = {('cw_l2_k0', ''), ('cw_l2_k5', ''), ('cw_l2_k20', ''), ('pgd_l2', '0.25'), ('transfer_pgd_linf', '2'),
                 ('transfer_pgd_linf', '4'), ('transfer_pgd_linf', '8')}


def original_suite(r):
    if r.get('severity', ''):
        return False
    if r['kind'] != 'clean' and (r['split'] != 'test' or (r['attack'], r['eps']) in ADDED_ATTACKS):
        return False
    return True


def write_fixtures(pick, dest, cols):
    """Copies the picked rows' DICOM files into `dest` (emptied first) with a manifest.csv of `cols`; -> (rows, bytes)."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    out, total = [], 0
    for r in pick:
        rel = r['file'][len('dicom/'):] if r['file'].startswith('dicom/') else r['file']
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, r['file']), dst)
        total += os.path.getsize(dst)
        rr = {k: r[k] for k in cols}
        rr['file'] = rel
        out.append(rr)
    with open(os.path.join(dest, 'manifest.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator='\n')
        w.writeheader()
        w.writerows(out)
    assert total <= MAX_BYTES, total
    return out, total


def corruption_fixtures():
    cols = LEGACY_COLUMNS + ['severity']
    rows = [r for r in csv.DictReader(open(os.path.join(ROOT, 'manifest.csv'), newline=''))
            if r['kind'] == 'benign' and r.get('severity', '') and r['split'] == 'test']
    rs = np.random.RandomState(SEED + 20)
    by = {}
    for r in sorted(rows, key=lambda r: r['file']):
        by.setdefault((r['attack'], r['severity']), []).append(r)
    pick = []
    for (name, sev) in sorted(by):
        cands = by[(name, sev)]
        n = N_CORRUPT_S1 if sev == '1' else 1
        ii = rs.choice(len(cands), size=min(n, len(cands)), replace=False)
        pick += [cands[i] for i in sorted(ii)]
    out, total = write_fixtures(pick, FIX_CORRUPT, cols)
    log('corruption fixtures: %d files (%d corruptions x 3 severities), %.2f MB in %s' % (len(out), len({k[0] for k in by}), total / 1e6, FIX_CORRUPT))


def main():
    rows = [r for r in csv.DictReader(open(os.path.join(ROOT, 'manifest.csv'), newline='')) if original_suite(r)]
    cols = LEGACY_COLUMNS
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
    out, total = write_fixtures(pick, FIX, cols)
    kinds = {}
    for r in out:
        kinds[r['kind']] = kinds.get(r['kind'], 0) + 1
    log('fixtures: %d files (%s), %.2f MB in %s' % (len(out), kinds, total / 1e6, FIX))


if __name__ == '__main__':
    import sys
    corruption_fixtures() if sys.argv[1:] == ['corruptions'] else main()
