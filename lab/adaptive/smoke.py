"""Adaptive-attack smoke run for CI (issue 17): checks the machinery, not the numbers.

    /usr/bin/python3 lab/adaptive/smoke.py --out DIR [--steps 4] [--restarts 2] [--eps 8]

Needs only the repository (no data/): the reference model is rebuilt in torch from the committed ONNX file
(models/warden-cxr-ref.onnx, batch norms folded into the convolutions by the export), the twins are read from the
shipped bundle, and two clean lab fixtures are attacked for a few steps with the orthogonal and the weighted attack of
full.py. Writes DIR/<kind>/<fixture>.dcm and DIR/smoke.json: per example the source fixture, eps, and the twins'
verdict on the 8-bit image (flipped, merged adversarial p, uad p), plus the twins' parity on the fixtures against the
committed twin scores (test/fixtures/detectors/twin-scores.json). test/conformance/adaptive-smoke.test.ts runs this
and checks that Warden, reading the DICOM files, reaches the twins' verdicts.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.dirname(HERE)
sys.path.insert(0, LAB)
sys.path.insert(0, HERE)
from common import REPO, RefNet, SEED  # noqa: E402
from full import Attacker  # noqa: E402
from twins import MEMBERS, Twins  # noqa: E402
import dicom as D  # noqa: E402

ONNX = os.path.join(REPO, 'models', 'warden-cxr-ref.onnx')
FIXTURES = os.path.join(REPO, 'test', 'fixtures', 'lab')


def model_from_onnx(path=ONNX):
    """RefNet with its batch norms folded away, weights read from the exported ONNX graph (its Conv nodes come in
    the module order: stem, then per block c1, c2, shortcut; the last Conv is the fixed high-pass bank)."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(path).graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    m = RefNet()
    m.stem[1] = nn.Identity()
    for stage in m.stages:
        for b in stage:
            b.b1, b.b2 = nn.Identity(), nn.Identity()
            if b.sc is not None:
                b.sc[1] = nn.Identity()
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    nodes = [n for n in g.node if n.op_type == 'Conv' and n.input[1] != 'm.hp']
    if len(nodes) != len(convs):
        raise SystemExit('ONNX graph has %d convolutions, RefNet %d' % (len(nodes), len(convs)))
    with torch.no_grad():
        for c, n in zip(convs, nodes):
            w = init[n.input[1]]
            if tuple(w.shape) != tuple(c.weight.shape):
                raise SystemExit('ONNX conv %s has shape %s, RefNet expects %s' % (n.input[1], tuple(w.shape), tuple(c.weight.shape)))
            c.weight.copy_(w)
            c.bias = nn.Parameter(init[n.input[2]].clone())
        m.fc.weight.copy_(init['m.fc.weight'])
        m.fc.bias.copy_(init['m.fc.bias'])
        m.mean.copy_(init['m.mean'].view_as(m.mean))
        m.std.copy_(init['m.std'].view_as(m.std))
        m.hp.copy_(init['m.hp'].view_as(m.hp))
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def read_u8(path):
    import pydicom
    return pydicom.dcmread(path).pixel_array.astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--steps', type=int, default=4)
    ap.add_argument('--restarts', type=int, default=2)
    ap.add_argument('--eps', type=float, default=8)
    a = ap.parse_args()
    torch.manual_seed(SEED)
    model = model_from_onnx()
    twins = Twins()
    # parity on the committed fixtures: the rebuilt model + twins must equal the committed twin scores
    golden = json.load(open(os.path.join(REPO, 'test', 'fixtures', 'detectors', 'twin-scores.json')))
    files = sorted(golden['scores'])
    x = torch.from_numpy(np.stack([read_u8(os.path.join(FIXTURES, f)) for f in files]).astype(np.float32) / 255).unsqueeze(1)
    with torch.no_grad():
        s, _ = twins.scores(model, x)
    parity = {k: float(max(abs(float(s[k][i]) - golden['scores'][f][k]) for i, f in enumerate(files)) / golden['calibrationSd'][k]) for k in MEMBERS}
    # the attack, a few steps on two clean fixtures; the label is the model's own answer (the attack must flip it)
    sources = [f for f in files if f.startswith('clean/clean_test/')][:2]
    x0u8 = np.stack([read_u8(os.path.join(FIXTURES, f)) for f in sources])
    x0 = torch.from_numpy(x0u8.astype(np.float32) / 255).unsqueeze(1)
    with torch.no_grad():
        y = model(x0).argmax(1)
    empty = torch.zeros(0, 2)
    att = Attacker(model, twins, 'cpu', {0: empty, 1: empty}, check_every=1)
    examples = []
    for kind in ('orthogonal', 'weighted'):
        u8, fl, ap_, up = att.run(kind, x0, y, a.eps / 255, a.steps, a.restarts, SEED)
        os.makedirs(os.path.join(a.out, kind), exist_ok=True)
        for i, src in enumerate(sources):
            img = u8[i, 0].numpy().astype(np.uint8)
            name = '%s/%s.dcm' % (kind, os.path.dirname(src).split('/')[-1])
            uid = lambda *p: D.uid('adaptive-smoke', kind, i, *p)  # noqa: E731
            D.write_dicom(os.path.join(a.out, name), img, uid('study'), uid('series'), uid('sop'), 1, 1, i + 1)
            examples.append(dict(file=name, source=src, kind=kind, eps=a.eps, label=int(y[i]), flipped=bool(fl[i]),
                                 adv_p=float(ap_[i]), uad_p=float(up[i]),
                                 linf=int(np.abs(img.astype(np.int16) - x0u8[i].astype(np.int16)).max())))
    json.dump({'parity_rel_to_sd': parity, 'steps': a.steps, 'restarts': a.restarts, 'examples': examples},
              open(os.path.join(a.out, 'smoke.json'), 'w'), indent=1)
    print(json.dumps({'parity_rel_to_sd': parity, 'examples': len(examples)}))


if __name__ == '__main__':
    main()
