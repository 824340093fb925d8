"""White-box attack suite on the reference model (hand-written), plus benign-shift negatives.
Every adversarial image is clipped to [0,1] and rounded to uint8; success = the ROUNDED image flips the
prediction (torch), re-checked with the exported ONNX model through onnxruntime-node."""
import io
import json
import os
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from common import DATA, ONNX_PATH, SEED, image_cache, load_model, log, predict_logits, read_splits, run_onnx, seed_all

OUT = os.environ.get('LAB_ATTACK_OUT', os.path.join(DATA, 'attacks'))
N_ATTACK = int(os.environ.get('LAB_N_ATTACK', '300'))      # correctly classified test images attacked
N_ATTACK_CW = int(os.environ.get('LAB_N_ATTACK_CW', '50'))  # CW-L2 on a seeded subset of the same list (cut from 150 for time)
BS = 50
# Time cut: FGSM/BIM/PGD-Linf/MIM run on all N_ATTACK selected images; PGD-L2, DeepFool, UAP and patch on a seeded
# N_PER_CONFIG subset of them, CW-L2 on a seeded N_ATTACK_CW subset.
N_PER_CONFIG = int(os.environ.get('LAB_N_PER_CONFIG', '100'))
FULL_N_ATTACKS = ('fgsm', 'bim', 'pgd_linf', 'mim')
LINF_EPS = [1, 2, 4, 8]            # 8-bit units
LINF_STEPS = 10
L2_EPS = [0.5, 1.0, 2.0]           # [0,1] pixel units, 224x224 image
L2_STEPS = 10
CW = dict(binary_steps=3, iters=30, lr=0.01, c0=1.0, kappa=0.0)
DEEPFOOL = dict(max_iter=30, overshoot=0.02)
UAP = dict(eps=8, n_fit=int(os.environ.get('LAB_N_FIT', '512')), epochs=8, batch=32, fit_split='model_train')
PATCH = dict(size=48, n_fit=int(os.environ.get('LAB_N_FIT', '512')), epochs=16, batch=32, lr=0.05, fit_split='model_train')
BENIGN_JPEG_Q = 50
BENIGN_EXPOSURE = [0.9, 1.1]


def q8(x):
    """[0,1] float tensor -> uint8 numpy, clipped and rounded."""
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8).squeeze(1).numpy()


def u2t(u):
    return torch.from_numpy(u.astype(np.float32) / 255.0).unsqueeze(1)


def grad_ce(model, x, y):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction='sum')
    g, = torch.autograd.grad(loss, x)
    return g


def linf_iter(model, x, y, eps, steps, alpha, rand_start=False, momentum=None, g=None):
    if rand_start:
        d = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
        xa = (x + d).clamp(0, 1)
    else:
        xa = x.clone()
    mom = torch.zeros_like(x)
    for _ in range(steps):
        gr = grad_ce(model, xa, y)
        if momentum is not None:
            mom = momentum * mom + gr / (gr.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
            gr = mom
        xa = xa + alpha * gr.sign()
        xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
    return xa


def l2_norm(t):
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def pgd_l2(model, x, y, eps, steps, alpha, g):
    d = torch.randn(x.shape, generator=g)
    d = d / l2_norm(d) * eps * 0.1
    xa = (x + d).clamp(0, 1)
    for _ in range(steps):
        gr = grad_ce(model, xa, y)
        xa = xa + alpha * gr / (l2_norm(gr) + 1e-12)
        d = xa - x
        n = l2_norm(d)
        d = d * torch.clamp(eps / (n + 1e-12), max=1.0)
        xa = (x + d).clamp(0, 1)
    return xa


def qpred(model, xa):
    with torch.no_grad():
        return model(u2t(q8(xa))).argmax(1)


def cw_l2(model, x, y, params=None):
    """params: a dict like CW (default CW). With kappa > 0 an iterate counts as a success for keeping only when the
    ROUNDED image reaches the confidence margin z_other - z_y >= kappa (the CW objective), else when it is
    misclassified (kappa = 0: exactly the original suite's criterion)."""
    P = CW if params is None else params
    n = x.shape[0]
    lo, hi = torch.zeros(n), torch.full((n,), 1e10)
    c = torch.full((n,), P['c0'])
    best = x.clone()
    best_l2 = torch.full((n,), float('inf'))
    xc = x.clamp(1e-6, 1 - 1e-6)
    w0 = torch.atanh(xc * 2 - 1)
    oh = F.one_hot(y, 2).bool()
    for _ in range(P['binary_steps']):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=P['lr'])
        succ = torch.zeros(n, dtype=torch.bool)
        for _ in range(P['iters']):
            xa = (torch.tanh(w) + 1) / 2
            z = model(xa)
            real = z[oh]
            other = z.masked_fill(oh, -1e9).max(1).values
            f = torch.clamp(real - other, min=-P['kappa'])
            l2 = ((xa - x) ** 2).flatten(1).sum(1)
            loss = (l2 + c * f).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                qa = u2t(q8(xa.detach()))
                zq = model(qa)
                if P['kappa'] > 0:
                    ok = (zq.masked_fill(oh, -1e9).max(1).values - zq[oh]) >= P['kappa']
                else:
                    ok = zq.argmax(1) != y           # success judged on the ROUNDED image
                ql2 = l2_norm(qa - x).flatten()
                imp = ok & (ql2 < best_l2)
                best[imp] = qa[imp]
                best_l2[imp] = ql2[imp]
                succ |= ok
        # binary search on c
        hi = torch.where(succ, torch.min(hi, c), hi)
        lo = torch.where(succ, lo, torch.max(lo, c))
        c = torch.where(hi < 1e9, (lo + hi) / 2, c * 10)
    return best


def deepfool(model, x, y):
    """Binary DeepFool on f = z_other - z_y; stops per image when the ROUNDED image is misclassified."""
    xa = x.clone()
    r_tot = torch.zeros_like(x)
    active = torch.ones(x.shape[0], dtype=torch.bool)
    for _ in range(DEEPFOOL['max_iter']):
        if not active.any():
            break
        xi = xa[active].clone().requires_grad_(True)
        z = model(xi)
        ya = y[active]
        f = z.gather(1, (1 - ya).view(-1, 1)).squeeze(1) - z.gather(1, ya.view(-1, 1)).squeeze(1)
        gr, = torch.autograd.grad(f.sum(), xi)
        with torch.no_grad():
            gn = l2_norm(gr)
            r = (f.abs().view(-1, 1, 1, 1) + 1e-4) / (gn ** 2 + 1e-12) * gr
            r_tot[active] = r_tot[active] + r
            xa[active] = (x[active] + (1 + DEEPFOOL['overshoot']) * r_tot[active]).clamp(0, 1)
            done = qpred(model, xa) != y
            active = active & ~done
    return xa


def fit_uap(model, X, Y, g):
    eps = UAP['eps'] / 255
    delta = torch.zeros(1, 1, 224, 224)
    for ep in range(UAP['epochs']):
        perm = torch.randperm(len(X), generator=g)
        lr = eps / 4 * (0.7 ** ep)
        for i in range(0, len(X), UAP['batch']):
            b = perm[i:i + UAP['batch']].numpy()
            x = u2t(X[b])
            d = delta.clone().requires_grad_(True)
            loss = F.cross_entropy(model((x + d).clamp(0, 1)), torch.from_numpy(Y[b]))
            gr, = torch.autograd.grad(loss, d)
            delta = (delta + lr * gr.sign()).clamp(-eps, eps)
    return delta


def fit_patch(model, X, Y, g):
    s = PATCH['size']
    p = torch.rand(1, 1, s, s, generator=g).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=PATCH['lr'])
    for ep in range(PATCH['epochs']):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), PATCH['batch']):
            b = perm[i:i + PATCH['batch']].numpy()
            x = u2t(X[b])
            locs = torch.randint(0, 224 - s + 1, (len(b), 2), generator=g)
            xs = apply_patch(x, p.clamp(0, 1), locs)
            loss = -F.cross_entropy(model(xs), torch.from_numpy(Y[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return p.detach().clamp(0, 1)


def apply_patch(x, p, locs):
    s = p.shape[-1]
    out = []
    for k in range(x.shape[0]):
        r, c = int(locs[k, 0]), int(locs[k, 1])
        pad = F.pad(p[0], (c, 224 - s - c, r, 224 - s - r))
        mask = torch.zeros(1, 224, 224)
        mask[:, r:r + s, c:c + s] = 1
        out.append(x[k] * (1 - mask) + pad * mask)
    return torch.stack(out)


def save(name, **kw):
    np.savez_compressed(os.path.join(OUT, name + '.npz'), **kw)


def main():
    seed_all(SEED)
    os.makedirs(OUT, exist_ok=True)
    model, ck = load_model()
    for p in model.parameters():
        p.requires_grad_(False)
    idx, imgs = image_cache()
    sp = read_splits()
    test = [r for r in sp if r['split'] == 'test']
    Xt = imgs[[idx[r['path']] for r in test]]
    Yt = np.array([r['label'] for r in test])
    pred = predict_logits(model, Xt).argmax(1).numpy()
    rng = np.random.RandomState(SEED)
    correct = np.where(pred == Yt)[0]
    sel = np.sort(rng.choice(correct, size=min(N_ATTACK, len(correct)), replace=False))
    sel_cw = np.sort(np.random.RandomState(SEED + 1).choice(sel, size=min(N_ATTACK_CW, len(sel)), replace=False))
    sel_main = np.sort(np.random.RandomState(SEED + 4).choice(sel, size=min(N_PER_CONFIG, len(sel)), replace=False))
    np.savez(os.path.join(OUT, 'subset.npz'), sel=sel, sel_cw=sel_cw, sel_main=sel_main, test_paths=np.array([r['path'] for r in test]))
    log('attacking %d correctly classified test images (of %d correct / %d); CW on %d' % (
        len(sel), len(correct), len(test), len(sel_cw)))
    g = torch.Generator().manual_seed(SEED)
    timings = {}

    configs = []
    for e in LINF_EPS:
        configs += [('fgsm', 'linf', e), ('bim', 'linf', e), ('pgd_linf', 'linf', e), ('mim', 'linf', e)]
    configs += [('pgd_l2', 'l2', e) for e in L2_EPS]
    configs += [('cw_l2', '', None), ('deepfool', '', None), ('uap', 'linf', UAP['eps']), ('patch', '', None)]
    tr_rows = [r for r in sp if r['split'] == UAP['fit_split']]
    fit_sel = np.sort(np.random.RandomState(SEED + 2).choice(len(tr_rows), size=UAP['n_fit'], replace=False))
    fitX = imgs[[idx[tr_rows[i]['path']] for i in fit_sel]]
    fitY = np.array([tr_rows[i]['label'] for i in fit_sel])
    for atk, norm, eps in configs:
        name = atk + ('' if eps is None else '_%s' % eps)
        if os.path.exists(os.path.join(OUT, name + '.npz')) and os.environ.get('FORCE') != '1':
            log('%-14s exists, skipping' % name)
            continue
        t0 = time.time()
        g = torch.Generator().manual_seed(SEED + zlib.crc32(name.encode()))  # per-config seed: resumable + deterministic
        ids = sel_cw if atk == 'cw_l2' else (sel if atk in FULL_N_ATTACKS else sel_main)
        X, Y = Xt[ids], Yt[ids]
        advs = []
        extra = {}
        if atk == 'uap':
            delta = fit_uap(model, fitX, fitY, g)
            extra['delta'] = delta.numpy()
        if atk == 'patch':
            patch = fit_patch(model, fitX, fitY, g)
            extra['patch'] = patch.numpy()
            locs = torch.randint(0, 224 - PATCH['size'] + 1, (len(ids), 2), generator=g)
            extra['locs'] = locs.numpy()
        for i in range(0, len(ids), BS):
            x, y = u2t(X[i:i + BS]), torch.from_numpy(Y[i:i + BS])
            if atk in ('fgsm', 'bim', 'pgd_linf', 'mim'):
                ee = eps / 255
                if atk == 'fgsm':
                    xa = linf_iter(model, x, y, ee, 1, ee)
                elif atk == 'bim':
                    xa = linf_iter(model, x, y, ee, LINF_STEPS, ee / 4)
                elif atk == 'pgd_linf':
                    xa = linf_iter(model, x, y, ee, LINF_STEPS, ee / 4, rand_start=True, g=g)
                else:
                    xa = linf_iter(model, x, y, ee, LINF_STEPS, ee / LINF_STEPS, momentum=1.0)
            elif atk == 'pgd_l2':
                xa = pgd_l2(model, x, y, eps, L2_STEPS, 2.5 * eps / L2_STEPS, g)
            elif atk == 'cw_l2':
                xa = cw_l2(model, x, y)
            elif atk == 'deepfool':
                xa = deepfool(model, x, y)
            elif atk == 'uap':
                xa = (x + delta).clamp(0, 1)
            elif atk == 'patch':
                xa = apply_patch(x, patch, locs[i:i + BS])
            advs.append(q8(xa))
        adv = np.concatenate(advs)
        pa = predict_logits(model, adv).argmax(1).numpy()
        succ = (pa != Y)
        dt = time.time() - t0
        timings[name] = dt
        d = adv.astype(np.float32) / 255 - X.astype(np.float32) / 255
        save(name, attack=atk, norm=norm, eps=np.nan if eps is None else eps, ids=ids, adv=adv,
             pred_torch=pa, success_torch=succ, seconds=dt, **extra)
        log('%-14s n=%3d success(after rounding)=%3d (%.1f%%) mean Linf %.4f mean L2 %.3f  %.0fs' % (
            name, len(ids), succ.sum(), 100 * succ.mean(), np.abs(d).reshape(len(d), -1).max(1)[succ].mean() if succ.any() else 0,
            np.sqrt((d ** 2).reshape(len(d), -1).sum(1))[succ].mean() if succ.any() else 0, dt))

    # --- benign shifts on ALL 624 clean test images
    t0 = time.time()
    p4 = np.load(os.path.join(OUT, 'pgd_linf_4.npz'))
    d = p4['adv'].astype(np.float32) / 255 - Xt[p4['ids']].astype(np.float32) / 255
    l2s = np.sqrt((d ** 2).reshape(len(d), -1).sum(1))[p4['success_torch']]
    sigma = float(l2s.mean() / 224.0)  # E||n||_2 ~ sigma*sqrt(224*224)
    allids = np.arange(len(test))
    from PIL import Image
    rs = np.random.RandomState(SEED + 3)
    ben = {}
    ben['gaussian_noise'] = np.clip(np.round(Xt.astype(np.float64) + rs.randn(*Xt.shape) * sigma * 255), 0, 255).astype(np.uint8)
    jp = []
    for a in Xt:
        buf = io.BytesIO()
        Image.fromarray(a, 'L').save(buf, format='JPEG', quality=BENIGN_JPEG_Q)
        buf.seek(0)
        jp.append(np.asarray(Image.open(buf).convert('L')))
    ben['jpeg50'] = np.stack(jp)
    for f in BENIGN_EXPOSURE:
        ben['exposure_%s' % f] = np.clip(np.round(Xt.astype(np.float64) * f), 0, 255).astype(np.uint8)
    for k, v in ben.items():
        pa = predict_logits(model, v).argmax(1).numpy()
        save('benign_' + k, attack=k, ids=allids, adv=v, pred_torch=pa, sigma=sigma if k == 'gaussian_noise' else np.nan)
    timings['benign'] = time.time() - t0
    log('benign shifts written (gaussian sigma = %.5f in [0,1] units = %.2f grey levels, matched to mean L2 %.3f of successful PGD-4)'
        % (sigma, sigma * 255, l2s.mean()))

    # --- ONNX re-check of every rounded image (adversarial + benign) and the clean test set
    t0 = time.time()
    names = sorted(f[:-4] for f in os.listdir(OUT) if f.endswith('.npz') and f != 'subset.npz')
    clean_on = run_onnx(ONNX_PATH, Xt, u8=True)['logits'].argmax(1)
    np.save(os.path.join(OUT, 'clean_test_onnx_pred.npy'), clean_on)
    summary = {}
    for nm in names:
        z = dict(np.load(os.path.join(OUT, nm + '.npz')))
        po = run_onnx(ONNX_PATH, z['adv'], u8=True)['logits'].argmax(1)
        z['pred_onnx'] = po
        ids = z['ids']
        Y = Yt[ids]
        dd = z['adv'].astype(np.float32) / 255 - Xt[ids].astype(np.float32) / 255
        linf = np.abs(dd).reshape(len(dd), -1).max(1)
        l2 = np.sqrt((dd ** 2).reshape(len(dd), -1).sum(1))
        z['linf'], z['l2'] = linf, l2
        np.savez_compressed(os.path.join(OUT, nm + '.npz'), **z)
        if nm.startswith('benign_'):
            summary[nm] = dict(n=int(len(ids)), pred_changed_onnx=int((po != clean_on[ids]).sum()),
                               mean_linf=float(linf.mean()), mean_l2=float(l2.mean()))
            continue
        s_t = z['success_torch']
        s_o = po != Y
        summary[nm] = dict(attack=str(z['attack']), norm=str(z['norm']), eps=None if np.isnan(z['eps']) else float(z['eps']),
                           attempted=int(len(ids)), success_torch=int(s_t.sum()), success_onnx=int(s_o.sum()),
                           torch_onnx_disagree=int((s_t != s_o).sum()),
                           mean_linf=float(linf[s_o].mean()) if s_o.any() else None,
                           mean_l2=float(l2[s_o].mean()) if s_o.any() else None,
                           seconds=float(z['seconds']))
    timings['onnx_recheck'] = time.time() - t0
    old = {}
    sp_ = os.path.join(OUT, 'summary.json')
    if os.path.exists(sp_):
        old = json.load(open(sp_)).get('timings', {})
    old.update(timings)
    json.dump({'summary': summary, 'timings': old, 'gaussian_sigma': sigma,
               'params': dict(N_ATTACK=N_ATTACK, N_ATTACK_CW=N_ATTACK_CW, LINF_EPS=LINF_EPS, LINF_STEPS=LINF_STEPS,
                              L2_EPS=L2_EPS, L2_STEPS=L2_STEPS, CW=CW, DEEPFOOL=DEEPFOOL, UAP=UAP, PATCH=PATCH)},
              open(sp_, 'w'), indent=1)
    log('ONNX re-check done in %.0fs; summary in %s' % (timings['onnx_recheck'], sp_))
    for k, v in summary.items():
        log(k, json.dumps(v))


if __name__ == '__main__':
    main()
