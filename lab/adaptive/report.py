"""Score a full adaptive run (full.py) through Warden's real decode path and write docs/adaptive.md from it.

    /usr/bin/python3 lab/adaptive/report.py [data/adaptive-full] [--doc docs/adaptive.md]

1. Rebuilds every returned adaptive example (the test image + its int8 perturbation), writes it as DICOM
   (8-bit, lab/dicom.py) and runs `node bin/warden.js scan --json` on them: Warden's prediction, policy verdict and
   reasons are the judge; the twins' counts from the run are printed beside them (they must agree).
2. Tables per attack x eps: attack success at the shipped policy's 5 % (flag) and 0.5 % (block) operating points,
   the fraction of the examples that fool the model still caught, the domain signal, the mean L2; the L2 an attacker
   needs for 90 % success against the model alone (non-adaptive PGD) and against model + Warden (the best adaptive
   attack at each eps); the adversarially fine-tuned model's clean and robust accuracy (clean on the whole test split,
   here, on CPU); an example image.
3. Writes report.json beside the run (for `warden eval --adaptive`) and the page.
"""
import argparse
import json
import lzma
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import DATA, REPO, RefNet, image_cache, load_model, log, predict_logits, read_splits  # noqa: E402
import dicom as D  # noqa: E402

PCT = lambda a, b: 100.0 * a / b if b else 0.0  # noqa: E731


def eps_name(e):
    return ('%g' % e).replace('.', 'p')


def load_images(root, x0):
    """-> {(kind, eps): uint8 [n,224,224]} for every example set the run returned."""
    out = {}
    for f in sorted(os.listdir(root)):
        if not (f.startswith('adv_') and f.endswith('.npz')):
            continue
        z = np.load(os.path.join(root, f))
        for key in z.files:
            kind, e = key.rsplit('_eps', 1)
            d = np.frombuffer(lzma.decompress(z[key].tobytes()), dtype=np.int8).reshape(x0.shape)
            out[(kind, float(e.replace('p', '.')))] = np.clip(x0.astype(np.int16) + d, 0, 255).astype(np.uint8)
    return out


def warden_scan(root, images, labels):
    """Writes the examples as DICOM and scores them with Warden -> {(kind, eps): list of per-image dicts}."""
    dcm = os.path.join(root, 'dicom')
    for (kind, e), u8 in images.items():
        d = os.path.join(dcm, '%s_eps%s' % (kind, eps_name(e)))
        os.makedirs(d, exist_ok=True)
        for i in range(len(u8)):
            uid = lambda *p: D.uid('adaptive-full', kind, e, i, *p)  # noqa: E731
            D.write_dicom(os.path.join(d, 'adv%03d.dcm' % i), u8[i], uid('study'), uid('series'), uid('sop'), 1, 1, i + 1)
    log('warden scan of %d example sets' % len(images))
    res = subprocess.run(['node', os.path.join(REPO, 'bin', 'warden.js'), 'scan', dcm, '--json', '--workers', '2'],
                         capture_output=True, text=True, cwd=REPO)
    if res.returncode not in (0, 1):
        raise SystemExit('warden scan failed: %s' % res.stderr[-2000:])
    out = defaultdict(dict)
    for line in res.stdout.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        parts = r['file'].replace('\\', '/').split('/')
        kind, e = parts[-2].rsplit('_eps', 1)
        i = int(parts[-1][3:6])
        reasons = r.get('reasons') or []
        out[(kind, float(e.replace('p', '.')))][i] = dict(
            scanned=r.get('status') == 'scanned',
            flipped=r.get('status') == 'scanned' and r['prediction']['index'] != int(labels[i]),
            adv_flag=any(x.get('signal') == 'adversarial' for x in reasons), block=r.get('verdict') == 'block',
            domain_flag=any(x.get('signal') == 'domain' for x in reasons))
    return out


def row_stats(r):
    f = np.array(r['flipped'], bool)
    p = np.array(r['adv_p'])
    u = np.array(r['uad_p'])
    l2 = np.array(r['l2'])
    n = len(f)
    return dict(kind=r['kind'], eps=float(r['eps']), steps=r['steps'], restarts=r['restarts'], seconds=r['seconds'], n=n,
                flipped=int(f.sum()), caught5=int((f & (p <= 0.05)).sum()), caught05=int((f & (p <= 0.005)).sum()),
                success5=int((f & (p > 0.05)).sum()), success05=int((f & (p > 0.005)).sum()),
                success_silent=int((f & (p > 0.05) & (u > 0.01)).sum()), domain=int((f & (u <= 0.01)).sum()),
                mean_l2=float(l2[f].mean()) if f.any() else None, l2=l2, ok5=f & (p > 0.05), ok05=f & (p > 0.005))


def l2_for_90(points):
    """points: [(eps, success mask, l2)] sorted by eps -> (eps, rate, mean L2 of the successes) at the first eps with
    >= 90 % success, or None."""
    for e, ok, l2 in points:
        if ok.mean() >= 0.9:
            return e, float(ok.mean()), float(l2[ok].mean())
    return None


def robust_clean_accuracy(robust_path):
    idx, imgs = image_cache()
    test = [r for r in read_splits() if r['split'] == 'test']
    x = imgs[[idx[r['path']] for r in test]]
    y = np.array([r['label'] for r in test])
    ref, _ = load_model()
    rob = RefNet()
    rob.load_state_dict(torch.load(robust_path, map_location='cpu')['state_dict'])
    rob.eval()
    return {name: float((predict_logits(m, x).argmax(1).numpy() == y).mean()) for name, m in (('reference', ref), ('finetuned', rob))}, len(y)


def example_png(x0, images, rows, e, kind, path):
    from PIL import Image
    r = next(r for r in rows if r['kind'] == kind and r['eps'] == e)
    cand = np.where(r['ok5'])[0]
    if (kind, e) not in images or not len(cand):
        return None
    i = int(cand[0])
    adv = images[(kind, e)][i]
    d = adv.astype(np.int16) - x0[i].astype(np.int16)
    amp = np.clip(127 + d * (127 // max(1, int(e))), 0, 255).astype(np.uint8)
    Image.fromarray(np.concatenate([x0[i], adv, amp], 1)).save(path, optimize=True)
    return i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('root', nargs='?', default=os.path.join(DATA, 'adaptive-full'))
    ap.add_argument('--doc', default=os.path.join(REPO, 'docs', 'adaptive.md'))
    ap.add_argument('--randomized', default=os.path.join(DATA, 'adaptive-randomized', 'summary.json'), help='randomized.py output, if run')
    a = ap.parse_args()
    s = json.load(open(os.path.join(a.root, 'summary.json')))
    idx, imgs = image_cache()
    test = [r for r in read_splits() if r['split'] == 'test']
    sel = np.load(os.path.join(DATA, 'attacks', 'subset.npz'))['sel'][:s['n']]
    x0 = imgs[[idx[test[i]['path']] for i in sel]]
    labels = np.array([test[i]['label'] for i in sel])
    images = load_images(a.root, x0)
    verdicts = warden_scan(a.root, images, labels)
    rows = [row_stats(r) for r in s['rows']]
    for r in rows:
        v = verdicts.get((r['kind'], r['eps']))
        if v:
            vv = [v[i] for i in sorted(v)]
            r['warden'] = dict(n=len(vv), flipped=sum(x['flipped'] for x in vv), caught5=sum(x['flipped'] and x['adv_flag'] for x in vv),
                               caught05=sum(x['flipped'] and x['block'] for x in vv), domain=sum(x['flipped'] and x['domain_flag'] for x in vv))
            log('%-10s eps %-4g warden flipped %d caught %d / %d blocked | twins %d caught %d / %d' % (
                r['kind'], r['eps'], r['warden']['flipped'], r['warden']['caught5'], r['warden']['caught05'], r['flipped'], r['caught5'], r['caught05']))
    base = []
    for b in s['baseline']:
        f = np.array(b['flipped'], bool)
        base.append(dict(eps=float(b['eps']), steps=b['steps'], ok=f, l2=np.array(b['l2']), caught5=int((f & (np.array(b['adv_p']) <= 0.05)).sum())))
    # L2 for 90 % success: model alone (non-adaptive PGD), model + Warden (the best adaptive row at each eps)
    alone = l2_for_90([(b['eps'], b['ok'], b['l2']) for b in base])
    best = {}
    for op in ('ok5', 'ok05'):
        pts = []
        for e in sorted({r['eps'] for r in rows}):
            cand = max((r for r in rows if r['eps'] == e), key=lambda r: r[op].sum())
            pts.append((e, cand[op], cand['l2'], cand['kind'], cand['steps']))
        hit = next(((e, float(ok.mean()), float(l2[ok].mean()), k, st) for e, ok, l2, k, st in pts if ok.mean() >= 0.9), None)
        best[op] = dict(points=[(e, float(ok.mean()), k, st) for e, ok, l2, k, st in pts], hit=hit)
    rob = s.get('robust')
    clean_full, n_test = (robust_clean_accuracy(os.path.join(a.root, 'robust.pt')) if rob and os.path.exists(os.path.join(a.root, 'robust.pt')) else (None, 0))
    ex_path = os.path.join(os.path.dirname(a.doc), 'adaptive-example.png')
    strongest = s.get('strongest', 'orthogonal')
    ex_i = example_png(x0, images, rows, 2.0, strongest, ex_path)
    device = s['device']
    logf = os.path.join(a.root, 'log.txt')
    if os.path.exists(logf):  # '[full 0.2s] device cuda NVIDIA H200 torch 2.11.0+cu130'
        first = open(logf).readline().split('device', 1)[-1].strip()
        device = first.split(' torch ')[0].replace('cuda ', '').strip() + ', torch ' + first.split(' torch ')[-1] if ' torch ' in first else device
    report = dict(source=os.path.relpath(a.root, REPO), device=device, notes=s.get('notes', []), n=s['n'], requested=s['requested'], strongest=strongest,
                  rows=[{k: v for k, v in r.items() if k not in ('l2', 'ok5', 'ok05')} for r in rows],
                  baseline=[dict(eps=b['eps'], steps=b['steps'], success=float(b['ok'].mean()), caught5=b['caught5'],
                                 mean_l2=float(b['l2'][b['ok']].mean()) if b['ok'].any() else None) for b in base],
                  l2_for_90=dict(model_alone=alone, warden_5=best['ok5']['hit'], warden_05=best['ok05']['hit']),
                  robust=dict(rob or {}, clean_full_test=clean_full, n_test=n_test),
                  randomized=json.load(open(a.randomized)) if os.path.exists(a.randomized) else None)
    json.dump(report, open(os.path.join(a.root, 'report.json'), 'w'), indent=1)
    open(a.doc, 'w').write(render(report, rows, base, best, ex_i))
    log('wrote %s and %s' % (a.doc, os.path.join(a.root, 'report.json')))


def render(rep, rows, base, best, ex_i):
    L = []
    w = L.append
    n = rep['n']
    r2 = [r for r in rows if r['eps'] == 2.0]
    head = max(r2, key=lambda r: r['success5']) if r2 else None
    w('# Adaptive attacks — an attacker who knows Warden (issue 17)')
    w('')
    w('*Generated by `lab/adaptive/report.py` from the run in `%s` (`lab/adaptive/full.py`, %s); do not edit by hand.*' % (rep['source'], rep['device']))
    w('')
    w('Every published detector of adversarial examples that was re-attacked by someone who knew it fell (Carlini & Wagner 2017;')
    w('Athalye et al. 2018; Tramèr et al. 2020; Bryniarski et al. 2022). This page measures what the shipped adversarial signal')
    w('(squeeze + coherence + margin, Bonferroni; docs/evaluation.md) is worth against such an attacker.')
    if head:
        w('')
        w('**Short answer: little.** At ε = 2/255 the strongest attack (%s PGD, %d steps × %d restarts) fools the model on %d of %d images and'
          % (head['kind'], head['steps'], head['restarts'], head['flipped'], n))
        w('%d of those (%.1f %%) are still caught at the 5 %% operating point, %d (%.1f %%) blocked at 0.5 %%. The non-adaptive PGD of the same run'
          % (head['caught5'], PCT(head['caught5'], head['flipped']), head['caught05'], PCT(head['caught05'], head['flipped'])))
        b2 = next((b for b in base if b['eps'] == 2.0), None)
        if b2:
            w('is caught %d of %d times. The non-adaptive numbers of docs/evaluation.md do not hold against an attacker who knows the detectors.'
              % (b2['caught5'], int(b2['ok'].sum())))
    w('')
    w('## What was built')
    w('')
    w('- **Differentiable twins** (`lab/adaptive/twins.py`), read from `models/warden-cxr-ref.bundle`: squeeze (the 2×2 median as')
    w('  max/min of pairs: piecewise linear, exact gradients, no BPDA needed), coherence (the ridge probes), margin, and the domain')
    w('  signal\'s UAD (per-layer tied Gaussians, tail p-values) and NRD. Parity with Warden on the 90 committed lab fixtures:')
    w('  ≤ 2e-5 of each adversarial detector\'s calibration spread; NRD ≤ 7.5e-5 relative; UAD equal on 88 of 90 fixtures, and on two')
    w('  a per-layer score sits on a calibration rank, moving its statistic by ≤ 7e-3 at p ≈ 0.4, far from its flag level')
    w('  (`lab/adaptive/twin_parity.py`). UAD is reported beside the attacks, not attacked, except by hfc\'s layer pull.')
    w('  CI checks Warden against the committed twin scores (`test/conformance/adaptive-twins.test.ts`) and runs the attack machinery')
    w('  on two fixtures (`test/conformance/adaptive-smoke.test.ts`: a few steps; Warden must agree with the twins\' verdicts).')
    w('- **Attacks** (`lab/adaptive/full.py`; L∞, 8-bit rounded; an example counts only when the rounded image both flips the model')
    w('  and passes the policy at the stated operating point): *weighted* (classification loss minus λ·Σ detector penalties),')
    w('  *selective* and *orthogonal* (SPGD / OPGD of Bryniarski et al. 2022), *hfc* (weighted, plus pulling every tapped layer')
    w('  toward the target class\'s clean Gaussian, after Yao et al. 2021), *logit* (match the logits of a typical clean image of the')
    w('  target class, Tramèr et al. 2020). Random start, step ε/8 decaying to ε/80; restarts run as one batch; the example kept per')
    w('  image is the rounded iterate (checked every 5 steps) that fools the model with the highest merged adversarial p-value.')
    w('  The shipped detectors are deterministic, so EOT has nothing to average.')
    w('- **Scoring through Warden**: every example whose perturbation came back from the GPU is rebuilt, written as DICOM and scored')
    w('  by `warden scan --json` (real decode, preprocess, detectors, policy). The tables give the twins\' counts on all rows and')
    w('  Warden\'s own counts where the images came back (the loan returns 64 MB; the weakest rows\' images were left out).')
    w('')
    w('## Budget')
    w('')
    w('%d correctly classified test images (the lab\'s attacked subset), on %s, %.0f s in all. The issue asks for 1,000 steps ×' % (n, rep['device'], sum(r['seconds'] for r in rows)))
    w('5 restarts for every attack × ε; the loan allows 15 minutes of device time per session, so the **strongest attack')
    w('(orthogonal) ran at the full budget at ε = 2/255** and every other row at the steps given in its line (5 restarts each). Rows below')
    w('1,000 steps understate the attacker.')
    for note in rep.get('notes', []):
        w('')
        w(note[0].upper() + note[1:])
    w('')
    w('## Attack success against model + Warden')
    w('')
    w('Success = flips the model and passes the operating point (5 %: not flagged by the adversarial signal, p > 0.05; 0.5 %: not')
    w('blocked, p > 0.005). "Caught" = share of the model-fooling examples that the adversarial signal still flags / blocks.')
    w('"Silent" = also not flagged by the domain signal (UAD p > 0.01; the attack did not target it). Warden column: its own')
    w('flipped / caught at 5 % / blocked counts on the DICOM files, where they came back.')
    w('')
    w('| attack | ε | steps × restarts | fools the model | success at 5 % / 0.5 % | caught at 5 % | caught at 0.5 % | silent success | Warden: fooled / caught / blocked | mean L2 |')
    w('|---|---|---|---|---|---|---|---|---|---|')
    for r in sorted(rows, key=lambda r: (r['eps'], r['kind'])):
        wd = r.get('warden')
        w('| %s | %g/255 | %d × %d | %d / %d | %.1f %% / %.1f %% | %.1f %% | %.1f %% | %.1f %% | %s | %s |' % (
            r['kind'], r['eps'], r['steps'], r['restarts'], r['flipped'], r['n'], PCT(r['success5'], r['n']), PCT(r['success05'], r['n']),
            PCT(r['caught5'], r['flipped']), PCT(r['caught05'], r['flipped']), PCT(r['success_silent'], r['n']),
            '%d / %d / %d' % (wd['flipped'], wd['caught5'], wd['caught05']) if wd else '(twins only)',
            '%.2f' % r['mean_l2'] if r['mean_l2'] is not None else '–'))
    agree = [r for r in rows if r.get('warden')]
    same = [r for r in agree if (r['warden']['flipped'], r['warden']['caught5'], r['warden']['caught05']) == (r['flipped'], r['caught5'], r['caught05'])]
    w('')
    w('Warden\'s counts equal the twins\' on %d of the %d rows it scored.' % (len(same), len(agree)))
    w('')
    w('## Non-adaptive baseline of the same run, and the L2 needed for 90 % success')
    w('')
    w('Non-adaptive PGD-L∞ (cross-entropy on the model alone, %d steps, 1 restart) on the same images:' % (base[0]['steps'] if base else 0))
    w('')
    w('| ε | fools the model | caught at 5 % by Warden\'s adversarial signal (twins) | mean L2 of the examples that fool it |')
    w('|---|---|---|---|')
    for b in base:
        nf = int(b['ok'].sum())
        w('| %g/255 | %d / %d (%.1f %%) | %d of %d (%.1f %%) | %s |' % (b['eps'], nf, n, PCT(nf, n), b['caught5'], nf, PCT(b['caught5'], nf),
                                                           '%.2f' % b['l2'][b['ok']].mean() if nf else '–'))
    w('')
    w('L2 for 90 %% success, on the ε grid %s/255 (the smallest ε whose success reaches 90 %%, and the mean L2 of its successful' %
      ', '.join('%g' % b['eps'] for b in base))
    w('examples; against model + Warden the best attack run at each ε):')
    w('')
    al = rep['l2_for_90']['model_alone']
    w5, w05 = rep['l2_for_90']['warden_5'], rep['l2_for_90']['warden_05']
    w('| target | ε reaching 90 % | success there | mean L2 | ratio to the model alone |')
    w('|---|---|---|---|---|')
    w('| model alone (non-adaptive PGD) | %s | %s | %s | 1 |' % (('%g/255' % al[0], '%.1f %%' % (100 * al[1]), '%.2f' % al[2]) if al else ('not reached', '–', '–')))
    for name, hit in (('model + Warden, 5 % (flag)', w5), ('model + Warden, 0.5 % (block)', w05)):
        if hit and al:
            w('| %s | %g/255 (%s, %d steps) | %.1f %% | %.2f | %.2f× |' % (name, hit[0], hit[3], hit[4], 100 * hit[1], hit[2], hit[2] / al[2]))
        else:
            w('| %s | not reached on the grid | – | – | – |' % name)
    w('')
    w('Success of the best adaptive row per ε (5 %% point): %s.' % '; '.join('%g/255 %.1f %% (%s, %d steps)' % (e, 100 * v, k, st) for e, v, k, st in best['ok5']['points']))
    w('The grid is coarse and the rows off ε = 2/255 ran below the full budget, so the ratio is an upper bound on the attacker\'s')
    w('true cost: a finer grid or more steps can only lower the L2 at which 90 % is reached.')
    w('')
    rb = rep['robust']
    if rb.get('reference'):
        w('## Hardening, measured')
        w('')
        w('**Adversarially fine-tuned reference model** (`full.py`, Madry-style: each batch half clean, half PGD-5 at ε ∈ {1, 2}/255;')
        w('%d model_train images — the loan\'s 64 MB tree limit — %d epochs, AdamW 3e-4). Robust accuracy = accuracy under' % (rb['train'], rb['epochs']))
        w('PGD-L∞ (%d steps) on the %d-image attacked subset (all correctly classified by the reference model); clean accuracy also on the' % (rb['pgd_steps'], n))
        w('whole test split (%d images, CPU):' % rb['n_test'])
        w('')
        w('| model | clean, whole test split | clean, subset | PGD 1/255 | PGD 2/255 | PGD 4/255 |')
        w('|---|---|---|---|---|---|')
        for k in ('reference', 'finetuned'):
            v = rb[k]
            cf = rb['clean_full_test'][k] if rb.get('clean_full_test') else None
            w('| %s | %s | %.1f %% | %.1f %% | %.1f %% | %.1f %% |' % (k, '%.1f %%' % (100 * cf) if cf is not None else '–', 100 * v['clean'],
                                                              100 * v['pgd1'], 100 * v['pgd2'], 100 * v['pgd4']))
        w('')
        w('Fine-tuning buys robust accuracy at a large cost in clean accuracy (%d of the 3,660 training images, %.0f s on the GPU with its evaluation);' % (rb['train'], rb['seconds']))
        w('it bounds what detection can honestly claim: against an adaptive attacker at 2/255 the detector catches fewer examples than')
        w('the robust model classifies correctly. It is **not shipped**: the clean accuracy loss fails the product\'s first duty (never')
        w('mis-serve clean studies), and a full adversarial training run on the whole split is lab work for a larger GPU budget.')
        w('')
    rz = rep.get('randomized')
    if rz:
        r0 = rz['rows'][0]
        w('**Randomised squeezer per request, attacked with EOT** (`lab/adaptive/randomized.py`, CPU; %d images, ε = %g/255, orthogonal'
          % (r0['n'], r0['eps']))
        w('PGD, %d steps, 1 restart). Candidate policy: each request draws its squeeze view uniformly from %s (each view'
          % (r0['steps'], ', '.join(rz['views'])))
        w('calibrated on the shipped calibration split), merged with coherence and margin as shipped. *fixed* attacks the shipped')
        w('policy and ignores the draw; *eot* averages the squeeze penalty over every view (bits views through BPDA). Caught under the')
        w('random policy = expected over the draw:')
        w('')
        w('| attack | fools the model | caught, shipped policy 5 % / 0.5 % | caught, random view 5 % / 0.5 % | caught at 5 % per view |')
        w('|---|---|---|---|---|')
        for r in rz['rows']:
            f = max(r['flipped'], 1)
            w('| %s | %d / %d | %.1f %% / %.1f %% | %.1f %% / %.1f %% | %s |' % (
                r['attack'], r['flipped'], r['n'], PCT(r['caught_shipped_5'], f), PCT(r['caught_shipped_05'], f),
                PCT(r['caught_random_5'], f), PCT(r['caught_random_05'], f), ', '.join('%s %d' % kv for kv in r['caught_by_view_5'].items())))
        fx = next((r for r in rz['rows'] if r['attack'] == 'fixed'), None)
        eo = next((r for r in rz['rows'] if r['attack'] == 'eot'), None)
        if fx and eo:
            helps = PCT(eo['caught_random_5'], max(eo['flipped'], 1)) >= PCT(fx['caught_shipped_5'], max(fx['flipped'], 1)) + 10
            w('')
            w('Against an attacker who ignores the draw (fixed) the random view looks strong: %.1f %% caught at 5 %%, since an example'
              % PCT(fx['caught_random_5'], max(fx['flipped'], 1)))
            w('tuned to the median2 view is plain to the others. EOT takes that away, as Athalye et al. 2018 found for randomised defences.')
            w('Against the attacker who knows the randomisation (eot), the random view catches %.1f %% at 5 %%, against %.1f %% for the'
              % (PCT(eo['caught_random_5'], max(eo['flipped'], 1)), PCT(fx['caught_shipped_5'], max(fx['flipped'], 1))))
            w('shipped policy under the same budget without it: %s' % (
                'a measurable gain, but it needs its own clean and foreign-source evaluation before it can ship; not shipped in this change.'
                if helps else 'no measurable gain (under 10 points), so it is **not shipped**.'))
    else:
        w('**Not built: randomised squeezer/tap selection per request** (with EOT in the attack): not measured.')
    big = [r for r in rows if r['eps'] >= 3 and r['kind'] != 'hfc']
    hfc = [r for r in rows if r['eps'] >= 3 and r['kind'] == 'hfc']
    if big:
        w('')
        w('**Ensembles across signal families.** The domain signal (UAD), which no attack but hfc targets, flags %d of the %d'
          % (sum(r['domain'] for r in big), sum(r['flipped'] for r in big)))
        w('model-fooling examples of the other attacks at ε ≥ 3/255 — evading one family pushed the examples out of the other.')
        if hfc:
            w('But hfc, which pulls the tapped layers toward the clean target class, passes it too: %d of %d flagged out of domain.'
              % (sum(r['domain'] for r in hfc), sum(r['flipped'] for r in hfc)))
        w('And by design the domain signal flags, never blocks: foreign radiographs are unfamiliar too, and letting it block would')
        w('block clean studies from other sources (docs/evaluation.md, "Two questions, two signals"). So it is not shipped as a')
        w('blocking member; as a flag it already runs beside the adversarial signal.')
    w('')
    if ex_i is not None:
        w('## Example')
        w('')
        w('![clean | adaptive example | perturbation ×%d](adaptive-example.png)' % (127 // 2))
        w('')
        w('Test image %d of the subset: clean, the ε = 2/255 %s example that fools the model and passes the 5 %% point, and its' % (ex_i, rep['strongest']))
        w('perturbation amplified ×63 around mid-grey.')
        w('')
    w('## Goals (issue 17)')
    w('')
    c2 = PCT(head['caught5'], head['flipped']) if head else 0
    w('| goal | status |')
    w('|---|---|')
    w('| ≥ 20 %% of the strongest adaptive attack\'s examples caught at ε = 2/255, 5 %% FPR | **%s**: %.1f %% caught (%s, full budget) |' % (
        'met' if c2 >= 20 else 'not met', c2, head['kind'] if head else '–'))
    ratio = (w5[2] / al[2]) if (w5 and al) else None
    w('| adaptive attacker needs ≥ 2× the L2 of the non-adaptive one for 90 %% success | %s |' % (
        ('**%s** on the grid: %.2f× (%.2f vs %.2f), an upper bound (see above)' % ('met' if ratio >= 2 else 'not met', ratio, w5[2], al[2])) if ratio else '**not established**: 90 % not reached on the grid'))
    w('| stretch: ≥ 50 % caught at 2/255 | **not met** |')
    w('| CI: twin parity test; small adaptive smoke test | **done** (adaptive-twins, adaptive-smoke) |')
    w('| hardening measured: randomised squeezer with EOT, ensemble with the domain signal, adversarially trained model | **measured, none shipped**: EOT erases the random view\'s gain; the domain signal may not block; robust training costs %s of clean accuracy |' % (
        '%.1f points' % (100 * (rb['clean_full_test']['reference'] - rb['clean_full_test']['finetuned'])) if rb.get('clean_full_test') else 'much'))
    full = ['%s at %g/255' % (r['kind'], r['eps']) for r in rows if r['steps'] >= 1000 and r['restarts'] >= 5]
    short = [r['steps'] for r in rows if not (r['steps'] >= 1000 and r['restarts'] >= 5)]
    w('| full budget (1,000 steps × 5 restarts) for every attack × ε | **%s**: %s at the full budget; %s |' % (
        'met' if not short else 'not met', ', '.join(full) or 'no row',
        'the other %d rows at %d–%d steps (device time)' % (len(short), min(short), max(short)) if short else 'every row'))
    w('')
    w('## Reproduce')
    w('')
    w('```bash')
    w('lab/run.sh all                                               # the reference model, attacks, DICOM (data/)')
    w('/usr/bin/python3 lab/adaptive/pack.py                        # inputs for the GPU run (.gpu/, 35 MB)')
    w('python3 lab/adaptive/full.py --pack .gpu --out data/adaptive-full --deadline 480 --headline orthogonal \\')
    w('    --others-steps 200 --rest-kinds orthogonal,weighted,selective,hfc --ft-epochs 15   # on a GPU; CPU works, slowly')
    w('python3 lab/adaptive/full.py --pack .gpu --out data/adaptive-full-eps3 --deadline 170 --eps 3 --kinds orthogonal \\')
    w('    --grid 3 --ft-epochs 0                                   # the second call: orthogonal at 3/255, full budget')
    w('/usr/bin/python3 lab/adaptive/merge.py data/adaptive-full data/adaptive-full-eps3')
    w('/usr/bin/python3 lab/adaptive/randomized.py                  # the randomised-squeezer hardening (CPU, ~15 min)')
    w('/usr/bin/python3 lab/adaptive/report.py data/adaptive-full   # Warden scores the examples; writes this page')
    w('node bin/warden.js eval … --adaptive data/adaptive-full/report.json   # the same tables as a section of the eval report')
    w('```')
    return '\n'.join(L) + '\n'


if __name__ == '__main__':
    main()
