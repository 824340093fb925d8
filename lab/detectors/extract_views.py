"""Model features of every lab image and of its views (lab/detectors/views.py), with the reference model in torch.

    /usr/bin/python3 lab/detectors/extract_views.py dev            # everything the dev-phase choices need, all views
    /usr/bin/python3 lab/detectors/extract_views.py test --views median2,bits5   # test sets, the chosen views only

The base image's outputs are stored under their manifest names (logits, penultimate, stage1_mean, ...,
residual_stats); a view's outputs under `<view>/logits` and `<view>/penultimate` (the pooled stage outputs of views
are not stored: no candidate detector reads them). One file per set: data/views/<set>.npz with the arrays and the
row metadata (source, split, kind, attack, eps, severity, label, pred, success). Existing files are extended with
missing views, never recomputed (FORCE=1 recomputes).

Sets: clean_<split> (all 5,840 clean images by split; model_train without views: the view-based detectors are fitted
on detector_fit only), dev_adv (successful dev attacks, data/attacks_extra dev_*),
dev_benign (dev corruptions), test_adv (successful test attacks: data/attacks + data/attacks_extra test_*),
test_benign (test corruptions and the four original benign shifts), foreign (data/foreign tensors from Warden's
decode + preprocess).

Inputs are float32 model inputs: uint8 / 255 for 8-bit images; for requant12 the VOI-windowed float32 image (as
Warden computes it). The views are computed in torch (fast path) and checked bit for bit against the numpy
definitions in views.py on the first 4 images of every batch.
"""
import glob
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import DATA, SEED, dev_paths, image_cache, load_model, log, read_splits  # noqa: E402
import views as V  # noqa: E402

OUT = os.path.join(DATA, 'views')
BATCH = 32
META = ('source', 'split', 'kind', 'attack', 'eps', 'severity', 'label', 'success')
VIEW_OUTPUTS = ('logits', 'penultimate')
# Measured on dev: every defined view but bits1 / bits2 (1-2 bits leave a radiograph's silhouette only; the model's
# answer on them says nothing about the image).
# bits3 and median5 were cut for time (the views are 7 of the ~10 model passes per image here).
DEV_VIEWS = ('bits4', 'bits5', 'bits6', 'bits7', 'median2', 'median3', 'blur')


# ------------------------------------------------------------------------------------------ views, torch fast path
def _pad(x, top, bottom, left, right):
    return F.pad(x, (left, right, top, bottom), mode='replicate')


def _blocks(x, offsets):
    """x [N,1,H,W] -> [N, k, H, W] with the (dy, dx) offsets in row-major order, indices clamped."""
    lo, hi = -min(offsets), max(offsets)
    p = _pad(x, lo, hi, lo, hi)
    H, W = x.shape[-2:]
    out = [p[:, 0, lo + dy:lo + dy + H, lo + dx:lo + dx + W] for dy in offsets for dx in offsets]
    return torch.stack(out, 1)


def view_torch(name, x):
    """x float32 [N,1,H,W] -> float32 [N,1,H,W], identical bits to views.apply_view."""
    if name.startswith('bits'):
        L = float(2 ** int(name[4:]) - 1)
        return (torch.floor(x.double() * L + 0.5) / L).float()
    if name == 'median2':
        s = torch.sort(_blocks(x, (0, 1)), dim=1).values
        return ((s[:, 1].double() + s[:, 2].double()) / 2.0).float().unsqueeze(1)
    if name == 'median3':
        return torch.median(_blocks(x, (-1, 0, 1)), dim=1).values.unsqueeze(1).contiguous()  # odd count: exact
    if name == 'blur':
        b = _blocks(x, (-1, 0, 1)).double()
        acc = torch.zeros_like(b[:, 0])
        k = 0
        for wy in (1.0, 2.0, 1.0):
            for wx in (1.0, 2.0, 1.0):
                acc = acc + (wy * wx) * b[:, k]
                k += 1
        return (acc / 16.0).float().unsqueeze(1)
    raise ValueError(name)


# ------------------------------------------------------------------------------------------------------ extraction
def logits_penultimate(model, x):
    """RefNet.forward's logits and penultimate, without the pooled stage statistics (3x cheaper)."""
    h = model.stem((x - model.mean) / model.std)
    for s in model.stages:
        h = s(h)
    pen = h.mean(dim=(2, 3))
    return {'logits': model.fc(model.drop(pen)), 'penultimate': pen}


@torch.no_grad()
def features(model, X, views, existing=None):
    """X float32 [N,224,224]. Returns {name: array}; base outputs only when `existing` lacks them."""
    out = {}
    need_base = existing is None or 'logits' not in existing
    todo = [v for v in views if existing is None or (v + '/logits') not in existing]
    for i in range(0, len(X), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(X[i:i + BATCH], dtype=np.float32)).unsqueeze(1)
        if need_base:
            o = model(x, feats=True)
            for k, v in o.items():
                out.setdefault(k, []).append(v.numpy())
        for vn in todo:
            xv = view_torch(vn, x)
            chk = V.apply_view(vn, x[:4, 0].numpy())
            assert np.array_equal(chk, xv[:4, 0].numpy()), 'torch view %s differs from views.py' % vn
            o = logits_penultimate(model, xv)
            for k in VIEW_OUTPUTS:
                out.setdefault(vn + '/' + k, []).append(o[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def save(name, arrays, meta):
    os.makedirs(OUT, exist_ok=True)
    enc = {k.replace('/', '__'): v for k, v in arrays.items()}
    for k in META:
        enc['meta__' + k] = np.array([str(m.get(k, '')) for m in meta])
    tmp = os.path.join(OUT, name + '.tmp.npz')
    np.savez(tmp, **enc)
    os.replace(tmp, os.path.join(OUT, name + '.npz'))


def load(name):
    """-> (features {name: array}, meta list of dicts) or (None, None)."""
    p = os.path.join(OUT, name + '.npz')
    if not os.path.exists(p):
        return None, None
    z = np.load(p)
    feats = {k.replace('__', '/'): z[k] for k in z.files if not k.startswith('meta__')}
    cols = {k[6:]: z[k] for k in z.files if k.startswith('meta__')}
    n = len(next(iter(cols.values())))
    meta = [{k: str(v[i]) for k, v in cols.items()} for i in range(n)]
    return feats, meta


def run_set(model, name, X, meta, views):
    t0 = time.time()
    ex, exmeta = (None, None) if os.environ.get('FORCE') == '1' else load(name)
    if ex is not None:
        assert [m['source'] for m in exmeta] == [m['source'] for m in meta], name
    new = features(model, X, views, ex)
    if not new:
        log('%-22s n=%5d up to date' % (name, len(X)))
        return
    allf = dict(ex or {})
    allf.update(new)
    save(name, allf, meta)
    log('%-22s n=%5d views %s  %.0fs' % (name, len(X), ','.join(views), time.time() - t0))


# -------------------------------------------------------------------------------------------------------- sources
def clean_sets(idx, imgs):
    sp = read_splits()
    dev = set(dev_paths())
    out = {}
    for split in ('model_train', 'detector_fit', 'calibration', 'test'):
        rows = [r for r in sp if r['split'] == split]
        X = imgs[[idx[r['path']] for r in rows]].astype(np.float32) / 255.0
        meta = [dict(source=r['path'], split=split, kind='clean', label=r['label'],
                     attack='dev' if r['path'] in dev else '') for r in rows]
        out['clean_' + split] = (X, meta)
    return out


def adv_set(prefix, idx, imgs):
    """Successful adversarial images: data/attacks (test, original) and data/attacks_extra/<prefix>_*."""
    sp = read_splits()
    label_of = {r['path']: r['label'] for r in sp}
    test_paths = [r['path'] for r in sp if r['split'] == 'test']
    Xs, meta = [], []
    files = []
    if prefix == 'test':
        files += [('orig', f) for f in sorted(glob.glob(os.path.join(DATA, 'attacks', '*.npz')))
                  if not os.path.basename(f).startswith(('benign_', 'subset'))]
    files += [('extra', f) for f in sorted(glob.glob(os.path.join(DATA, 'attacks_extra', prefix + '_*.npz')))]
    for src, f in files:
        z = np.load(f)
        if src == 'orig':
            paths = [test_paths[i] for i in z['ids']]
            y = np.array([label_of[p] for p in paths])
            ok = z['pred_onnx'] != y
            atk, kappa = str(z['attack']), np.nan
        else:
            paths = [str(p) for p in z['paths']]
            ok = z['success_onnx']
            atk, kappa = str(z['attack']), float(z['kappa'])
        if not np.isnan(kappa):
            atk = '%s_k%d' % (atk, int(kappa))
        eps = '' if np.isnan(float(z['eps'])) else '%g' % float(z['eps'])
        sel = np.flatnonzero(ok)
        Xs.append(z['adv'][sel].astype(np.float32) / 255.0)
        meta += [dict(source=paths[i], split='test' if prefix == 'test' else 'detector_fit', kind='adversarial',
                      attack=atk, eps=eps, label=label_of[paths[i]], success=1) for i in sel]
    return np.concatenate(Xs), meta


def benign_set(prefix, idx, imgs):
    sp = read_splits()
    label_of = {r['path']: r['label'] for r in sp}
    test_paths = [r['path'] for r in sp if r['split'] == 'test']
    Xs, meta = [], []
    if prefix == 'test':
        for f in sorted(glob.glob(os.path.join(DATA, 'attacks', 'benign_*.npz'))):
            z = np.load(f)
            Xs.append(z['adv'].astype(np.float32) / 255.0)
            meta += [dict(source=test_paths[i], split='test', kind='benign', attack=str(z['attack']),
                          label=label_of[test_paths[i]]) for i in z['ids']]
    for f in sorted(glob.glob(os.path.join(DATA, 'corruptions', prefix + '_*.npz'))):
        z = np.load(f)
        X = z['model_input'] if 'model_input' in z.files else z['adv'].astype(np.float32) / 255.0
        Xs.append(X.astype(np.float32))
        meta += [dict(source=str(p), split='test' if prefix == 'test' else 'detector_fit', kind='benign',
                      attack=str(z['corruption']), severity=int(z['severity']), label=label_of[str(p)]) for p in z['paths']]
    return np.concatenate(Xs), meta


def foreign_set():
    d = os.path.join(DATA, 'foreign')
    idx = json.load(open(os.path.join(d, 'index.json')))
    ok = [e for e in idx if e['status'] == 'ok']
    X = np.stack([np.load(os.path.join(d, e['tensor']))[0, 0] for e in ok]).astype(np.float32)
    meta = [dict(source=e['source'], split='foreign', kind='foreign', attack=e['source'].split('/')[0]) for e in ok]
    return X, meta


def main():
    phase = sys.argv[1]
    views = list(DEV_VIEWS)
    if '--views' in sys.argv:
        views = [v for v in sys.argv[sys.argv.index('--views') + 1].split(',') if v]
    torch.set_num_threads(int(os.environ.get('LAB_THREADS', '2')))
    model, _ = load_model()
    idx, imgs = image_cache()
    t0 = time.time()
    cs = clean_sets(idx, imgs)
    if phase in ('dev', 'clean'):
        for split in ('detector_fit', 'calibration'):
            run_set(model, 'clean_' + split, *cs['clean_' + split], views)
        run_set(model, 'clean_model_train', *cs['clean_model_train'], [])   # base outputs only (cut for time)
        run_set(model, 'foreign', *foreign_set(), views)
    if phase == 'dev':
        run_set(model, 'dev_adv', *adv_set('dev', idx, imgs), views)
        run_set(model, 'dev_benign', *benign_set('dev', idx, imgs), views)
    elif phase == 'test':
        run_set(model, 'clean_test', *cs['clean_test'], views)
        run_set(model, 'test_adv', *adv_set('test', idx, imgs), views)
        run_set(model, 'test_benign', *benign_set('test', idx, imgs), views)
    elif phase != 'clean':
        raise SystemExit('usage: extract_views.py clean|dev|test [--views a,b]')
    log('extract_views %s done in %.0fs' % (phase, time.time() - t0))


if __name__ == '__main__':
    main()
