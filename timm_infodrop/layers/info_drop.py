"""InfoDrop: informative dropout (Shi et al., ICML 2020), functional form and module.

A patch that looks like its neighbours carries little self-information (texture, flat areas).
InfoDrop drops the activations computed from such patches more often, which pushes a CNN to
decide by shape. The steps (numbers refer to the paper's released recipe):

1. draw ``num_offsets`` offsets ``o`` uniformly from ``[-radius, radius]^2`` (one draw per call,
   shared by the batch);
2. patch distance on the conv's output grid: ``d_o(j)`` = sum over the conv window of output
   position ``j`` and over channels of ``(x - shift_o(x))^2``: a box sum, with the conv's geometry,
   of per-pixel squared differences of the zero-padded input;
3. kernel ``K_o = exp(-d_o / (2 h^2 mean(d)))`` with one scalar ``mean(d)`` over batch, offsets and
   positions;
4. density ``q = mean_o K_o``, self-information ``I = -log q``;
5. drop distribution per sample ``P = softmax_j(-I / T)`` (``q^(1/T)`` normalised in log space),
   min-pooled first when a max-pool follows the conv;
6. ``m = int(drop_rate * H * W)`` draws with replacement per (sample, channel) row zero the drawn
   positions; survivors are not rescaled. The marginal keep probability is ``(1 - P)^m``.

The layer is split by job, as timm's own layers are (a functional form plus a thin ``nn.Module``):

* :mod:`.info_drop_reference`: the steps above as plain float64 loops, which the tests hold every fast path to;
* :mod:`.info_drop_fast`: the torch-ops path (GPUs, TorchScript tracing, CPUs without a compiler);
* :mod:`._cpu_kernel` (built by :mod:`._cpu_build`): on a CPU, steps 2-5 (2-4 with ``sampling='multinomial'``)
  and the drawing and applying of the mask as C++ kernels, torch.library ops that eager, ``torch.compile`` and
  export all take; the same numbers to float rounding, masks of the same law (from another random stream);
* :mod:`._checks`: the argument checks;
* here: the functions callers use (they check their arguments and pick a path) and :class:`InfoDrop`.

Everything that builds the mask runs under ``torch.no_grad()`` in float32 with autocast off, so
bf16/fp16 inputs and T = 0.03 neither underflow nor produce NaN.

No forward reads a device tensor on the host: offsets, the rescale factor and the non-finite guard are
tensors. An input holding NaN or Inf gives a NaN output (as a conv would); :func:`finite_check` turns that
into a one-line error instead.
"""
from typing import Iterator, Optional, Tuple

import contextlib

import torch
from torch import nn

from ..errors import ConfigError
from ._checks import (
    EVAL_MODES, SAMPLING_MODES, IntPair as _IntPair, Pool, _check_drop_grid, _check_drop_hyperparameters,
    _check_feature_map, _check_hyperparameters, _check_modes, _conv_geometry, _pair, _pool_geometry,
)
from ._cpu_kernel import (
    bernoulli_keep_cpu, bernoulli_threshold_cpu, kernels_ready, maskable, multinomial_keep_cpu, multiply_keep_cpu,
    self_information_cpu,
)
from .info_drop_fast import (
    bernoulli_mask_torch, drop_distribution_torch,
    keep_probability_torch, multinomial_mask_torch, num_draws as _num_draws, self_information_torch,
)

__all__ = [
    'self_information', 'drop_distribution', 'keep_probability', 'sample_info_drop_mask',
    'info_drop', 'apply_information', 'InfoDrop', 'SAMPLING_MODES', 'EVAL_MODES', 'finite_check',
]


def _sample_offsets(radius: int, num_offsets: Optional[int], generator: Optional[torch.Generator],
                    device: torch.device) -> torch.Tensor:
    """Step 1: offsets (S, 2) int64 on ``device``, drawn there (from ``generator``'s device, then moved, when
    one is given): they stay tensors, so that no forward reads them on the host."""
    if num_offsets is None:
        span = torch.arange(-radius, radius + 1, device=device)
        return torch.cartesian_prod(span, span).view(-1, 2)
    drawn_on = generator.device if generator is not None else device
    drawn = torch.randint(-radius, radius + 1, (num_offsets, 2), generator=generator, device=drawn_on)
    return drawn.to(device, non_blocking=True)


def self_information(
        x: torch.Tensor,
        kernel_size: _IntPair,
        stride: _IntPair = 1,
        padding: _IntPair = 0,
        dilation: _IntPair = 1,
        radius: int = 3,
        num_offsets: Optional[int] = 9,
        bandwidth: float = 1.0,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Self-information ``-log q`` of every conv window, on the conv's output grid.

    Args:
        x: the conv's input, (B, C, H, W), any floating dtype.
        kernel_size, stride, padding, dilation: the conv's geometry (zero padding).
        radius: offsets are drawn from ``[-radius, radius]^2`` (pixels of ``x``).
        num_offsets: how many offsets to draw per call; ``None`` uses all ``(2 radius + 1)^2``.
        bandwidth: kernel bandwidth ``h``, relative to the mean patch distance.
        generator: draws the offsets (for reproducible maps).

    Returns:
        float32 tensor (B, 1, Ho, Wo), >= 0, where (Ho, Wo) is the conv's output size. Low values
        mark predictable patches (texture, flat areas), high values surprising ones (edges).

    Raises:
        ValueError: for a window larger than the padded input (naming both sizes); for an input containing
            NaN or Inf only inside :func:`finite_check` (the check reads the device on every call). Without
            it such an input gives a NaN map (NaN in, NaN out, and no host sync).
    """
    _check_feature_map(x, 'x')
    k, s, p, d = _conv_geometry(kernel_size, stride, padding, dilation)
    _check_hyperparameters(radius, num_offsets, bandwidth)
    height, width = x.shape[-2:]
    padded_h, padded_w = height + 2 * p[0], width + 2 * p[1]
    window_h, window_w = d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1
    if padded_h < window_h or padded_w < window_w:
        raise ConfigError(
            f'input of {height}x{width} (padded {padded_h}x{padded_w}) is smaller than the conv window '
            f'{window_h}x{window_w} (kernel_size={k}, dilation={d}, padding={p})')
    offsets = _sample_offsets(radius, num_offsets, generator, x.device)
    out_h = (padded_h - window_h) // s[0] + 1
    out_w = (padded_w - window_w) // s[1] + 1

    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        if _check_finite and not torch.isfinite(x).all():  # opt-in: a host sync
            raise ValueError('x contains NaN or Inf: its self-information is undefined')
        path = self_information_cpu if _use_cpu_kernel(x) else self_information_torch
        return path(x, offsets, radius, (out_h, out_w), k, s, p, d, bandwidth)


_check_finite = False


@contextlib.contextmanager
def finite_check(enabled: bool = True) -> Iterator[None]:
    """Inside the block, InfoDrop raises a one-line ``ValueError`` for an input holding NaN or Inf instead
    of propagating NaN to its output. Off by default: the check reads the device (a host sync) on every
    forward, and breaks a ``torch.compile`` graph."""
    global _check_finite
    saved, _check_finite = _check_finite, bool(enabled)
    try:
        yield
    finally:
        _check_finite = saved


def _use_cpu_kernel(x: torch.Tensor) -> bool:
    """Whether the C++ kernels take ``x``: on a CPU, switched on and built. They are torch.library ops, so
    eager, torch.compile and export all take them; only TorchScript tracing keeps to the torch ops."""
    return x.device.type == 'cpu' and not torch.jit.is_tracing() and kernels_ready()


def drop_distribution(
        information: torch.Tensor,
        temperature: float = 0.03,
        pool_kernel_size: Optional[_IntPair] = None,
        pool_stride: Optional[_IntPair] = None,
        pool_padding: _IntPair = 0,
) -> torch.Tensor:
    """Where to drop: ``P = softmax_j(-I(j) / T)`` over the positions of each sample.

    Args:
        information: self-information (B, 1, H, W) from :func:`self_information`.
        temperature: T; small T concentrates the drops on the most predictable patches.
        pool_kernel_size, pool_stride, pool_padding: geometry of a max-pool that follows the conv;
            ``-I / T`` is min-pooled with it so that ``P`` lives on the pooled grid.

    Returns:
        float32 (B, 1, H', W'), each sample summing to 1.
    """
    _check_drop_hyperparameters(temperature, 0.0)
    pool = None if pool_kernel_size is None else _pool_geometry(pool_kernel_size, pool_stride, pool_padding)
    return drop_distribution_torch(information, temperature, pool)


def keep_probability(distribution: torch.Tensor, drop_rate: float = 1.5) -> torch.Tensor:
    """Marginal keep probability ``(1 - P)^m``, ``m = int(drop_rate * H * W)``; same shape as ``P``."""
    return keep_probability_torch(distribution, drop_rate)


def sample_info_drop_mask(
        distribution: torch.Tensor,
        num_channels: int,
        drop_rate: float = 1.5,
        sampling: str = 'bernoulli',
        generator: Optional[torch.Generator] = None,
        channels_last: bool = False,
) -> torch.Tensor:
    """Draw a keep mask (B, num_channels, H, W), bool (True = keep), from the drop distribution ``P``.

    ``'multinomial'`` makes ``m`` draws with replacement from ``P`` for every (sample, channel) row
    and zeroes the drawn positions, the released code's law (its ``torch.multinomial`` replaced by an exact
    inverse-CDF sampler, ``info_drop_fast._drop_drawn``, or on a CPU with the C++ kernel by the alias method).
    ``'bernoulli'`` keeps every element
    independently with the same marginal probability ``(1 - P)^m``, resolved to 2^-16: one 16-bit
    uniform per element. ``channels_last`` lays the mask out in that memory format.
    """
    if sampling not in SAMPLING_MODES:
        raise ConfigError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
    if sampling == 'bernoulli':
        return bernoulli_mask_torch(distribution, num_channels, drop_rate, generator, channels_last)
    if _use_cpu_kernel(distribution):
        return multinomial_keep_cpu(distribution, num_channels, _num_draws(drop_rate, *distribution.shape[-2:]),
                                    channels_last, generator)
    return multinomial_mask_torch(distribution, num_channels, drop_rate, generator, channels_last)


def info_drop(
        x_in: torch.Tensor,
        y: torch.Tensor,
        kernel_size: _IntPair,
        stride: _IntPair = 1,
        padding: _IntPair = 0,
        dilation: _IntPair = 1,
        pool_kernel_size: Optional[_IntPair] = None,
        pool_stride: Optional[_IntPair] = None,
        pool_padding: _IntPair = 0,
        radius: int = 3,
        num_offsets: Optional[int] = 9,
        bandwidth: float = 1.0,
        temperature: float = 0.03,
        drop_rate: float = 1.5,
        sampling: str = 'bernoulli',
        eval_mode: str = 'identity',
        training: bool = False,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """InfoDrop, functional form: mask ``y`` where the conv's input ``x_in`` is predictable.

    Args:
        x_in: input of the conv whose geometry is given, (B, C_in, H, W).
        y: what gets masked, (B, C_out, H', W'): the conv output, possibly after BN, activation and
            a max-pool (give the pool's geometry).
        training: sample a mask; otherwise ``eval_mode`` decides: ``'identity'`` returns ``y``,
            ``'expected'`` scales by the keep probability ``(1 - P)^m``, ``'sample'`` samples as in
            training (the released code's behaviour).
        Other arguments: see :func:`self_information`, :func:`drop_distribution`,
            :func:`sample_info_drop_mask`.

    Returns:
        ``y`` times a mask computed without gradient; same shape and dtype as ``y``.
    """
    _check_modes(sampling, eval_mode)
    _check_drop_hyperparameters(temperature, drop_rate)
    if not training and eval_mode == 'identity':
        return y
    information = self_information(
        x_in, kernel_size, stride, padding, dilation, radius, num_offsets, bandwidth, generator)
    return apply_information(
        information, y, pool_kernel_size, pool_stride, pool_padding, temperature, drop_rate,
        sampling, eval_mode, training, generator)


def apply_information(
        information: torch.Tensor,
        y: torch.Tensor,
        pool_kernel_size: Optional[_IntPair] = None,
        pool_stride: Optional[_IntPair] = None,
        pool_padding: _IntPair = 0,
        temperature: float = 0.03,
        drop_rate: float = 1.5,
        sampling: str = 'bernoulli',
        eval_mode: str = 'identity',
        training: bool = False,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Second half of :func:`info_drop`: mask ``y`` given a self-information map computed earlier."""
    _check_feature_map(y, 'y')
    if not training and eval_mode == 'identity':
        return y
    pool = _pool_geometry(pool_kernel_size, pool_stride, pool_padding)
    if (training or eval_mode == 'sample') and sampling == 'bernoulli' and _use_cpu_kernel(y) and maskable(y) \
            and _kernel_pool(pool):
        # the kernels: thresholds in one op, the mask drawn and applied (and the poison added) in another
        _check_drop_hyperparameters(temperature, drop_rate)
        with torch.no_grad():
            size = _pooled_size(information, pool)
            _check_drop_grid(information.shape[0], size, y)
            threshold, poison = bernoulli_threshold_cpu(information, temperature, pool, size,
                                                        _num_draws(drop_rate, *size))
        return bernoulli_keep_cpu(y, threshold, generator, poison.to(y.dtype))[0]
    with torch.no_grad(), torch.autocast(y.device.type, enabled=False):
        distribution = drop_distribution(information, temperature, pool_kernel_size, pool_stride, pool_padding)
        _check_drop_grid(distribution.shape[0], distribution.shape[-2:], y)
        if not training and eval_mode != 'sample':
            return y * keep_probability(distribution, drop_rate).to(dtype=y.dtype)
        # 0, or NaN where the map is NaN (a non-finite input): NaN in, NaN out, decided on the device
        poison = distribution.sum().mul(0.0).to(y.dtype)
        on_kernel = _use_cpu_kernel(y) and maskable(y)
        keep_mask = sample_info_drop_mask(distribution, y.shape[1], drop_rate, sampling, generator,
                                          _is_channels_last(y))
    if not on_kernel:
        return (y * keep_mask).add_(poison)  # faster than torch.where on CPU; a dropped finite value becomes (+-)0
    return multiply_keep_cpu(y, keep_mask, poison)  # the poison added in the kernel's pass


def _kernel_pool(pool: Pool) -> bool:
    """Whether the threshold kernel takes the pool; any other goes to max_pool2d, which names what is wrong."""
    kh, kw, sh, sw, ph, pw = pool
    return min(kh, kw, sh, sw) >= 1 and 0 <= ph <= kh // 2 and 0 <= pw <= kw // 2


def _pooled_size(information: torch.Tensor, pool: Pool) -> Tuple[int, int]:
    """The drop distribution's grid: the self-information map's after the pool (as max_pool2d sizes it)."""
    kh, kw, sh, sw, ph, pw = pool
    height, width = information.shape[-2:]
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def _is_channels_last(y: torch.Tensor) -> bool:
    return y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


class InfoDrop(nn.Module):
    """InfoDrop as a module: ``forward(x_in, y)`` masks ``y`` where ``x_in`` is predictable.

    ``kernel_size``/``stride``/``padding``/``dilation`` are those of the conv that maps ``x_in`` to
    ``y``; give ``pool_*`` when ``y`` has gone through a max-pool after that conv. The defaults are
    the released domain-generalization values (R = 3, S = 9, h = 1, T = 0.03, r = 1.5).
    Identity in eval by default (``eval_mode='identity'``). Holds no parameters or buffers, so it
    never changes a model's state dict. Set ``enabled = False`` to switch it off in every mode.
    """

    def __init__(
            self,
            kernel_size: _IntPair,
            stride: _IntPair = 1,
            padding: _IntPair = 0,
            dilation: _IntPair = 1,
            pool_kernel_size: Optional[_IntPair] = None,
            pool_stride: Optional[_IntPair] = None,
            pool_padding: _IntPair = 0,
            radius: int = 3,
            num_offsets: Optional[int] = 9,
            bandwidth: float = 1.0,
            temperature: float = 0.03,
            drop_rate: float = 1.5,
            sampling: str = 'bernoulli',
            eval_mode: str = 'identity',
            device=None,
            dtype=None,
    ):
        super().__init__()
        del device, dtype  # no parameters; accepted for a uniform layer signature
        self.kernel_size, self.stride, self.padding, self.dilation = _conv_geometry(
            kernel_size, stride, padding, dilation)
        self.pool_kernel_size = None if pool_kernel_size is None else _pair(pool_kernel_size, 'pool_kernel_size')
        self.pool_stride = None if pool_stride is None else _pair(pool_stride, 'pool_stride')
        self.pool_padding = _pair(pool_padding, 'pool_padding')
        _check_hyperparameters(radius, num_offsets, bandwidth)
        _check_drop_hyperparameters(temperature, drop_rate)
        _check_modes(sampling, eval_mode)
        self.radius = radius
        self.num_offsets = num_offsets
        self.bandwidth = float(bandwidth)
        self.temperature = float(temperature)
        self.drop_rate = float(drop_rate)
        self.sampling = sampling
        self.eval_mode = eval_mode
        self.enabled = True

    def is_active(self) -> bool:
        """Whether a forward in the current mode changes its input."""
        return self.enabled and (self.training or self.eval_mode != 'identity')

    def information(self, x_in: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Self-information (B, 1, Ho, Wo) of ``x_in`` on this conv's output grid (no gradient)."""
        return self_information(
            x_in, self.kernel_size, self.stride, self.padding, self.dilation,
            self.radius, self.num_offsets, self.bandwidth, generator)

    def apply_information(
            self, information: torch.Tensor, y: torch.Tensor, generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Mask ``y`` with a self-information map from :meth:`information`."""
        if not self.is_active():
            return y
        return apply_information(
            information, y, self.pool_kernel_size, self.pool_stride, self.pool_padding,
            self.temperature, self.drop_rate, self.sampling, self.eval_mode, self.training, generator)

    def forward(self, x_in: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or not self.is_active():
            return y
        return self._forward_active(x_in, y)

    @torch.jit.unused
    def _forward_active(self, x_in: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.apply_information(self.information(x_in), y)

    def extra_repr(self) -> str:
        pool = '' if self.pool_kernel_size is None else (
            f', pool_kernel_size={self.pool_kernel_size}, pool_stride={self.pool_stride}, '
            f'pool_padding={self.pool_padding}')
        offsets = 'all' if self.num_offsets is None else self.num_offsets
        return (f'kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, '
                f'dilation={self.dilation}{pool}, radius={self.radius}, num_offsets={offsets}, '
                f'bandwidth={self.bandwidth}, temperature={self.temperature}, drop_rate={self.drop_rate}, '
                f'sampling={self.sampling!r}, eval_mode={self.eval_mode!r}')
