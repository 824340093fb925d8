"""ResNet-50-size feature extractor with random weights (hand-written bottleneck ResNet-50; torchvision is not
installed), exported to data/resnet50.onnx with the Warden manifest. For load/latency testing only."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import DATA, SEED, log, run_onnx, seed_all
from export import export_onnx, manifest

OUT = os.path.join(DATA, 'resnet50.onnx')


class Bottleneck(nn.Module):
    def __init__(self, cin, mid, stride):
        super().__init__()
        cout = mid * 4
        self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.c2, self.b2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)))
        y = self.b3(self.c3(y))
        return F.relu(y + (x if self.sc is None else self.sc(x)))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('mean', torch.tensor(0.4823).view(1, 1, 1, 1))
        self.register_buffer('std', torch.tensor(0.2353).view(1, 1, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        cfg = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
        cin, stages = 64, []
        for mid, n, s in cfg:
            layers = [Bottleneck(cin, mid, s)] + [Bottleneck(mid * 4, mid, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = mid * 4
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(2048, 2)

    def forward(self, x, feats=False):
        h = self.stem((x - self.mean) / self.std)
        out = {}
        for i, s in enumerate(self.stages):
            h = s(h)
            out['stage%d_mean' % (i + 1)] = h.mean(dim=(2, 3))
        pen = out['stage4_mean']
        out['penultimate'] = pen
        out['logits'] = self.fc(pen)
        return out if feats else out['logits']


def main():
    seed_all(SEED)
    m = ResNet50().eval()
    names = ['logits', 'penultimate', 'stage1_mean', 'stage2_mean', 'stage3_mean', 'stage4_mean']
    feats = ['stage1_mean', 'stage2_mean', 'stage3_mean', 'penultimate']  # stage4_mean == penultimate
    log('ResNet-50 (1-channel input, random weights): %.1f M params' % (sum(p.numel() for p in m.parameters()) / 1e6))
    man = manifest('warden-resnet50-random', '0.0.1', 1, feats)  # random weights: load/latency testing only
    export_onnx(m, names, OUT, 1, man)
    x = torch.rand(2, 1, 224, 224)
    with torch.no_grad():
        ref = m(x, feats=True)
    o = run_onnx(OUT, x.numpy(), batch=2)
    import numpy as np
    log('parity max |diff| logits %.2e penultimate %.2e' % (np.abs(o['logits'] - ref['logits'].numpy()).max(),
                                                              np.abs(o['penultimate'] - ref['penultimate'].numpy()).max()))


if __name__ == '__main__':
    main()
