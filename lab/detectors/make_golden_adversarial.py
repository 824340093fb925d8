"""Golden vectors for the TypeScript port of the views and of the recommended adversarial-signal detectors.

    /usr/bin/python3 lab/detectors/make_golden_adversarial.py

Writes (CI has no Python, so the vectors are committed):
- test/fixtures/detectors/golden-views.json: seeded inputs (a 16x16 and a 224x224 uint8 image, as the model sees them
  = uint8 / 255 in float32, and a 16x16 float32 image with arbitrary [0, 1] values, as a VOI window produces) and
  every view's output (views.py) as float32 base64; for the 224x224 image the outputs of the views not in
  FULL_224 are given as sha256 of their float32 bytes only (the full arrays would be 270 KB each). Bit-for-bit.
- test/fixtures/detectors/golden-adversarial.json: a seeded synthetic feature set (train / calibration / test, the
  base outputs and the views' logits / penultimate the detectors read) and the reference scores and conformal
  p-values of each recommended detector (adversarial.py), plus the merged policy p-value; fitted state that helps
  debugging (ridge weights, Gaussians) is included. Scores to 1e-5 relative.
"""
import base64
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adversarial as A  # noqa: E402
import views as V  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(REPO, 'test', 'fixtures', 'detectors')
FULL_224 = ('median2', 'bits5')


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode('ascii')


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a, dtype='<f4').tobytes()).hexdigest()


def views_golden():
    rs = np.random.RandomState(20240612)
    small = rs.randint(0, 256, (16, 16)).astype(np.uint8)
    # a smooth image with noise (closer to a radiograph than white noise: medians and blur see structure)
    yy, xx = np.mgrid[0:224, 0:224]
    big = np.clip(128 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + rs.normal(0, 6, (224, 224)), 0, 255).round().astype(np.uint8)
    real = rs.rand(16, 16).astype(np.float32)
    cases = []
    for name, x, full in (('u8_16', small.astype(np.float32) / np.float32(255), True),
                          ('u8_224', big.astype(np.float32) / np.float32(255), False),
                          ('f32_16', real, True)):
        assert x.dtype == np.float32
        out = {}
        for v in V.VIEWS:
            y = V.apply_view(v, x)
            assert y.dtype == np.float32 and y.shape == x.shape
            out[v] = {'sha256': sha(y)}
            if full or v in FULL_224:
                out[v]['data'] = b64(y.astype('<f4'))
        case = {'name': name, 'shape': list(x.shape), 'input_f32': b64(x.astype('<f4')), 'sha256_input': sha(x), 'views': out}
        if name.startswith('u8'):
            case['input_u8'] = b64((small if name == 'u8_16' else big))
        cases.append(case)
    doc = {'about': 'Views (lab/detectors/views.py) of seeded inputs; float32 little-endian base64, row-major; sha256 of the '
                    'float32 bytes. Inputs: u8 cases are uint8 / 255 in float32 (the model input of an 8-bit image).',
           'views': list(V.VIEWS), 'cases': cases}
    p = os.path.join(FIX, 'golden-views.json')
    with open(p, 'w') as f:
        json.dump(doc, f)
    print('wrote %s (%d bytes)' % (p, os.path.getsize(p)))


# ----------------------------------------------------------------------------------------------- detectors
LAYERS = {'stage1_mean': 4, 'stage1_std': 4, 'stage2_mean': 5, 'stage2_std': 5, 'stage3_mean': 6, 'stage3_std': 6,
          'stage4_mean': 6, 'stage4_std': 6, 'penultimate': 6}
GOLDEN_VIEWS = ('median2', 'bits5')


def synth(rng, n, shift=0.0):
    """Pooled-feature-like layers that are linearly related to each other and to the logits (so the probes fit),
    plus view outputs = base outputs + small noise (larger for the shifted 'suspicious' rows)."""
    pred = rng.integers(0, 2, n)
    z0 = rng.normal(size=(n, 3)) + np.where(pred[:, None] == 0, 1.0, -1.0)
    F = {}
    h = z0
    for i, (name, d) in enumerate(LAYERS.items()):
        M = np.random.default_rng(200 + i).normal(0, 0.7, (h.shape[1], d))
        h = np.maximum(h @ M + 0.3 * rng.normal(size=(n, d)) + 0.5, 0.05)
        F[name] = h.astype(np.float32)
    F['stage4_mean'] = F['penultimate']
    Wl = np.random.default_rng(300).normal(0, 1.0, (LAYERS['penultimate'], 2))
    logits = F['penultimate'] @ Wl + np.where(pred[:, None] == 0, [1.5, -1.5], [-1.5, 1.5])
    if shift:
        logits = logits + shift * rng.normal(size=(n, 2))
    F['logits'] = logits.astype(np.float32)
    for v in GOLDEN_VIEWS:
        s = 0.05 + shift
        F[v + '/logits'] = (logits + s * rng.normal(size=(n, 2))).astype(np.float32)
        F[v + '/penultimate'] = (F['penultimate'] * (1 + s * 0.1 * rng.normal(size=(n, LAYERS['penultimate'])))).astype(np.float32)
    return F, pred


def enc(F, pred):
    return {'n': int(len(pred)), 'labels': pred.tolist(), 'features': {k: b64(v.astype('<f4')) for k, v in F.items()},
            'dims': {k: int(v.shape[1]) for k, v in F.items()}}


def detectors_golden(specs, policy):
    """specs: {id: (constructor kwargs description, detector instance)}; policy: {'members': [...], 'rule': ...}."""
    rng = np.random.default_rng(20240613)
    tr, trp = synth(rng, 300)
    ca, cap = synth(rng, 200)
    te, tep = synth(rng, 30)
    sh, shp = synth(rng, 30, shift=1.0)
    ts = {k: np.concatenate([te[k], sh[k]]) for k in te}
    tsp = np.concatenate([tep, shp])
    expected, pvals, state = {}, {}, {}
    for did, (params, det) in specs.items():
        det.fit(tr, tr['logits'].argmax(1), trp)
        cs = det.score(ca, ca['logits'].argmax(1))
        s = det.score(ts, ts['logits'].argmax(1))
        expected[did] = s.tolist()
        pvals[did] = A.conformal_p(cs, s).tolist()
        state[did] = {'calibration_scores': cs.tolist()}
        if isinstance(det, A.Coherence):
            state[did]['probes'] = [dict(x_mean=m['ridge'].x_mean_.tolist(), x_scale=m['ridge'].x_scale_.tolist(),
                                         y_mean=m['ridge'].y_mean_.tolist(), W=m['ridge'].W_.tolist(), r_mean=m['r_mean'].tolist(),
                                         precision=m['prec'].tolist(), log_mean=m['log_mean'], log_sd=m['log_sd'])
                                    for m in det.models_]
            state[did]['probe_scores'] = det.probe_scores(ts).tolist()
        if isinstance(det, A.FeatureSqueezing):
            state[did]['view_distances'] = det.view_distances(ts).tolist()
    merged = A.MERGERS[policy['rule']](np.stack([np.array(pvals[d]) for d in policy['members']], 1))
    doc = {'about': 'Golden vectors from lab/detectors/make_golden_adversarial.py (adversarial.py); float32 arrays base64 '
                    'little-endian, row-major; labels = ground-truth classes of the training rows (the predicted class is '
                    'argmax of logits everywhere). Scores and p-values to 1e-5 relative.',
           'params': {d: p for d, (p, _) in specs.items()}, 'policy': policy,
           'train': enc(tr, trp), 'calibration': enc(ca, cap), 'test': enc(ts, tsp),
           'expected': {'scores': expected, 'pValues': pvals, 'policyPValue': merged.tolist(), 'state': state}}
    p = os.path.join(FIX, 'golden-adversarial.json')
    with open(p, 'w') as f:
        json.dump(doc, f)
    print('wrote %s (%d bytes)' % (p, os.path.getsize(p)))


def recommended():
    """The recommended detectors (lab/detectors/adversarial_policy.json) as instances on the synthetic layers."""
    spec = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'adversarial_policy.json')))
    shipped = spec['policies'][spec['shipped']]
    out = {}
    for did in shipped['members']:
        d = spec['detectors'][did]
        out[did] = (d, A.build(d))
    return out, {'members': shipped['members'], 'rule': shipped['rule']}


def main():
    os.makedirs(FIX, exist_ok=True)
    views_golden()
    specs, policy = recommended()
    detectors_golden(specs, policy)


if __name__ == '__main__':
    main()
