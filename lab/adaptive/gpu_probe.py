"""Forward throughput of the reference model in torch on the loan's GPU: the ceiling a CUDA provider could reach
(Warden's onnxruntime-node has no CUDA provider there; docs/performance.md). Prints images/s per batch size.

    python3 lab/adaptive/gpu_probe.py --pack .gpu
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import RefNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pack', default='.gpu')
    a = ap.parse_args()
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    m = RefNet().to(dev).eval()
    m.load_state_dict(torch.load(os.path.join(a.pack, 'model.pt'), map_location='cpu')['state_dict'])
    out = {'device': torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu', 'torch': torch.__version__, 'rows': []}
    for bs in (1, 2, 8, 32, 128, 512):
        x = torch.rand(bs, 1, 224, 224, device=dev)
        with torch.no_grad():
            for _ in range(5):
                m(x, feats=True)
            if dev == 'cuda':
                torch.cuda.synchronize()
            reps = max(10, 2000 // bs) if dev == "cuda" else 3
            t = time.perf_counter()
            for _ in range(reps):
                m(x, feats=True)
            if dev == 'cuda':
                torch.cuda.synchronize()
            dt = (time.perf_counter() - t) / reps
        out['rows'].append({'batch': bs, 'ms_per_batch': round(dt * 1e3, 3), 'images_per_s': round(bs / dt, 1)})
        print(json.dumps(out['rows'][-1]), flush=True)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
