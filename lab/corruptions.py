"""Benign corruptions in the MedMNIST-C manner (Di Salvo et al. 2024): 10 corruptions x 3 severities, applied to the
624 clean test images and to the dev images (lab/common.py dev_paths(), a seeded subset of detector_fit).

Severities 1-2 are meant to be what a PACS or a different scanner plausibly produces, 3 is strong. Parameters are
in PARAMS (documented in lab/README.md). Pixel values are in 8-bit grey levels (the model input is uint8 / 255)
unless said otherwise; every result is clipped to [0, 255] and rounded to uint8, except `requant12`, which writes
12-bit stored values with a VOI window (the DICOM step writes those as BitsAllocated 16 / BitsStored 12 with
WindowCenter / WindowWidth, so Warden's "voi" windowing path is exercised) and whose model input is the windowed
float32 image, computed here exactly as src/models/preprocess.ts does (PS3.3 C.11.2.1.2.1 linear VOI in double,
one rounding to float32).

Every (set, corruption, severity) draws from its own RandomState(SEED + crc32(name)), so each can be regenerated
alone. Output: data/corruptions/<set>_<corruption>_s<k>.npz with `paths` (dataset paths), `adv` (uint8 [N,224,224],
or uint16 stored values for requant12), `model_input` (float32, requant12 only), `window` ([N,2] centre/width,
requant12 only), `pred_torch`, `pred_onnx`; summary in data/corruptions/summary.json.
"""
import io
import json
import os
import time
import zlib

import numpy as np
from PIL import Image
from scipy import ndimage

from common import DATA, ONNX_PATH, SEED, dev_paths, image_cache, load_model, log, predict_logits, read_splits, run_onnx

OUT = os.path.join(DATA, 'corruptions')

# severity 1, 2, 3
PARAMS = {
    'jpeg': {'quality': [75, 50, 30]},                       # PIL JPEG of the 8-bit grey image
    'gaussian_noise': {'sigma': [2.0, 4.0, 8.0]},             # additive N(0, sigma^2), grey levels
    'poisson_noise': {'photons': [9000, 2250, 560]},          # quantum noise: counts ~ Poisson(photons * (1.05 - x)), dark = high dose;
                                                              # std at mid-grey ~ 2 / 4 / 8 grey levels
    'speckle': {'sigma': [0.02, 0.04, 0.08]},                 # multiplicative: x * (1 + N(0, sigma^2))
    'gaussian_blur': {'sigma_px': [0.5, 1.0, 1.5]},           # scipy gaussian_filter, mode 'nearest'
    'unsharp_mask': {'sigma_px': [1.5, 1.5, 1.5], 'amount': [0.3, 0.6, 1.2]},  # x + amount * (x - blur(x))
    'contrast': {'factor': [0.9, 0.75, 0.5]},                 # (x - mean) * factor + mean
    'gamma': {'gamma': [0.85, 0.7, 0.5]},                     # 255 * (x / 255) ** g, g or 1/g by a seeded coin per image
    'resample': {'size': [168, 112, 74]},                     # PIL bilinear down to size (antialiased), bilinear back up to 224
    'requant12': {'window_percentiles': [None, (0.0, 100.0), (1.0, 99.0)]},
    # requant12: stored v = round(u8 * 4095 / 255) (12 bits); VOI window: severity 1 the full range (C 2048, W 4096),
    # 2 the image's own min..max (a PACS windowing to the pixel range: median contrast stretch x1.08 on test), 3 the
    # 1st..99th percentile (x1.26, tails clipped); C and W rounded to integers.
}
CORRUPTIONS = list(PARAMS)


def _clip8(a):
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def voi_window_f32(v, center, width):
    """src/models/preprocess.ts applyWindow for 'voi' (PS3.3 C.11.2.1.2.1): double arithmetic, float32 result."""
    v = np.asarray(v, dtype=np.float64)
    c = float(center) - 0.5
    w1 = float(width) - 1.0
    lo, hi = c - w1 / 2.0, c + w1 / 2.0
    y = np.where(v <= lo, 0.0, np.where(v > hi, 1.0, (v - c) / w1 + 0.5 if w1 != 0 else 1.0))
    return y.astype(np.float32)


def corrupt(name, sev, X, rs):
    """X: uint8 [N,224,224]. Returns (uint8 or uint16 array, extra dict)."""
    k = sev - 1
    p = PARAMS[name]
    Xf = X.astype(np.float64)
    if name == 'jpeg':
        out = []
        for a in X:
            buf = io.BytesIO()
            Image.fromarray(a, 'L').save(buf, format='JPEG', quality=p['quality'][k])
            buf.seek(0)
            out.append(np.asarray(Image.open(buf).convert('L')))
        return np.stack(out), {}
    if name == 'gaussian_noise':
        return _clip8(Xf + rs.randn(*X.shape) * p['sigma'][k]), {}
    if name == 'poisson_noise':
        lam = p['photons'][k]
        counts = rs.poisson(lam * (1.05 - Xf / 255.0))
        return _clip8((1.05 - counts / lam) * 255.0), {}
    if name == 'speckle':
        return _clip8(Xf * (1.0 + rs.randn(*X.shape) * p['sigma'][k])), {}
    if name == 'gaussian_blur':
        return _clip8(np.stack([ndimage.gaussian_filter(a, p['sigma_px'][k], mode='nearest') for a in Xf])), {}
    if name == 'unsharp_mask':
        bl = np.stack([ndimage.gaussian_filter(a, p['sigma_px'][k], mode='nearest') for a in Xf])
        return _clip8(Xf + p['amount'][k] * (Xf - bl)), {}
    if name == 'contrast':
        m = Xf.mean(axis=(1, 2), keepdims=True)
        return _clip8((Xf - m) * p['factor'][k] + m), {}
    if name == 'gamma':
        g = p['gamma'][k]
        flip = rs.rand(len(X)) < 0.5
        gg = np.where(flip, 1.0 / g, g).reshape(-1, 1, 1)
        return _clip8(255.0 * (Xf / 255.0) ** gg), {'gamma_used': gg.ravel()}
    if name == 'resample':
        s = p['size'][k]
        out = [np.asarray(Image.fromarray(a, 'L').resize((s, s), Image.BILINEAR).resize((224, 224), Image.BILINEAR)) for a in X]
        return np.stack(out), {}
    if name == 'requant12':
        v = np.round(Xf * 4095.0 / 255.0).astype(np.uint16)
        wp = p['window_percentiles'][k]
        win = np.zeros((len(X), 2))
        for i in range(len(X)):
            if wp is None:
                win[i] = (2048, 4096)
            else:
                lo, hi = np.percentile(v[i], wp)
                win[i] = (round((lo + hi) / 2.0), max(round(hi - lo), 2))
        mi = np.stack([voi_window_f32(v[i], win[i, 0], win[i, 1]) for i in range(len(X))])
        return v, {'window': win, 'model_input': mi}
    raise ValueError(name)


def main():
    t_all = time.time()
    os.makedirs(OUT, exist_ok=True)
    model, _ = load_model()
    idx, imgs = image_cache()
    sp = read_splits()
    sets = {'test': [r['path'] for r in sp if r['split'] == 'test'], 'dev': dev_paths()}
    timings, summary = {}, {}
    for set_name, paths in sets.items():
        X = imgs[[idx[p] for p in paths]]
        clean_pred = run_onnx(ONNX_PATH, X, u8=True)['logits'].argmax(1)
        for name in CORRUPTIONS:
            t0 = time.time()
            for sev in (1, 2, 3):
                tag = '%s_%s_s%d' % (set_name, name, sev)
                fp = os.path.join(OUT, tag + '.npz')
                if os.path.exists(fp) and os.environ.get('FORCE') != '1':
                    continue
                rs = np.random.RandomState((SEED + zlib.crc32(tag.encode())) % (2 ** 32))
                adv, extra = corrupt(name, sev, X, rs)
                if name == 'requant12':
                    inp = extra['model_input']
                    import torch
                    with torch.no_grad():
                        pt = np.concatenate([model(torch.from_numpy(inp[i:i + 64]).unsqueeze(1)).argmax(1).numpy()
                                             for i in range(0, len(inp), 64)])
                    po = run_onnx(ONNX_PATH, inp[:, None], u8=False)['logits'].argmax(1)
                    d = inp.astype(np.float64) - X / 255.0
                else:
                    pt = predict_logits(model, adv).argmax(1).numpy()
                    po = run_onnx(ONNX_PATH, adv, u8=True)['logits'].argmax(1)
                    d = adv / 255.0 - X / 255.0
                linf = np.abs(d).reshape(len(d), -1).max(1)
                l2 = np.sqrt((d ** 2).reshape(len(d), -1).sum(1))
                np.savez_compressed(fp, paths=np.array(paths), corruption=name, severity=sev, adv=adv, pred_torch=pt,
                                    pred_onnx=po, clean_pred_onnx=clean_pred, linf=linf, l2=l2, **extra)
                summary[tag] = dict(n=len(paths), pred_changed_onnx=int((po != clean_pred).sum()),
                                    torch_onnx_disagree=int((po != pt).sum()), mean_linf_8bit=float(linf.mean() * 255),
                                    mean_l2=float(l2.mean()))
                log('%-32s changed %3d / %d  mean Linf %.1f  mean L2 %.2f' % (tag, summary[tag]['pred_changed_onnx'], len(paths),
                                                                              summary[tag]['mean_linf_8bit'], summary[tag]['mean_l2']))
            timings['%s_%s' % (set_name, name)] = time.time() - t0
    sp_ = os.path.join(OUT, 'summary.json')
    old = json.load(open(sp_)) if os.path.exists(sp_) else {'summary': {}, 'timings': {}}
    old['summary'].update(summary)
    old['timings'].update(timings)
    old['params'] = PARAMS
    old['seconds_total_last_run'] = time.time() - t_all
    json.dump(old, open(sp_, 'w'), indent=1)
    log('corruptions done in %.0fs' % (time.time() - t_all))


if __name__ == '__main__':
    main()
