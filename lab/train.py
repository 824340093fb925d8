"""Train the reference CNN on model_train; select the epoch on detector_fit (ROC-AUC)."""
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from common import CKPT_PATH, DATA, SEED, RefNet, image_cache, log, read_splits, seed_all, to_input, predict_logits

# One recipe, from scratch, fixed in advance: 12 epochs, AdamW + OneCycle (max LR 2e-3), "strong" augmentation from
# epoch 1, class-weighted cross-entropy with label smoothing 0.1; epoch selection on detector_fit only.
EPOCHS = int(os.environ.get('LAB_EPOCHS', '12'))
BATCH = 32
LR = 2e-3
WD = 1e-4
LABEL_SMOOTHING = 0.1
STOP_AFTER = int(os.environ.get('LAB_STOP_AFTER', '0'))  # optional knob (stop early); not used by run.sh
# strong augmentation: aspect-ratio jitter (the upstream resize distorted the aspect ratio) + gamma
AUG = dict(max_shift=0.08, scale=(0.85, 1.15), rot_deg=10.0, brightness=0.12, contrast=(0.7, 1.3), aniso=0.15, gamma=(0.7, 1.4))
if os.environ.get('LAB_AUG') == 'mild':  # optional knob: the older, milder augmentation; not used by run.sh
    AUG = dict(max_shift=0.06, scale=(0.92, 1.08), rot_deg=6.0, brightness=0.08, contrast=(0.85, 1.15), aniso=0.0, gamma=(1.0, 1.0))


def augment(x, g):
    n = x.shape[0]
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(AUG['rot_deg'])
    sc = AUG['scale'][0] + torch.rand(n, generator=g) * (AUG['scale'][1] - AUG['scale'][0])
    tx = (torch.rand(n, generator=g) * 2 - 1) * AUG['max_shift'] * 2
    ty = (torch.rand(n, generator=g) * 2 - 1) * AUG['max_shift'] * 2
    an = 1 + (torch.rand(n, generator=g) * 2 - 1) * AUG['aniso']
    sx, sy = sc * an, sc / an
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos / sx, -sin / sx, tx], 1), torch.stack([sin / sy, cos / sy, ty], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
    c = AUG['contrast'][0] + torch.rand(n, 1, 1, 1, generator=g) * (AUG['contrast'][1] - AUG['contrast'][0])
    b = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * AUG['brightness']
    m = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - m) * c + m + b).clamp(0, 1)
    if AUG['gamma'] != (1.0, 1.0):
        lg = math.log(AUG['gamma'][0]) + torch.rand(n, 1, 1, 1, generator=g) * (math.log(AUG['gamma'][1]) - math.log(AUG['gamma'][0]))
        x = x.clamp_min(1e-6) ** torch.exp(lg)
    return x


def main():
    seed_all(SEED)
    g = torch.Generator().manual_seed(SEED)
    idx, imgs = image_cache()
    sp = read_splits()
    tr = [r for r in sp if r['split'] == 'model_train']
    va = [r for r in sp if r['split'] == 'detector_fit']
    Xtr = imgs[[idx[r['path']] for r in tr]]
    ytr = torch.tensor([r['label'] for r in tr])
    Xva = imgs[[idx[r['path']] for r in va]]
    yva = np.array([r['label'] for r in va])
    counts = torch.bincount(ytr, minlength=2).float()
    cw = (counts.sum() / (2 * counts))
    log('model_train n=%d class counts %s -> class weights %s' % (len(tr), counts.tolist(), cw.tolist()))
    model = RefNet()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    steps = EPOCHS * math.ceil(len(tr) / BATCH)
    best = (-1, None)
    hist = []
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.15)
    log('recipe: %d epochs from scratch, OneCycle max LR %.0e, batch %d, label smoothing %.2f, aug %s' % (
        EPOCHS, LR, BATCH, LABEL_SMOOTHING, AUG))
    t0 = time.time()
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(tr), generator=g)
        tl, te = 0.0, time.time()
        for i in range(0, len(tr), BATCH):
            b = perm[i:i + BATCH]
            x = augment(to_input(Xtr[b.numpy()]), g)
            loss = F.cross_entropy(model(x), ytr[b], weight=cw, label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tl += loss.item() * len(b)
        model.eval()
        lv = predict_logits(model, Xva)
        p = torch.softmax(lv, 1)[:, 1].numpy()
        auc = roc_auc_score(yva, p)
        acc = float(((p > 0.5) == yva).mean())
        vloss = F.cross_entropy(lv, torch.from_numpy(yva)).item()  # plain CE (no weights, no smoothing)
        hist.append(dict(epoch=ep + 1, train_loss=tl / len(tr), fit_auc=auc, fit_acc=acc, fit_loss=vloss))
        log('epoch %2d/%d train_loss %.4f | detector_fit auc %.4f acc %.4f loss %.4f | %.0fs (total %.0fs)' % (
            ep + 1, EPOCHS, tl / len(tr), auc, acc, vloss, time.time() - te, time.time() - t0))
        score = auc - 0.01 * vloss  # AUC first, loss as tie-break
        if score > best[0]:
            best = (score, ep + 1)
            torch.save({'state_dict': model.state_dict(), 'epoch': ep + 1, 'fit_auc': auc, 'seed': SEED,
                        'aug': AUG, 'epochs': EPOCHS, 'lr': LR, 'batch': BATCH, 'class_weights': cw.tolist(),
                        'history': hist, 'label_smoothing': LABEL_SMOOTHING, 'recipe': 'single-run'}, CKPT_PATH)
        if STOP_AFTER and ep + 1 >= STOP_AFTER:
            log('stopping after epoch %d (LAB_STOP_AFTER)' % (ep + 1))
            break
    ck = torch.load(CKPT_PATH)
    ck['history'] = hist
    torch.save(ck, CKPT_PATH)
    log('selected epoch %d (detector_fit AUC %.4f); checkpoint %s; train time %.0fs' % (best[1], ck['fit_auc'], CKPT_PATH, time.time() - t0))


if __name__ == '__main__':
    main()
