"""Views: deterministic transforms of the model's input image, for the adversarial-signal detectors.

A view maps the model input x (the windowed [0, 1] image, per channel, float32; for the reference model exactly
uint8 / 255, shape 1x1x224x224) to an image of the same shape, float32. The TypeScript side must reproduce these
bit for bit (golden file test/fixtures/detectors/golden-views.json, written by make_golden_adversarial.py), so
every definition says where it rounds:

- ``bits<b>`` (b = 1..7): y = floor(x * (2^b - 1) + 0.5) / (2^b - 1), computed in double precision, rounded
  once to float32.
- ``median2``: y[i, j] = median of the 2x2 block x[i..i+1, j..j+1]; rows / columns beyond the last are clamped
  to the last one. The median of 4 values is the mean of the two middle ones, (a + b) / 2 in double precision,
  rounded once to float32.
- ``median3``: median of the 3x3 block x[i-1..i+1, j-1..j+1], indices clamped to the image (replicate edge);
  an element of the block, so no rounding.
- ``blur``: 3x3 binomial low-pass [1,2,1]^T [1,2,1] / 16, replicate edge; the 9 weighted terms are summed in
  double precision in row-major kernel order (top-left first), divided by 16, rounded once to float32.

IEEE double arithmetic is deterministic given the order of operations, so an implementation that performs exactly
these double operations in this order (JavaScript numbers are doubles; Math.fround for the final rounding) gets
identical bits. For uint8 / 255 inputs every double result above is moreover exact before its final rounding.

Feature naming (as the pipeline will hand them to detectors): the base image's outputs under their manifest names
(``logits``, ``penultimate``, ``stage1_mean`` ...), a view's outputs as ``<view>/<output>``, e.g.
``median2/logits``.
"""
import numpy as np

VIEWS = ('bits1', 'bits2', 'bits3', 'bits4', 'bits5', 'bits6', 'bits7', 'median2', 'median3', 'blur')


def _clamped(n, offsets):
    """Index arrays i + o clamped to [0, n-1] for each offset o."""
    i = np.arange(n)
    return [np.clip(i + o, 0, n - 1) for o in offsets]


def _bits(x, b):
    L = float(2 ** b - 1)
    return (np.floor(x.astype(np.float64) * L + 0.5) / L).astype(np.float32)


def _block_stack(x, offsets):
    """x [..., H, W] -> stack over the (dy, dx) offsets in row-major order, shape [k, ..., H, W]."""
    H, W = x.shape[-2:]
    rows = _clamped(H, offsets)
    cols = _clamped(W, offsets)
    out = []
    for r in rows:
        xr = x[..., r, :]
        for c in cols:
            out.append(xr[..., c])
    return np.stack(out)


def _median2(x):
    s = np.sort(_block_stack(x, (0, 1)), axis=0)  # 4 values
    return ((s[1].astype(np.float64) + s[2].astype(np.float64)) / 2.0).astype(np.float32)


def _median_odd(x, r):
    s = np.sort(_block_stack(x, tuple(range(-r, r + 1))), axis=0)
    return s[(len(s) - 1) // 2].astype(np.float32)


def _blur(x):
    w = (1.0, 2.0, 1.0)
    st = _block_stack(x, (-1, 0, 1)).astype(np.float64)  # row-major: (dy, dx) = (-1,-1), (-1,0), ...
    acc = np.zeros(st.shape[1:], dtype=np.float64)
    k = 0
    for wy in w:
        for wx in w:
            acc = acc + (wy * wx) * st[k]
            k += 1
    return (acc / 16.0).astype(np.float32)


def apply_view(name, x):
    """x: float32 array [..., H, W] in [0, 1] -> float32 array of the same shape."""
    x = np.asarray(x, dtype=np.float32)
    if name.startswith('bits'):
        return _bits(x, int(name[4:]))
    if name == 'median2':
        return _median2(x)
    if name == 'median3':
        return _median_odd(x, 1)
    if name == 'blur':
        return _blur(x)
    raise ValueError('unknown view %r' % name)
