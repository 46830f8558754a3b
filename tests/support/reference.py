"""Direct, obviously-correct loop implementations of InfoDrop's steps 2-4 (docs/layers.md), for the tests.

Slow on purpose: one Python loop per output position, offset and kernel tap, in float64.
"""
from typing import List, Sequence, Tuple

import numpy as np


def patch_distance_loop(x: np.ndarray, offsets: Sequence[Tuple[int, int]], k: int, s: int, p: int, d: int) -> np.ndarray:
    """``d_o(j)``: sum over the conv window of output position j and over channels of (x - shift_o x)^2.

    ``x`` (B, C, H, W) is zero-padded by ``p``; ``shift_o x (i) = x_padded(i + o)``, zero outside.
    Returns (B, S, Ho, Wo).
    """
    batch, channels, height, width = x.shape
    xp = np.zeros((batch, channels, height + 2 * p, width + 2 * p))
    xp[:, :, p:p + height, p:p + width] = x
    hp, wp = xp.shape[-2:]

    def value(b: int, i: int, j: int) -> np.ndarray:
        if 0 <= i < hp and 0 <= j < wp:
            return xp[b, :, i, j]
        return np.zeros(channels)

    out_h = (hp - d * (k - 1) - 1) // s + 1
    out_w = (wp - d * (k - 1) - 1) // s + 1
    out = np.zeros((batch, len(offsets), out_h, out_w))
    for b in range(batch):
        for o, (di, dj) in enumerate(offsets):
            for io in range(out_h):
                for jo in range(out_w):
                    total = 0.0
                    for a in range(k):
                        for c in range(k):
                            i, j = io * s + a * d, jo * s + c * d
                            total += float(np.sum((value(b, i, j) - value(b, i + di, j + dj)) ** 2))
                    out[b, o, io, jo] = total
    return out


def self_information_loop(x: np.ndarray, offsets: List[Tuple[int, int]], k: int, s: int, p: int, d: int,
                          bandwidth: float = 1.0) -> np.ndarray:
    """``-log mean_o exp(-d_o / (2 h^2 mean(d)))``, (B, 1, Ho, Wo)."""
    distance = patch_distance_loop(x, offsets, k, s, p, d)
    mean = distance.mean()
    kernel = np.exp(-distance / (2 * bandwidth ** 2 * mean)) if mean > 0 else np.ones_like(distance)
    return -np.log(kernel.mean(axis=1, keepdims=True))
