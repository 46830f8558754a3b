"""InfoDrop's maths as plain, readable functions: the reference every fast path is tested against.

One function per step of docs/layers.md ("InfoDrop"), written to be checked by eye against the paper rather
than to run fast: float64, a Python loop over output positions where the paper sums over a window, and no
chunking, rescaling, fused kernels or random-stream tricks. :mod:`.info_drop` computes the same numbers with
the torch-ops path (:mod:`.info_drop_fast`) or the C++ kernels (:mod:`._cpu_kernel`); the tests hold both to
these functions. Slow on purpose: use them on a few small maps only.

Shapes: ``x`` is a conv's input (B, C, H, W); maps live on the conv's output grid (B, 1, Ho, Wo), or on the
max-pool's grid after it. Offsets are ``(di, dj)`` pixel shifts of ``x``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ._checks import IntPair, _conv_geometry, _pool_geometry

__all__ = [
    'draw_offsets', 'patch_distances', 'self_information', 'drop_distribution', 'num_draws', 'keep_probability',
    'multinomial_mask',
]


def draw_offsets(radius: int, num_offsets: Optional[int], generator: Optional[torch.Generator] = None
                 ) -> List[Tuple[int, int]]:
    """Step 1: ``num_offsets`` offsets drawn uniformly from ``[-radius, radius]^2`` (repeats and (0, 0)
    allowed), one draw per call shared by the batch; ``None`` gives all ``(2 radius + 1)^2`` of them.

    The draw is ``torch.randint`` on ``generator``, as the layer's, so one seed gives the layer's offsets.
    """
    if num_offsets is None:
        return [(di, dj) for di in range(-radius, radius + 1) for dj in range(-radius, radius + 1)]
    drawn = torch.randint(-radius, radius + 1, (num_offsets, 2), generator=generator)
    return [(int(di), int(dj)) for di, dj in drawn.tolist()]


def _shifted(image: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    """``out[..., i, j] = image[..., i + di, j + dj]``, zero where ``(i + di, j + dj)`` falls outside."""
    height, width = image.shape[-2:]
    out = torch.zeros_like(image)
    rows = range(max(0, -di), min(height, height - di))
    cols = range(max(0, -dj), min(width, width - dj))
    if len(rows) and len(cols):
        out[..., rows.start:rows.stop, cols.start:cols.stop] = \
            image[..., rows.start + di:rows.stop + di, cols.start + dj:cols.stop + dj]
    return out


def patch_distances(x: torch.Tensor, offsets: Sequence[Tuple[int, int]], kernel_size: IntPair,
                    stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1) -> torch.Tensor:
    """Step 2: ``d_o(j)``, the sum over the conv window of output position ``j`` and over the channels of
    ``(x - shift_o x)^2``, for every offset ``o``: float64 (B, S, Ho, Wo).

    ``x`` is zero-padded as the conv pads it, then shifted (zero outside the padded image too), so a window
    reaching past the image compares zeros, as the released code does.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _conv_geometry(kernel_size, stride, padding, dilation)
    padded = F.pad(x.double(), (pw, pw, ph, ph))
    batch, _, padded_h, padded_w = padded.shape
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # the dilated window, in pixels
    out_h, out_w = (padded_h - span_h) // sh + 1, (padded_w - span_w) // sw + 1
    out = torch.zeros(batch, len(offsets), out_h, out_w, dtype=torch.float64)
    for o, (di, dj) in enumerate(offsets):
        per_pixel = (padded - _shifted(padded, di, dj)).square().sum(1)  # (B, Hp, Wp), summed over channels
        for i in range(out_h):
            for j in range(out_w):
                window = per_pixel[:, i * sh:i * sh + span_h:dh, j * sw:j * sw + span_w:dw]
                out[:, o, i, j] = window.sum((1, 2))
    return out


def self_information(x: torch.Tensor, offsets: Sequence[Tuple[int, int]], kernel_size: IntPair,
                     stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                     bandwidth: float = 1.0) -> torch.Tensor:
    """Steps 3-4: ``I = -log q``, ``q(j) = mean_o exp(-d_o(j) / (2 h^2 mean(d)))``: float64 (B, 1, Ho, Wo).

    ``mean(d)`` is one number, the mean over the batch, the offsets and the positions. Where every distance
    is 0 (a constant image) every patch is perfectly predictable: ``q = 1``, ``I = 0``.
    """
    distance = patch_distances(x, offsets, kernel_size, stride, padding, dilation)
    mean = distance.mean()
    if mean == 0:
        return torch.zeros(distance.shape[0], 1, *distance.shape[2:], dtype=torch.float64)
    kernel = torch.exp(-distance / (2 * bandwidth ** 2 * mean))
    return -torch.log(kernel.mean(1, keepdim=True))


def drop_distribution(information: torch.Tensor, temperature: float = 0.03,
                      pool_kernel_size: Optional[IntPair] = None, pool_stride: Optional[IntPair] = None,
                      pool_padding: IntPair = 0) -> torch.Tensor:
    """Step 5: ``P = softmax_j(-I(j) / T)`` over each sample's positions: float64 (B, 1, H', W').

    With a max-pool after the conv, ``-I / T`` is min-pooled with the pool's geometry first (the minimum over
    each pool window's positions inside the map: padding never wins), so ``P`` lives on the pooled grid.
    """
    logits = -information.double() / temperature
    if pool_kernel_size is not None:
        kh, kw, sh, sw, ph, pw = _pool_geometry(pool_kernel_size, pool_stride, pool_padding)
        height, width = logits.shape[-2:]
        out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        pooled = torch.empty(logits.shape[0], 1, out_h, out_w, dtype=torch.float64)
        for i in range(out_h):
            for j in range(out_w):
                rows = slice(max(i * sh - ph, 0), min(i * sh - ph + kh, height))
                cols = slice(max(j * sw - pw, 0), min(j * sw - pw + kw, width))
                pooled[:, :, i, j] = logits[:, :, rows, cols].amin((2, 3))
        logits = pooled
    batch = logits.shape[0]
    return torch.softmax(logits.reshape(batch, -1), dim=1).reshape(logits.shape)


def num_draws(drop_rate: float, height: int, width: int) -> int:
    """Step 6's ``m = int(r * H * W)``: the draws per (sample, channel) row of the masked tensor."""
    return int(drop_rate * height * width)


def keep_probability(distribution: torch.Tensor, drop_rate: float = 1.5) -> torch.Tensor:
    """Step 6, the marginal: position ``j`` survives ``m`` independent draws from ``P`` with probability
    ``(1 - P(j))^m``: float64, the shape of ``distribution``."""
    m = num_draws(drop_rate, *distribution.shape[-2:])
    return (1 - distribution.double()) ** m


def multinomial_mask(distribution: torch.Tensor, num_channels: int, drop_rate: float = 1.5,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Step 6 as released: for every (sample, channel) row, ``m`` draws with replacement from ``P`` (by
    ``torch.multinomial``), each drawn position zeroed. Returns the keep mask, bool (B, C, H, W)."""
    batch, _, height, width = distribution.shape
    keep = torch.ones(batch, num_channels, height * width, dtype=torch.bool)
    m = num_draws(drop_rate, height, width)
    if m == 0:
        return keep.view(batch, num_channels, height, width)
    for b in range(batch):
        rows = distribution[b].reshape(1, -1).double().expand(num_channels, -1)
        drawn = torch.multinomial(rows, m, replacement=True, generator=generator)  # (C, m) positions
        keep[b].scatter_(1, drawn, False)
    return keep.view(batch, num_channels, height, width)

