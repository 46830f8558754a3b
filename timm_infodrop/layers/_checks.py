"""Argument checks and normalisation shared by the InfoDrop functions, the module and Information Dropout.

Each check raises before any tensor work, naming the argument and the value it got: a
:class:`~timm_infodrop.errors.ConfigError` (a ``ValueError``) for a value out of range, a ``TypeError`` for
a value of the wrong kind.
"""
from typing import Optional, Tuple, Union

import math

import torch

from ..errors import ConfigError

__all__ = ['SAMPLING_MODES', 'EVAL_MODES', 'IntPair']

SAMPLING_MODES = ('bernoulli', 'multinomial')
EVAL_MODES = ('identity', 'expected', 'sample')

IntPair = Union[int, Tuple[int, int]]
Pool = Tuple[int, int, int, int, int, int]  # (kh, kw, sh, sw, ph, pw) of a max-pool


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    """``value`` as (height, width): an int stands for both."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f'{name} must be an int or a pair of ints, got {value!r}')


def _conv_geometry(kernel_size: IntPair, stride: IntPair, padding: IntPair, dilation: IntPair
                   ) -> Tuple[Tuple[int, int], ...]:
    """(kernel, stride, padding, dilation) of a conv as pairs, each in its range."""
    k, s, p, d = (_pair(kernel_size, 'kernel_size'), _pair(stride, 'stride'),
                  _pair(padding, 'padding'), _pair(dilation, 'dilation'))
    for name, v, low in (('kernel_size', k, 1), ('stride', s, 1), ('padding', p, 0), ('dilation', d, 1)):
        if min(v) < low:
            raise ConfigError(f'{name} must be >= {low}, got {v}')
    return k, s, p, d


def _pool_geometry(kernel_size: Optional[IntPair], stride: Optional[IntPair], padding: IntPair) -> Pool:
    """(kh, kw, sh, sw, ph, pw) of the max-pool after the conv (stride defaults to the kernel, as in
    ``max_pool2d``); (1, 1, 1, 1, 0, 0) for none."""
    if kernel_size is None:
        return 1, 1, 1, 1, 0, 0
    pk = _pair(kernel_size, 'pool_kernel_size')
    ps = _pair(stride, 'pool_stride') if stride is not None else pk
    pp = _pair(padding, 'pool_padding')
    return (*pk, *ps, *pp)


def _check_hyperparameters(radius: int, num_offsets: Optional[int], bandwidth: float) -> None:
    """The self-information's settings: radius R >= 0 (pixels), S >= 1 offsets or None (all), h > 0."""
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ConfigError(f'radius must be an int >= 0, got {radius!r}')
    if num_offsets is not None and (not isinstance(num_offsets, int) or num_offsets < 1):
        raise ConfigError(f'num_offsets must be None (all offsets) or an int >= 1, got {num_offsets!r}')
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise ConfigError(f'bandwidth must be a finite number > 0, got {bandwidth!r}')


def _check_drop_hyperparameters(temperature: float, drop_rate: float) -> None:
    """The mask's settings: temperature T > 0 and drop rate r >= 0 (draws per position), both finite."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f'temperature must be a finite number > 0, got {temperature!r}')
    if not (drop_rate >= 0 and math.isfinite(drop_rate)):
        raise ConfigError(f'drop_rate must be a finite number >= 0, got {drop_rate!r}')


def _check_modes(sampling: str, eval_mode: str) -> None:
    if sampling not in SAMPLING_MODES:
        raise ConfigError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
    if eval_mode not in EVAL_MODES:
        raise ConfigError(f'eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}')


def _check_feature_map(x: torch.Tensor, name: str) -> None:
    """``x`` is a floating (B, C, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'{name} must have shape (B, C, H, W), got shape {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'{name} must be a floating point tensor, got dtype {x.dtype}')


def _check_drop_grid(batch: int, size: Tuple[int, int], y: torch.Tensor) -> None:
    """The drop distribution's (batch, H, W) is ``y``'s: else the geometry given does not match the model."""
    if batch != y.shape[0] or tuple(size) != tuple(y.shape[-2:]):
        raise ValueError(
            f'the drop distribution has shape {(batch, 1, *size)} (batch, 1, H, W) but y has '
            f'shape {tuple(y.shape)}: check the conv and pool geometry given to InfoDrop')
