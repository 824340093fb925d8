"""The full adaptive run (issue 17): every attack x eps against model + the twins of the shipped policy, the
non-adaptive baseline for the L2-for-90%-success comparison, and an adversarially fine-tuned reference model.
Built for a GPU loan (torch + numpy only; inputs from pack.py); runs on CPU too, slowly (--smoke for a check).

    python3 lab/adaptive/full.py --pack .gpu --out OUT [--deadline 480] [--steps 1000 --restarts 5]

Attacks (L-inf, eps/255, random start, step size eps/8 decaying linearly to eps/80; 'restarts' copies of every image
run as one batch; the example kept per image is, over all restarts and checked iterates, the 8-bit-rounded one that
flips the model with the highest merged adversarial p-value of the shipped policy, ties broken by the domain p):
- weighted: maximise min(z_t - z_y, kappa) - lam * sum_d relu(s_d - t_d) / sd_d over the shipped detectors
  (t_d: score at the Bonferroni per-detector flag level 0.05/3; sd_d: spread of its calibration scores);
- selective (Bryniarski et al. 2022, SPGD): per image, the classification term while the model is not fooled,
  else the detector penalty alone;
- orthogonal (Bryniarski et al. 2022, OPGD): the classification gradient projected orthogonal to the penalty's
  while not fooled, else the penalty's gradient projected orthogonal to the classification's;
- hfc (after Yao et al. 2021): weighted, plus pulling every tapped layer toward the target class's clean Gaussian
  (UAD's class means and tied precisions; squared Mahalanobis distance over the layer's clean median);
- logit: match the logits of a typical clean calibration image of the target class (Tramer et al. 2020).
The twins score every check on the rounded iterate, so a kept example is judged exactly as Warden will judge its DICOM.
Budget: --steps x --restarts on --n images; when the deadline cannot hold the full budget for every row, rows after the
eps = 2/255 ones get fewer steps (each row records what it used).
Outputs under --out: summary.json (per row and per image: flipped, merged adversarial p, uad p, L2), adv_eps<e>.npz
(lzma-compressed int8 perturbations of the kept examples, e=1,2,4,8 and
'extra' for the grid; the weakest attacks' images are left out when a file would pass its size cap), robust.pt (the fine-tuned model), log.txt.
"""
import argparse
import json
import lzma
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import RefNet, SEED  # noqa: E402
from twins import MEMBERS, Twins  # noqa: E402

KINDS = ('weighted', 'selective', 'orthogonal', 'hfc', 'logit')
T0 = time.time()
LOG = []


def log(*a):
    line = '[full %6.1fs] %s' % (time.time() - T0, ' '.join(str(v) for v in a))
    print(line, flush=True)
    LOG.append(line)


class Attacker:
    def __init__(self, model, twins, dev, targets, lam=1.0, kappa=2.0, lam_hfc=0.1, check_every=5):
        self.m, self.t, self.dev = model, twins, dev
        self.lam, self.kappa, self.lam_hfc, self.check_every = lam, kappa, lam_hfc, check_every
        self.thr = {k: float(twins.threshold(k, 0.05 / 3)) for k in MEMBERS}
        self.targets = targets

    def penalty(self, s):
        return sum(F.relu(s[k] - self.thr[k]) / self.t.sd[k] for k in MEMBERS)

    def judge(self, x, y):
        """Twin verdict on the 8-bit-rounded images: flipped, merged adversarial p, uad p, twin scores."""
        xr = torch.round(x * 255) / 255
        with torch.no_grad():
            s, z = self.t.scores(self.m, xr, extra=True)
            pol = self.t.policy(s)
        return (z.argmax(1) != y), pol['adv_p'], pol['uad_p'], s

    def run(self, kind, x0, y, eps, steps, restarts, seed):
        n = len(x0)
        X0, Y = x0.repeat(restarts, 1, 1, 1), y.repeat(restarts)
        T = 1 - Y
        g = torch.Generator(device=self.dev).manual_seed(seed)
        x = (X0 + (torch.rand(X0.shape, generator=g, device=self.dev) * 2 - 1) * eps).clamp(0, 1)
        best = x0.clone()
        best_key = torch.full((n,), -1.0, dtype=torch.float64, device=self.dev)
        zt = None
        if kind == 'logit':
            pick = [self.targets[int(c)][torch.randint(len(self.targets[int(c)]), (1,), generator=g, device=self.dev)] for c in T]
            zt = torch.cat(pick, 0)
        for it in range(steps + 1):
            if it % self.check_every == 0 or it == steps:
                fl, ap, up, _ = self.judge(x.detach(), Y)
                key = torch.where(fl, ap + 1e-3 * up, torch.full_like(ap, -1.0))
                kk = key.view(restarts, n)
                kmax, arg = kk.max(0)
                better = kmax > best_key
                if better.any():
                    cand = x.detach().view(restarts, n, *x.shape[1:])[arg, torch.arange(n, device=self.dev)]
                    best[better] = cand[better]
                    best_key[better] = kmax[better]
            if it == steps:
                break
            alpha = eps * (1 / 8 - (1 / 8 - 1 / 80) * it / max(steps - 1, 1))
            x.requires_grad_(True)
            out = self.m(x, feats=True)
            s, z = self.t.scores(self.m, x, out)
            f = torch.clamp(z.gather(1, T[:, None])[:, 0] - z.gather(1, Y[:, None])[:, 0], max=self.kappa)
            fooled = (z.argmax(1) != Y).detach()
            if kind == 'logit':
                grad, = torch.autograd.grad(-((z - zt) ** 2).sum(), x)
            elif kind in ('weighted', 'hfc'):
                obj = f - self.lam * self.penalty(s)
                if kind == 'hfc':
                    m2 = self.t.uad_layer_scores(out, target=T)
                    med = torch.tensor([gg['median'] for gg in self.t.uad], device=self.dev, dtype=m2.dtype)
                    obj = obj - self.lam_hfc * (m2 / med).mean(1).float()
                grad, = torch.autograd.grad(obj.sum(), x)
            elif kind == 'selective':
                pen = self.penalty(s)
                obj = torch.where(fooled, -pen, f)
                grad, = torch.autograd.grad(obj.sum(), x)
            elif kind == 'orthogonal':
                pen = self.penalty(s)
                gf, = torch.autograd.grad(f.sum(), x, retain_graph=True)
                gp, = torch.autograd.grad(pen.sum(), x)
                gf2, gp2 = gf.flatten(1), gp.flatten(1)
                proj = lambda a, b: a - ((a * b).sum(1, keepdim=True) / ((b * b).sum(1, keepdim=True) + 1e-20)) * b  # noqa: E731
                grad = torch.where(fooled[:, None], proj(-gp2, gf2), proj(gf2, gp2)).view_as(x)
            else:
                raise ValueError(kind)
            with torch.no_grad():
                x = (x + alpha * grad.sign()).clamp(X0 - eps, X0 + eps).clamp(0, 1)
        fl, ap, up, s = self.judge(best, y)
        return torch.round(best * 255), fl, ap, up


def pgd_plain(model, x0, y, eps, steps, dev, seed):
    """Non-adaptive PGD-L-inf on the model alone (cross-entropy), the baseline of the L2 comparison."""
    g = torch.Generator(device=dev).manual_seed(seed)
    x = (x0 + (torch.rand(x0.shape, generator=g, device=dev) * 2 - 1) * eps).clamp(0, 1)
    for it in range(steps):
        alpha = eps * (1 / 8 - (1 / 8 - 1 / 80) * it / max(steps - 1, 1))
        x.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x), y), x)
        with torch.no_grad():
            x = (x + alpha * grad.sign()).clamp(x0 - eps, x0 + eps).clamp(0, 1)
    return torch.round(x.detach() * 255)


def l2_of(u8, x0u8):
    return ((u8 - x0u8) / 255).flatten(1).norm(dim=1)


def adversarial_finetune(state, xtr, ytr, dev, epochs, eps_max, log_every=5):
    """Madry-style fine-tuning of the reference model: each batch half clean, half PGD-5 at eps ~ U{1, eps_max}/255."""
    m = RefNet().to(dev)
    m.load_state_dict(state)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4, weight_decay=1e-4)
    n, bs = len(xtr), 64
    counts = torch.bincount(ytr, minlength=2).float()
    cw = (counts.sum() / (2 * counts)).to(dev)
    g = torch.Generator(device=dev).manual_seed(SEED)
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g, device=dev)
        tot = 0.0
        for i in range(0, n, bs):
            b = perm[i:i + bs]
            x, yy = xtr[b], ytr[b]
            flip = torch.rand(len(b), 1, 1, 1, generator=g, device=dev) < 0.5
            x = torch.where(flip, x.flip(3), x)  # horizontal flip only: the lab's strong augmentation lives in train.py
            h = len(b) // 2
            eps = torch.randint(1, eps_max + 1, (h, 1, 1, 1), generator=g, device=dev).float() / 255
            m.eval()
            xa = (x[:h] + (torch.rand(x[:h].shape, generator=g, device=dev) * 2 - 1) * eps).clamp(0, 1)
            for _ in range(5):
                xa.requires_grad_(True)
                gr, = torch.autograd.grad(F.cross_entropy(m(xa), yy[:h]), xa)
                with torch.no_grad():
                    xa = (xa + eps / 2 * gr.sign()).clamp(x[:h] - eps, x[:h] + eps).clamp(0, 1)
            m.train()
            loss = F.cross_entropy(m(torch.cat([xa.detach(), x[h:]])), yy, weight=cw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(b)
        if (ep + 1) % log_every == 0 or ep == epochs - 1:
            log('adversarial fine-tuning epoch %d/%d loss %.4f' % (ep + 1, epochs, tot / n))
    m.eval()
    return m


def robust_accuracy(model, x, y, dev, eps_list, steps):
    out = {}
    with torch.no_grad():
        out['clean'] = float((model(x).argmax(1) == y).float().mean())
    for e in eps_list:
        adv = pgd_plain(model, x, y, e / 255, steps, dev, SEED + int(e * 10)) / 255
        with torch.no_grad():
            out['pgd%s' % e] = float((model(adv).argmax(1) == y).float().mean())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pack', default='.gpu')
    ap.add_argument('--out', required=True)
    ap.add_argument('--deadline', type=float, default=480, help='seconds from start; later rows shrink to fit')
    ap.add_argument('--n', type=int, default=200)
    ap.add_argument('--steps', type=int, default=1000)
    ap.add_argument('--restarts', type=int, default=5)
    ap.add_argument('--eps', default='2,4,1,8')
    ap.add_argument('--kinds', default=','.join(KINDS))
    ap.add_argument('--headline', default='', help='the one kind that gets the full budget at the first eps; others get --others-steps')
    ap.add_argument('--others-steps', type=int, default=0)
    ap.add_argument('--rest-kinds', default='', help='kinds run at the other eps (default: --kinds)')
    ap.add_argument('--grid', default='0.5,1,1.5,2,3,4,6,8', help='eps of the L2-for-90%% comparison')
    ap.add_argument('--ft-epochs', type=int, default=30)
    ap.add_argument('--ft-train', type=int, default=800)
    ap.add_argument('--smoke', action='store_true', help='tiny budget: checks the machinery, not the numbers')
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(SEED)
    log('device', dev, torch.cuda.get_device_name(0) if dev == 'cuda' else '', 'torch', torch.__version__)
    model = RefNet().to(dev)
    state = torch.load(os.path.join(a.pack, 'model.pt'), map_location='cpu')['state_dict']
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    twins = Twins(device=dev)
    te = np.load(os.path.join(a.pack, 'test.npz'))
    x0u8 = torch.from_numpy(te['x'][:a.n].astype(np.float32)).unsqueeze(1).to(dev)
    x0 = x0u8 / 255
    y = torch.from_numpy(te['y'][:a.n]).long().to(dev)
    tg = np.load(os.path.join(a.pack, 'targets.npz'))
    targets = {c: torch.from_numpy(tg['logits_%d' % c]).float().to(dev) for c in (0, 1)}
    att = Attacker(model, twins, dev, targets)
    summary = {'device': dev, 'n': int(len(x0)), 'requested': {'steps': a.steps, 'restarts': a.restarts}, 'rows': [],
               'baseline': [], 'robust': None, 'thresholds': att.thr, 'lam': att.lam, 'kappa': att.kappa, 'lam_hfc': att.lam_hfc}
    pool = ThreadPoolExecutor(4)  # lzma releases the GIL: compression runs beside the GPU
    blobs = {}  # (eps, kind) -> future of the lzma-compressed int8 perturbations [n, 224, 224]
    caps = {'eps2': 15e6, 'eps1': 10e6, 'eps4': 12e6, 'eps8': 8e6, 'extra': 6e6}  # the loan returns 64 MB at most

    def group(e):
        return 'eps%s' % e if ('eps%s' % e) in caps else 'extra'

    def success(r):
        return sum(f and p > 0.05 for f, p in zip(r['flipped'], r['adv_p']))

    def save(final=False):
        summary['seconds'] = round(time.time() - T0, 1)
        summary['images'] = {}
        for gname, cap in caps.items():
            rows = sorted([r for r in summary['rows'] if group(r['eps']) == gname], key=success, reverse=True)
            keep, size = {}, 0
            for r in rows:
                fut = blobs.get((r['eps'], r['kind']))
                if fut is None or not (final or fut.done()):
                    continue
                b = fut.result()
                if size + len(b) > cap:
                    continue
                keep['%s_eps%s' % (r['kind'], str(r['eps']).replace('.', 'p'))] = np.frombuffer(b, dtype=np.uint8)
                size += len(b)
            if keep:
                np.savez(os.path.join(a.out, 'adv_%s.npz' % gname), **keep)
                summary['images'][gname] = sorted(keep)
        json.dump(summary, open(os.path.join(a.out, 'summary.json'), 'w'))
        open(os.path.join(a.out, 'log.txt'), 'w').write('\n'.join(LOG) + '\n')

    def row(kind, e, steps, restarts):
        t = time.time()
        u8, fl, ap_, up = att.run(kind, x0, y, e / 255, steps, restarts, SEED + int(e * 100) + KINDS.index(kind))
        if dev == 'cuda':
            torch.cuda.synchronize()
        l2 = l2_of(u8, x0u8)
        r = dict(kind=kind, eps=e, steps=steps, restarts=restarts, seconds=round(time.time() - t, 1),
                 flipped=fl.cpu().numpy().astype(int).tolist(), adv_p=ap_.cpu().numpy().round(6).tolist(),
                 uad_p=up.cpu().numpy().round(6).tolist(), l2=l2.cpu().numpy().round(4).tolist())
        summary['rows'].append(r)
        nf = int(fl.sum())
        log('%-10s eps %s/255 steps %d x %d: flipped %d/%d, twin caught at 5%% %d, at 0.5%% %d; %.1f s' % (
            kind, e, steps, restarts, nf, len(fl), int((fl & (ap_ <= 0.05)).sum()), int((fl & (ap_ <= 0.005)).sum()), r['seconds']))
        d = np.ascontiguousarray((u8 - x0u8)[:, 0].cpu().numpy().astype(np.int8))
        blobs[(e, kind)] = pool.submit(lzma.compress, d.tobytes(), preset=1)
        save()
        return r, steps * restarts * len(x0) / max(r['seconds'], 1e-3)

    eps_list = [float(v) if '.' in v else int(v) for v in a.eps.split(',')]
    kinds = a.kinds.split(',')
    if a.smoke:
        a.steps, a.restarts = 4, 2
    # the eps = 2/255 rows at the full budget first (the headline), then everything else fitted to the deadline
    rate = None
    first = [(k, eps_list[0]) for k in kinds]
    rest = [(k, e) for e in eps_list[1:] for k in (a.rest_kinds.split(',') if a.rest_kinds else kinds)]
    for k, e in first:
        steps = a.steps if not a.headline or k == a.headline or a.smoke else (a.others_steps or a.steps)
        _, r = row(k, e, steps, a.restarts)
        rate = r if rate is None else min(rate, r)
    # adversarial fine-tuning + robust accuracy (a bound on what detection can honestly claim)
    if a.ft_epochs > 0 and os.path.exists(os.path.join(a.pack, 'train.u8.xz')):
        t = time.time()
        meta = json.load(open(os.path.join(a.pack, 'train.json')))
        xt = np.frombuffer(lzma.decompress(open(os.path.join(a.pack, 'train.u8.xz'), 'rb').read()), dtype=np.uint8)
        xt = xt.reshape(meta['n'], *meta['shape'])[:a.ft_train]
        xtr = torch.from_numpy(xt.astype(np.float32) / 255).unsqueeze(1).to(dev)
        ytr = torch.tensor(meta['labels'][:a.ft_train]).long().to(dev)
        ft_epochs = 1 if a.smoke else a.ft_epochs
        robust = adversarial_finetune(state, xtr, ytr, dev, ft_epochs, 2)
        torch.save({'state_dict': {k: v.cpu() for k, v in robust.state_dict().items()}, 'epochs': ft_epochs, 'train': len(xtr)},
                   os.path.join(a.out, 'robust.pt'))
        st = 5 if a.smoke else 50
        summary['robust'] = dict(train=len(xtr), epochs=ft_epochs, pgd_steps=st,
                                 reference=robust_accuracy(model, x0, y, dev, [1, 2, 4], st),
                                 finetuned=robust_accuracy(robust, x0, y, dev, [1, 2, 4], st), seconds=round(time.time() - t, 1))
        log('robust:', json.dumps(summary['robust']))
        save()
    # non-adaptive baseline on the model alone, every eps of the grid
    grid = [float(v) for v in a.grid.split(',')]
    for e in grid:
        t = time.time()
        st = 4 if a.smoke else 200
        u8 = pgd_plain(model, x0, y, e / 255, st, dev, SEED + int(e * 10))
        fl, ap_, up, _ = att.judge(u8 / 255, y)
        summary['baseline'].append(dict(eps=e, steps=st, flipped=fl.cpu().numpy().astype(int).tolist(), adv_p=ap_.cpu().numpy().round(6).tolist(),
                                        l2=l2_of(u8, x0u8).cpu().numpy().round(4).tolist(), seconds=round(time.time() - t, 1)))
        log('baseline pgd eps %s/255: flipped %d, twin caught at 5%% %d' % (e, int(fl.sum()), int((fl & (ap_ <= 0.05)).sum())))
    save()
    # the remaining eps, each row shrunk so that the rows left fit the deadline (grid extras for the strongest kind last)
    extras = [e for e in grid if e not in eps_list]
    for i, (k, e) in enumerate(rest):
        left = a.deadline - (time.time() - T0)
        rows_left = len(rest) - i + 0.5 * len(extras)
        fit = int(left / rows_left * rate * 0.85 / (a.restarts * len(x0))) if rate else a.steps
        steps = max(min(a.steps, fit), 20 if not a.smoke else 2)
        if left < 10:
            log('deadline: skipped %s eps %s' % (k, e))
            continue
        row(k, e, steps, a.restarts)
    # the strongest kind at eps = 2 (fewest caught at 5 %), on the grid's other eps, for the L2-for-90% comparison
    r2 = [r for r in summary['rows'] if r['eps'] == eps_list[0]]
    if r2 and extras:
        wins = {r['kind']: success(r) for r in r2}
        strongest = max(wins, key=wins.get)
        summary['strongest'] = strongest
        for j, e in enumerate(extras):
            left = a.deadline - (time.time() - T0)
            if left < 10:
                log('deadline: skipped grid eps %s' % e)
                continue
            fit = int(left / (len(extras) - j) * rate * 0.85 / (a.restarts * len(x0))) if rate else a.steps
            row(strongest, e, max(min(a.steps, fit), 2 if a.smoke else 20), a.restarts)
    log('done')
    save(final=True)


if __name__ == '__main__':
    main()
