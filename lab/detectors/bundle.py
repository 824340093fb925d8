"""Readers for Warden's detector bundle (src/detectors/bundle.ts) and feature dump (src/eval/features-io.ts)."""
import csv
import json
import os
import struct

import numpy as np

MAGIC = b'WDNBNDL1'
DTYPES = {'f32': '<f4', 'f64': '<f8', 'i32': '<i4'}


def read_bundle(path):
    """-> (header dict, {detector id: {array name: np.ndarray}})"""
    with open(path, 'rb') as f:
        b = f.read()
    assert b[:8] == MAGIC, 'not a Warden bundle'
    (hlen,) = struct.unpack('<I', b[8:12])
    header = json.loads(b[12:12 + hlen].decode('utf8'))
    blob = memoryview(b)[12 + hlen:]
    arrays = {}
    for d in header['detectors']:
        arrays[d['id']] = {a['name']: np.frombuffer(blob, DTYPES[a['dtype']], a['length'], a['offset']) for a in d['arrays']}
    return header, arrays


def read_dump(d):
    """-> dict(header, layers {name: float32 [n, dim]}, logits, pred, meta [dict])"""
    with open(os.path.join(d, 'features.json')) as f:
        header = json.load(f)
    layers = {name: np.load(os.path.join(d, name + '.npy')) for name in header['layers']}
    with open(os.path.join(d, 'meta.csv'), newline='') as f:
        meta = list(csv.DictReader(f))
    pred = np.array([int(m['predicted']) for m in meta], dtype=np.int32)
    return dict(header=header, layers=layers, logits=np.load(os.path.join(d, 'logits.npy')), pred=pred, meta=meta)


def parse_source(spec):
    """'path[:v1,v2]' as in src/eval/dataset.ts -> (path, [values])."""
    if ':' in spec and not os.path.exists(spec):
        p, suffix = spec.rsplit(':', 1)
        if '/' not in suffix:
            return p, [v for v in suffix.split(',') if v]
    return spec, []


def select(dump, values, kind='clean', split_column='split'):
    idx = [i for i, m in enumerate(dump['meta'])
           if (not values or m.get(split_column, '') in values) and (kind is None or (m.get('kind') or 'clean') == kind)]
    idx = np.array(idx, dtype=int)
    return {'layers': {k: v[idx] for k, v in dump['layers'].items()}, 'pred': dump['pred'][idx], 'meta': [dump['meta'][i] for i in idx], 'index': idx}
