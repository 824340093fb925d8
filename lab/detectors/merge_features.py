"""Concatenate `warden features` dumps of the same model (same layers) into one, rows in argument order.

    /usr/bin/python3 lab/detectors/merge_features.py OUT DUMP1 DUMP2 [...]

Used when the lab grows after a dump was taken (e.g. attacks added later): extract only the new rows, then merge.
"""
import csv
import json
import os
import sys

import numpy as np


def main():
    out, dumps = sys.argv[1], sys.argv[2:]
    heads = [json.load(open(os.path.join(d, 'features.json'))) for d in dumps]
    for h in heads[1:]:
        if h['modelSha256'] != heads[0]['modelSha256'] or h['layers'] != heads[0]['layers']:
            sys.exit('dumps differ in model or layers')
    os.makedirs(out, exist_ok=True)
    for layer in heads[0]['layers']:
        arrays = [np.load(os.path.join(d, layer + '.npy')) for d in dumps]
        p = os.path.join(out, layer + '.npy')
        os.makedirs(os.path.dirname(p), exist_ok=True)
        np.save(p, np.concatenate(arrays).astype('<f4'))
    rows, cols = [], []
    for d in dumps:
        r = list(csv.DictReader(open(os.path.join(d, 'meta.csv'), newline='')))
        cols += [c for c in (r[0].keys() if r else []) if c not in cols]
        rows += r
    with open(os.path.join(out, 'meta.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator='\n')
        w.writeheader()
        for i, r in enumerate(rows):
            r['index'] = str(i)
            w.writerow({c: r.get(c, '') for c in cols})
    h = dict(heads[0])
    h['n'] = len(rows)
    h['source'] = ' + '.join(hh.get('source', d) for hh, d in zip(heads, dumps))
    h['errors'] = sum(hh.get('errors', 0) for hh in heads)
    json.dump(h, open(os.path.join(out, 'features.json'), 'w'), indent=2)
    print('merged %d rows from %d dumps into %s' % (len(rows), len(dumps), out))


if __name__ == '__main__':
    main()
