"""A "sealed vendor model" for the bring-your-own-model path (issue 16): a second architecture, exported with ONLY a
logits output and no Warden manifest, plus white-box attacks on it written as DICOM.

    sub-steps (each skips itself when its output exists; FORCE=1 redoes):
      train    data/sealed/sealed-vgg.pt          SealedVGG trained briefly on model_train, epoch chosen on detector_fit
      export   test/fixtures/byo/sealed-vgg.onnx  logits only, input normalised OUTSIDE the graph, checker + parity
      attacks  data/sealed/attacks.npz            FGSM / PGD-Linf at 2, 4, 8/255 on 100 test images; gaussian_noise, jpeg50
      dicom    data/sealed/manifest.csv + dicom/  clean (every split), adversarial, benign DICOMs (lab conventions)
      fixtures test/fixtures/byo/adversarial/**   a few successful PGD-Linf 8/255 DICOMs + manifest.csv

Differences from the reference model (lab/common.py RefNet), on purpose: plain VGG-style 3x3 conv stacks with max-pool
downsampling (no residual connections), an MLP head (the penultimate layer is a 64-d hidden layer, not a pooled conv
map), normalisation (x - 0.5) / 0.25 expected from the caller (so the vendor has to tell `warden model expose` about it
with --mean/--std), generic tensor names ('x' -> 'y'), opset 17, no label smoothing.
"""
import csv
import io
import json
import math
import os
import shutil
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from common import DATA, REPO, SEED, image_cache, log, predict_logits, read_splits, run_onnx, seed_all, to_input

OUT = os.path.join(DATA, 'sealed')
CKPT = os.path.join(OUT, 'sealed-vgg.pt')
FIXTURES = os.path.join(REPO, 'test', 'fixtures', 'byo')
ONNX = os.path.join(FIXTURES, 'sealed-vgg.onnx')
ATTACKS = os.path.join(OUT, 'attacks.npz')
MANIFEST = os.path.join(OUT, 'manifest.csv')
NORM_MEAN, NORM_STD = 0.5, 0.25     # the vendor's preprocessing: (u8/255 - 0.5) / 0.25, outside the graph

EPOCHS = int(os.environ.get('LAB_SEALED_EPOCHS', '6'))
BATCH = 32
LR = 2e-3
WD = 1e-4
N_ATTACK = 100                      # correctly classified test images attacked (seeded)
EPS = [2, 4, 8]                     # 8-bit units
N_FIXTURES = 10                     # successful PGD-Linf 8/255 DICOMs committed as fixtures
MAX_FIXTURE_BYTES = 5 * 1024 * 1024


class SealedVGG(nn.Module):
    """Stem 5x5/2 + max-pool -> 56 px; four VGG stages (3x3 conv-BN-ReLU, max-pool between) 24/48/96/128 at 56/28/14/7 px;
    global average pool; MLP head 128 -> 64 (ReLU) -> 2. Takes normalised input."""

    def __init__(self):
        super().__init__()

        def cbr(cin, cout, k=3, s=1):
            return [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *cbr(1, 16, 5, 2), nn.MaxPool2d(2),                 # 224 -> 112 -> 56
            *cbr(16, 24), *cbr(24, 24), nn.MaxPool2d(2),        # 56 -> 28
            *cbr(24, 48), *cbr(48, 48), nn.MaxPool2d(2),        # 28 -> 14
            *cbr(48, 96), *cbr(96, 96), nn.MaxPool2d(2),        # 14 -> 7
            *cbr(96, 128))
        self.head = nn.Sequential(nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(64, 2))

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class PixelSpace(nn.Module):
    """The attacker's view: [0,1] pixels in, the vendor's normalisation, the sealed network."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x - NORM_MEAN) / NORM_STD)


def normalised(u8):
    return ((np.asarray(u8, dtype=np.float32) / 255.0 - NORM_MEAN) / NORM_STD)[:, None]


def load_pixel_model():
    net = SealedVGG()
    net.load_state_dict(torch.load(CKPT, map_location='cpu')['state_dict'])
    m = PixelSpace(net).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def split_arrays(split):
    idx, imgs = image_cache()
    rows = [r for r in read_splits() if r['split'] == split]
    return rows, imgs[[idx[r['path']] for r in rows]], np.array([r['label'] for r in rows])


# ----------------------------------------------------------------------------------------------------- train
def train():
    from train import augment  # the reference recipe's augmentation (strong, as in lab/train.py)
    seed_all(SEED)
    g = torch.Generator().manual_seed(SEED + 16)
    tr, Xtr, ytr = split_arrays('model_train')
    va, Xva, yva = split_arrays('detector_fit')
    ytr_t = torch.from_numpy(ytr)
    counts = torch.bincount(ytr_t, minlength=2).float()
    cw = counts.sum() / (2 * counts)
    model = PixelSpace(SealedVGG())
    log('SealedVGG: %d parameters; %d epochs, AdamW + OneCycle max LR %.0e, batch %d, class weights %s' % (
        sum(p.numel() for p in model.parameters()), EPOCHS, LR, BATCH, cw.tolist()))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=EPOCHS * math.ceil(len(tr) / BATCH), pct_start=0.15)
    best, hist, t0 = -1.0, [], time.time()
    os.makedirs(OUT, exist_ok=True)
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(tr), generator=g)
        te, tl = time.time(), 0.0
        for i in range(0, len(tr), BATCH):
            b = perm[i:i + BATCH]
            loss = F.cross_entropy(model(augment(to_input(Xtr[b.numpy()]), g)), ytr_t[b], weight=cw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tl += loss.item() * len(b)
        model.eval()
        lv = predict_logits(model, Xva)
        auc = roc_auc_score(yva, torch.softmax(lv, 1)[:, 1].numpy())
        acc = float((lv.argmax(1).numpy() == yva).mean())
        hist.append(dict(epoch=ep + 1, train_loss=tl / len(tr), fit_auc=auc, fit_acc=acc, seconds=time.time() - te))
        log('epoch %d/%d train_loss %.4f | detector_fit auc %.4f acc %.4f | %.0fs' % (ep + 1, EPOCHS, tl / len(tr), auc, acc, time.time() - te))
        if auc > best:
            best = auc
            torch.save({'state_dict': model.net.state_dict(), 'epoch': ep + 1, 'fit_auc': auc, 'seed': SEED}, CKPT + '.partial')
    ck = torch.load(CKPT + '.partial')
    ck['history'] = hist
    ck['train_seconds'] = time.time() - t0
    torch.save(ck, CKPT + '.partial')
    os.replace(CKPT + '.partial', CKPT)
    log('selected epoch %d (detector_fit AUC %.4f), %.0fs' % (ck['epoch'], ck['fit_auc'], time.time() - t0))


# ---------------------------------------------------------------------------------------------------- export
def export():
    import onnx
    model = load_pixel_model()
    os.makedirs(FIXTURES, exist_ok=True)
    tmp = ONNX + '.tmp'
    torch.onnx.export(model.net, torch.zeros(2, 1, 224, 224), tmp, opset_version=17, input_names=['x'], output_names=['y'],
                      dynamic_axes={'x': {0: 'batch'}, 'y': {0: 'batch'}}, do_constant_folding=True)
    mp = onnx.load(tmp)
    del mp.metadata_props[:]       # sealed: no manifest, nothing but the logits
    mp.producer_name = 'sealed-vendor (warden lab)'
    onnx.checker.check_model(mp)
    assert [o.name for o in mp.graph.output] == ['y'], [o.name for o in mp.graph.output]
    onnx.save(mp, ONNX)
    os.remove(tmp)
    # parity torch vs onnxruntime-node, and accuracy of the exported model (argmax) per split
    report = {'onnx_bytes': os.path.getsize(ONNX), 'parameters': sum(p.numel() for p in model.parameters())}
    for split in ('detector_fit', 'calibration', 'test'):
        rows, X, y = split_arrays(split)
        on = run_onnx(ONNX, normalised(X))['y']
        if split == 'test':
            tl = predict_logits(model, X).numpy()
            report['parity_max_abs_diff_test'] = float(np.abs(on - tl).max())
            assert report['parity_max_abs_diff_test'] < 1e-4, report
        p = torch.softmax(torch.from_numpy(on), 1)[:, 1].numpy()
        report[split] = dict(n=int(len(y)), accuracy=float((on.argmax(1) == y).mean()), roc_auc=float(roc_auc_score(y, p)))
    json.dump(report, open(os.path.join(OUT, 'export.json'), 'w'), indent=1)
    log('wrote %s (%.2f MB): %s' % (ONNX, os.path.getsize(ONNX) / 1e6, json.dumps(report)))


# --------------------------------------------------------------------------------------------------- attacks
def attacks():
    from attacks import linf_iter, q8, u2t   # the reference suite's FGSM / PGD-Linf, unchanged
    from PIL import Image
    seed_all(SEED)
    model = load_pixel_model()
    test, Xt, Yt = split_arrays('test')
    clean_on = run_onnx(ONNX, normalised(Xt))['y'].argmax(1)
    correct = np.where(clean_on == Yt)[0]
    sel = np.sort(np.random.RandomState(SEED + 16).choice(correct, size=min(N_ATTACK, len(correct)), replace=False))
    log('attacking %d of %d correctly classified test images (of %d)' % (len(sel), len(correct), len(test)))
    out = {'sel': sel, 'clean_pred_onnx': clean_on}
    summary = {}
    for atk in ('fgsm', 'pgd_linf'):
        for e in EPS:
            name = '%s_%d' % (atk, e)
            t0 = time.time()
            g = torch.Generator().manual_seed(SEED + zlib.crc32(('sealed_' + name).encode()))
            advs = []
            for i in range(0, len(sel), 50):
                x, y = u2t(Xt[sel[i:i + 50]]), torch.from_numpy(Yt[sel[i:i + 50]])
                ee = e / 255
                xa = linf_iter(model, x, y, ee, 1, ee) if atk == 'fgsm' else linf_iter(model, x, y, ee, 10, ee / 4, rand_start=True, g=g)
                advs.append(q8(xa))
            adv = np.concatenate(advs)
            po = run_onnx(ONNX, normalised(adv))['y'].argmax(1)   # success is the ONNX verdict on the rounded image
            out[name] = adv
            out[name + '_pred'] = po
            d = adv.astype(np.float32) / 255 - Xt[sel].astype(np.float32) / 255
            ok = po != Yt[sel]
            summary[name] = dict(attempted=int(len(sel)), success_onnx=int(ok.sum()), seconds=time.time() - t0,
                                 mean_linf_255=float(np.abs(d).reshape(len(d), -1).max(1)[ok].mean() * 255) if ok.any() else None,
                                 mean_l2=float(np.sqrt((d ** 2).reshape(len(d), -1).sum(1))[ok].mean()) if ok.any() else None)
            log(name, json.dumps(summary[name]))
    # benign shifts on all clean test images, as in lab/attacks.py (sigma matched to this model's PGD-4 perturbations)
    d = out['pgd_linf_4'].astype(np.float32) / 255 - Xt[sel].astype(np.float32) / 255
    ok = out['pgd_linf_4_pred'] != Yt[sel]
    sigma = float(np.sqrt((d ** 2).reshape(len(d), -1).sum(1))[ok].mean() / 224.0)
    rs = np.random.RandomState(SEED + 3)
    out['benign_gaussian_noise'] = np.clip(np.round(Xt.astype(np.float64) + rs.randn(*Xt.shape) * sigma * 255), 0, 255).astype(np.uint8)
    jp = []
    for a in Xt:
        buf = io.BytesIO()
        Image.fromarray(a, 'L').save(buf, format='JPEG', quality=50)
        buf.seek(0)
        jp.append(np.asarray(Image.open(buf).convert('L')))
    out['benign_jpeg50'] = np.stack(jp)
    for k in ('benign_gaussian_noise', 'benign_jpeg50'):
        out[k + '_pred'] = run_onnx(ONNX, normalised(out[k]))['y'].argmax(1)
        summary[k] = dict(n=int(len(Xt)), pred_changed_onnx=int((out[k + '_pred'] != clean_on).sum()))
    summary['gaussian_sigma'] = sigma
    np.savez_compressed(ATTACKS + '.partial.npz', **out)
    os.replace(ATTACKS + '.partial.npz', ATTACKS)
    json.dump(summary, open(os.path.join(OUT, 'attacks.json'), 'w'), indent=1)
    log('attacks written; gaussian sigma %.5f' % sigma)


# ----------------------------------------------------------------------------------------------------- dicom
def dicom():
    from dicom import COLUMNS, PER_STUDY, uid, write_dicom
    t0 = time.time()
    idx, imgs = image_cache()
    sp = read_splits()
    test = [r for r in sp if r['split'] == 'test']
    z = dict(np.load(ATTACKS))
    clean_pred = {}
    for split in ('model_train', 'detector_fit', 'calibration', 'test'):
        rows = [r for r in sp if r['split'] == split]
        pr = run_onnx(ONNX, normalised(imgs[[idx[r['path']] for r in rows]]))['y'].argmax(1)
        clean_pred.update({r['path']: int(p) for r, p in zip(rows, pr)})
    groups = {}   # gname -> [(row, pixels)]
    for r in sp:
        p = r['path']
        groups.setdefault('clean_' + r['split'], []).append((dict(source=p, split=r['split'], kind='clean', attack='', norm='', eps='', success='',
                                                                 label=r['label'], pred_before=clean_pred[p], pred_after=clean_pred[p]), imgs[idx[p]]))
    for atk in ('fgsm', 'pgd_linf'):
        for e in EPS:
            name = '%s_%d' % (atk, e)
            for k, ti in enumerate(z['sel']):
                p, y, pa = test[ti]['path'], test[ti]['label'], int(z[name + '_pred'][k])
                groups.setdefault('adversarial_sealed_' + name, []).append((dict(
                    source=p, split='test', kind='adversarial', attack=atk, norm='linf', eps=str(e), success=int(pa != y and clean_pred[p] == y),
                    label=y, pred_before=clean_pred[p], pred_after=pa), z[name][k]))
    for shift in ('gaussian_noise', 'jpeg50'):
        for ti, r in enumerate(test):
            p = r['path']
            groups.setdefault('benign_sealed_' + shift, []).append((dict(
                source=p, split='test', kind='benign', attack=shift, norm='', eps='', success='', label=r['label'],
                pred_before=clean_pred[p], pred_after=int(z['benign_%s_pred' % shift][ti])), z['benign_' + shift][ti]))
    root = os.path.join(OUT, 'dicom')
    if os.path.exists(root):
        shutil.rmtree(root)
    rows_out, study_no = [], 0
    for gname in sorted(groups):
        g = sorted(groups[gname], key=lambda t: t[0]['source'])
        kind = gname.split('_')[0]
        for s in range(0, len(g), PER_STUDY):
            study_no += 1
            st_uid, se_uid = uid('study', gname, s), uid('series', gname, s)
            sdir = os.path.join(root, kind, gname, 'study%04d' % (s // PER_STUDY + 1))
            os.makedirs(sdir, exist_ok=True)
            for j, (row, pix) in enumerate(g[s:s + PER_STUDY]):
                dd = pix.astype(np.float32) / 255 - imgs[idx[row['source']]].astype(np.float32) / 255
                sop = uid('sop', gname, row['source'])
                fp = os.path.join(sdir, 'IM%02d.dcm' % (j + 1))
                write_dicom(fp, pix, st_uid, se_uid, sop, study_no, study_no, j + 1)
                rr = dict(row, file=os.path.relpath(fp, OUT), study_uid=st_uid, sop_uid=sop,
                          linf='%.6f' % float(np.abs(dd).max()), l2='%.6f' % float(np.sqrt((dd ** 2).sum())))
                rows_out.append(rr)
        log('%-40s %5d instances' % (gname, len(g)))
    with open(MANIFEST + '.partial', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator='\n')
        w.writeheader()
        for r in rows_out:
            w.writerow({k: r[k] for k in COLUMNS})
    os.replace(MANIFEST + '.partial', MANIFEST)
    log('wrote %d DICOM files in %d studies + %s; %.0fs' % (len(rows_out), study_no, MANIFEST, time.time() - t0))


# -------------------------------------------------------------------------------------------------- fixtures
def fixtures():
    rows = list(csv.DictReader(open(MANIFEST, newline='')))
    ok = sorted([r for r in rows if r['kind'] == 'adversarial' and r['attack'] == 'pgd_linf' and r['eps'] == '8' and r['success'] == '1'],
                key=lambda r: r['file'])
    rs = np.random.RandomState(SEED + 16)
    pick = []
    for lab in ('0', '1'):   # balanced over the true label where possible
        c = [r for r in ok if r['label'] == lab]
        pick += [c[i] for i in sorted(rs.choice(len(c), size=min(N_FIXTURES // 2, len(c)), replace=False))]
    dst_root = os.path.join(FIXTURES, 'adversarial')
    if os.path.exists(dst_root):
        shutil.rmtree(dst_root)
    out, total = [], os.path.getsize(ONNX)
    for r in pick:
        rel = r['file'][len('dicom/'):]
        dst = os.path.join(FIXTURES, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(OUT, r['file']), dst)
        total += os.path.getsize(dst)
        out.append(dict(r, file=rel))
    with open(os.path.join(FIXTURES, 'manifest.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator='\n')
        w.writeheader()
        w.writerows(out)
    assert total <= MAX_FIXTURE_BYTES, total
    log('fixtures: %d adversarial DICOMs + the ONNX, %.2f MB in %s' % (len(out), total / 1e6, FIXTURES))


STEPS = {'train': (train, CKPT), 'export': (export, os.path.join(OUT, 'export.json')), 'attacks': (attacks, ATTACKS),
         'dicom': (dicom, MANIFEST), 'fixtures': (fixtures, os.path.join(OUT, '.done-fixtures'))}

if __name__ == '__main__':
    for step in (sys.argv[1:] or list(STEPS)):
        fn, marker = STEPS[step]
        if os.path.exists(marker) and os.environ.get('FORCE') != '1':
            log('sealed %s: %s exists, skipping (FORCE=1 to redo)' % (step, marker))
            continue
        t = time.time()
        log('=== sealed %s ===' % step)
        fn()
        if step == 'fixtures':
            open(marker, 'w').close()
        log('sealed %s done in %.0fs' % (step, time.time() - t))
