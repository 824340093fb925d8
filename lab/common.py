"""Shared helpers for the Warden lab: paths, data loading, the reference CNN."""
import csv
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LAB = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(LAB)
DATASET = os.path.join(REPO, '..', 'shared', 'datasets', 'kermany-chest-xray-224')
DATASET_REL = '../shared/datasets/kermany-chest-xray-224'
DATA = os.path.join(REPO, 'data')
MODELS = os.path.join(REPO, 'models')
ONNX_PATH = os.environ.get('LAB_ONNX', os.path.join(MODELS, 'warden-cxr-ref.onnx'))
CKPT_PATH = os.environ.get('LAB_CKPT', os.path.join(DATA, 'warden-cxr-ref.pt'))
SPLITS_CSV = os.path.join(LAB, 'splits.csv')
SEED = 20240601

torch.set_num_threads(2)


def seed_all(seed=SEED):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def log(*a):
    print('[lab %s]' % time.strftime('%H:%M:%S'), *a, flush=True)


def read_labels():
    with open(os.path.join(DATASET, 'labels.csv'), newline='') as f:
        return list(csv.DictReader(f))


def read_splits():
    """Returns list of dicts: path, split, label (int)."""
    labels = {r['path']: r for r in read_labels()}
    out = []
    with open(SPLITS_CSV, newline='') as f:
        for r in csv.DictReader(f):
            out.append({'path': r['path'], 'split': r['split'], 'label': int(labels[r['path']]['label'])})
    return out


def load_gray_u8(path):
    """Channel 0 of the RGB JPEG, uint8 224x224. The DICOM pixel value IS this value."""
    from PIL import Image
    with Image.open(os.path.join(DATASET, path)) as im:
        a = np.asarray(im.convert('RGB'))[:, :, 0]
    assert a.shape == (224, 224), (path, a.shape)
    return np.ascontiguousarray(a, dtype=np.uint8)


N_DEV = 200  # dev set: seeded subset of detector_fit, attacked and corrupted for every detector design choice


def dev_paths():
    """The dev images: a seeded subset of N_DEV detector_fit images (never test, never calibration), sorted."""
    fit = [r['path'] for r in read_splits() if r['split'] == 'detector_fit']
    pick = np.random.RandomState(SEED + 10).choice(len(fit), size=N_DEV, replace=False)
    return sorted(fit[i] for i in pick)


def image_cache():
    """All 5,840 images as uint8 [N,224,224] in labels.csv order, cached in data/images_u8.npz."""
    p = os.path.join(DATA, 'images_u8.npz')
    rows = read_labels()
    paths = [r['path'] for r in rows]
    if os.path.exists(p):
        z = np.load(p, allow_pickle=False)
        if list(z['paths']) == paths:
            return {pp: i for i, pp in enumerate(paths)}, z['images']
    log('decoding %d JPEGs into %s' % (len(paths), p))
    imgs = np.stack([load_gray_u8(pp) for pp in paths])
    os.makedirs(DATA, exist_ok=True)
    np.savez(p, paths=np.array(paths), images=imgs)
    return {pp: i for i, pp in enumerate(paths)}, imgs


def to_input(u8):
    """uint8 [N,224,224] -> float tensor [N,1,224,224] = value/255."""
    return torch.from_numpy(np.asarray(u8, dtype=np.float32) / 255.0).unsqueeze(1)


# ----------------------------------------------------------------------------- model
MEAN = 0.4823  # grey mean / 255 of the Kermany train split (~123/255); fixed constant inside the graph
STD = 0.2353   # ~60/255


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.sc is None else self.sc(x)))


# Fixed (non-trained) high-pass residual filters, applied to the input in 8-bit grey units.
RESIDUAL_FILTERS = {
    'laplacian': [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    'srm1_h': [[0, 0, 0], [0, -1, 1], [0, 0, 0]],
    'srm1_v': [[0, 0, 0], [0, -1, 0], [0, 1, 0]],
    'srm2_h': [[0, 0, 0], [0.5, -1, 0.5], [0, 0, 0]],
    'srm2_v': [[0, 0.5, 0], [0, -1, 0], [0, 0.5, 0]],
    'srm_kv3': [[-0.25, 0.5, -0.25], [0.5, -1, 0.5], [-0.25, 0.5, -0.25]],
}
RESIDUAL_STATS = ['mean_abs', 'std', 'mean_sq', 'mean_abs_trunc2']
RESIDUAL_TRUNC = 2.0


class RefNet(nn.Module):
    """ResNet-style CNN, 4 stages (16/32/64/128), normalisation inside the graph."""
    widths = (16, 32, 64, 128)

    def __init__(self, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.register_buffer('mean', torch.tensor(MEAN).view(1, 1, 1, 1))
        self.register_buffer('std', torch.tensor(STD).view(1, 1, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 5, 2, 2, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(2))  # 224 -> 56
        stages = []
        cin = 16
        for i, (w, n) in enumerate(zip(self.widths, blocks)):
            layers = [Block(cin, w, 1 if i == 0 else 2)] + [Block(w, w, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(128, 2)
        k = torch.tensor([RESIDUAL_FILTERS[n] for n in RESIDUAL_FILTERS], dtype=torch.float32).unsqueeze(1)
        self.register_buffer('hp', k)

    def forward(self, x, feats=False):
        h = self.stem((x - self.mean) / self.std)
        st = []
        for s in self.stages:
            h = s(h)
            st.append(h)
        pen = h.mean(dim=(2, 3))
        logits = self.fc(self.drop(pen))
        if not feats:
            return logits
        out = {'logits': logits, 'penultimate': pen}
        for i, t in enumerate(st):
            m = t.mean(dim=(2, 3), keepdim=True)
            out['stage%d_mean' % (i + 1)] = m.flatten(1)
            out['stage%d_std' % (i + 1)] = torch.sqrt(((t - m) ** 2).mean(dim=(2, 3)) + 1e-6)
        out['residual_stats'] = self.residual(x)
        return out

    def residual(self, x):
        r = F.conv2d(x * 255.0, self.hp)  # valid conv, 222x222, grey-level units
        a = r.abs()
        m = r.mean(dim=(2, 3), keepdim=True)
        mean_abs = a.mean(dim=(2, 3))
        std = torch.sqrt(((r - m) ** 2).mean(dim=(2, 3)) + 1e-6)
        msq = (r * r).mean(dim=(2, 3))
        trunc = torch.clamp(a, max=RESIDUAL_TRUNC).mean(dim=(2, 3))
        # layout: [filter0 stats..., filter1 stats..., ...]
        return torch.stack([mean_abs, std, msq, trunc], dim=2).flatten(1)


FEATURE_OUTPUTS = ['stage1_mean', 'stage1_std', 'stage2_mean', 'stage2_std', 'stage3_mean', 'stage3_std',
                   'stage4_mean', 'stage4_std', 'penultimate', 'residual_stats']


def load_model():
    m = RefNet()
    ck = torch.load(CKPT_PATH, map_location='cpu')
    m.load_state_dict(ck.get('state_dict_deploy', ck['state_dict']))  # deploy = threshold folded (export step)
    m.eval()
    return m, ck


@torch.no_grad()
def predict_logits(model, u8, bs=64):
    out = []
    for i in range(0, len(u8), bs):
        out.append(model(to_input(u8[i:i + bs])))
    return torch.cat(out)


def run_onnx(model_path, arr, u8=False, batch=64):
    """Run an ONNX model through onnxruntime-node (lab/onnx_check.js); returns dict name -> np.ndarray."""
    import json
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory(dir=DATA) as td:
        inp = os.path.join(td, 'in.raw')
        a = np.ascontiguousarray(arr, dtype=np.uint8 if u8 else np.float32)
        a.tofile(inp)
        cmd = ['node', os.path.join(LAB, 'onnx_check.js'), os.path.abspath(model_path), inp, str(a.shape[0]),
               os.path.join(td, 'out'), '--batch', str(batch)] + (['--u8'] if u8 else [])
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        shapes = json.load(open(os.path.join(td, 'out', 'shapes.json')))
        return {k: np.fromfile(os.path.join(td, 'out', k + '.f32'), dtype=np.float32).reshape(v)
                for k, v in shapes.items()}
