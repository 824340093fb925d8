"""Twin parity: the torch twins (attack.py) against Warden's own scores on the committed lab fixtures.

    node bin/warden.js scan test/fixtures/lab --json > data/adaptive/fixtures-scan.jsonl
    /usr/bin/python3 lab/adaptive/twin_parity.py data/adaptive/fixtures-scan.jsonl

Reads each fixture's pixels with pydicom (8-bit, as the model sees them: u8 / 255), scores them with the twins and
prints the largest difference per detector, absolute and relative to the spread of its calibration scores. Writes
the twins' scores to test/fixtures/detectors/twin-scores.json: CI (no Python) checks Warden's scores against them
(test/conformance/adaptive-twins.test.ts), so a change to a detector that the twins do not follow fails there.
"""
import json
import os
import sys

import numpy as np
import pydicom
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twins import MEMBERS, Twins  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import REPO, load_model  # noqa: E402


def main():
    recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    recs = [r for r in recs if r.get('status') == 'scanned']
    model, _ = load_model()
    twins = Twins()
    x = np.stack([pydicom.dcmread(os.path.join(REPO, r['file']) if not os.path.isabs(r['file']) else r['file']).pixel_array for r in recs])
    with torch.no_grad():
        s, _ = twins.scores(model, torch.from_numpy(x.astype(np.float32) / 255).unsqueeze(1), extra=True)
    out = {}
    for k in MEMBERS + ('uad', 'nrd'):
        w = np.array([r['scores'][k]['score'] for r in recs])
        t = s[k].numpy().astype(np.float64)
        sd = float(np.std(twins.cal_np[k]))
        rel = float((np.abs(w - t) / np.maximum(np.abs(w), 1)).max())
        out[k] = dict(n=len(recs), max_abs=float(np.abs(w - t).max()), max_rel_to_sd=float(np.abs(w - t).max() / sd), max_rel=rel)
        print('%-10s n=%d  max |warden - twin| = %.2e  (%.2e of the calibration spread; %.2e relative)' % (
            k, len(recs), out[k]['max_abs'], out[k]['max_rel_to_sd'], rel))
    json.dump(out, open(os.path.join(os.path.dirname(sys.argv[1]), 'twin-parity.json'), 'w'), indent=1)
    golden = {'about': 'Scores of the torch twins (lab/adaptive/attack.py) on the committed lab fixtures; written by lab/adaptive/twin_parity.py.',
              'bundleSha256': __import__('hashlib').sha256(open(os.path.join(REPO, 'models', 'warden-cxr-ref.bundle'), 'rb').read()).hexdigest(),
              'calibrationSd': {k: float(np.std(twins.cal_np[k])) for k in MEMBERS},
              'scores': {os.path.relpath(os.path.join(REPO, r['file']), os.path.join(REPO, 'test', 'fixtures', 'lab')): {k: float(s[k][i]) for k in MEMBERS}
                         for i, r in enumerate(recs)}}
    json.dump(golden, open(os.path.join(REPO, 'test', 'fixtures', 'detectors', 'twin-scores.json'), 'w'), indent=1)


if __name__ == '__main__':
    main()
