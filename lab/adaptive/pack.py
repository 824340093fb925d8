"""Pack what the full adaptive run (full.py) needs into one folder that travels to a GPU loan (no ../shared there).

    /usr/bin/python3 lab/adaptive/pack.py [--n 200] [--train 800] [--out .gpu]

Writes: model.pt (the reference model's deploy weights), test.npz (the first n images of the lab's attacked test
subset, uint8, labels and their test-split indices), train.u8.xz + train.json (a seeded subset of model_train for
adversarial fine-tuning, lzma-compressed: the loan's tree limit is 64 MiB), targets.npz (logits of typical clean
calibration images per class, for logit matching: correctly classified, every adversarial twin p > 0.5).
"""
import argparse
import json
import lzma
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import DATA, REPO, SEED, image_cache, load_model, log, read_splits, to_input  # noqa: E402
from twins import MEMBERS, Twins  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=200)
    ap.add_argument('--train', type=int, default=800)
    ap.add_argument('--out', default=os.path.join(REPO, '.gpu'))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    model, ck = load_model()
    torch.save({'state_dict': model.state_dict()}, os.path.join(a.out, 'model.pt'))
    idx, imgs = image_cache()
    sp = read_splits()
    test = [r for r in sp if r['split'] == 'test']
    sel = np.load(os.path.join(DATA, 'attacks', 'subset.npz'))['sel'][:a.n]
    np.savez(os.path.join(a.out, 'test.npz'), x=imgs[[idx[test[i]['path']] for i in sel]],
             y=np.array([test[i]['label'] for i in sel]), sel=sel)
    train = [r for r in sp if r['split'] == 'model_train']
    pick = np.random.default_rng(SEED).permutation(len(train))[:a.train]
    xt = imgs[[idx[train[i]['path']] for i in pick]]
    with open(os.path.join(a.out, 'train.u8.xz'), 'wb') as f:
        f.write(lzma.compress(np.ascontiguousarray(xt).tobytes(), preset=6))
    json.dump({'n': int(len(pick)), 'shape': list(xt.shape[1:]), 'labels': [int(train[i]['label']) for i in pick]},
              open(os.path.join(a.out, 'train.json'), 'w'))
    cal = [r for r in sp if r['split'] == 'calibration']
    xc = imgs[[idx[r['path']] for r in cal]]
    yc = np.array([r['label'] for r in cal])
    twins = Twins()
    zs, ps = [], []
    with torch.no_grad():
        for i in range(0, len(xc), 64):
            s, z = twins.scores(model, to_input(xc[i:i + 64]))
            zs.append(z.numpy())
            ps.append(np.stack([twins.p_value(k, s[k].numpy()) for k in MEMBERS], 1))
    z, p = np.concatenate(zs), np.concatenate(ps)
    typical = (z.argmax(1) == yc) & (p.min(1) > 0.5)
    np.savez(os.path.join(a.out, 'targets.npz'), **{'logits_%d' % c: z[typical & (yc == c)] for c in (0, 1)})
    log('packed %d test, %d train, %s typical targets per class into %s (%.1f MB)' % (
        len(sel), len(pick), [int((typical & (yc == c)).sum()) for c in (0, 1)], a.out,
        sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out)) / 1e6))


if __name__ == '__main__':
    main()
