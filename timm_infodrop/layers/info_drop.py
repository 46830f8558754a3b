"""InfoDrop: informative dropout (Shi et al., ICML 2020).

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

Everything that builds the mask runs under ``torch.no_grad()`` in float32 with autocast off, so
bf16/fp16 inputs and T = 0.03 neither underflow nor produce NaN.

On a CPU, steps 2-5 (2-4 with ``sampling='multinomial'``) and the drawing and applying of the mask run as C++
kernels (``layers/_cpu_kernel.py``, built on first use, registered as torch.library ops that eager,
``torch.compile`` and export all take);
GPUs, TorchScript tracing and machines without a compiler use the torch ops below, which compute the same
numbers to float rounding and draw masks of the same law (from a different random stream).

No forward reads a device tensor on the host: offsets, the rescale factor and the non-finite guard are
tensors. An input holding NaN or Inf gives a NaN output (as a conv would); :func:`finite_check` turns that
into a one-line error instead.
"""
from typing import Iterator, Optional, Tuple, Union

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._cpu_kernel import (
    bernoulli_keep_cpu, bernoulli_threshold_cpu, kernels_ready, maskable, multinomial_keep_cpu, multiply_keep_cpu,
    rescale_factor, self_information_cpu,
)

__all__ = [
    'self_information', 'drop_distribution', 'keep_probability', 'sample_info_drop_mask',
    'info_drop', 'InfoDrop', 'SAMPLING_MODES', 'EVAL_MODES', 'finite_check',
]

SAMPLING_MODES = ('bernoulli', 'multinomial')
EVAL_MODES = ('identity', 'expected', 'sample')

_IntPair = Union[int, Tuple[int, int]]


def _pair(value: _IntPair, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f'{name} must be an int or a pair of ints, got {value!r}')


def _conv_geometry(kernel_size, stride, padding, dilation):
    k, s, p, d = (_pair(kernel_size, 'kernel_size'), _pair(stride, 'stride'),
                  _pair(padding, 'padding'), _pair(dilation, 'dilation'))
    for name, v, low in (('kernel_size', k, 1), ('stride', s, 1), ('padding', p, 0), ('dilation', d, 1)):
        if min(v) < low:
            raise ConfigError(f'{name} must be >= {low}, got {v}')
    return k, s, p, d


def _check_hyperparameters(radius: int, num_offsets: Optional[int], bandwidth: float) -> None:
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ConfigError(f'radius must be an int >= 0, got {radius!r}')
    if num_offsets is not None and (not isinstance(num_offsets, int) or num_offsets < 1):
        raise ConfigError(f'num_offsets must be None (all offsets) or an int >= 1, got {num_offsets!r}')
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise ConfigError(f'bandwidth must be a finite number > 0, got {bandwidth!r}')


def _check_drop_hyperparameters(temperature: float, drop_rate: float) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f'temperature must be a finite number > 0, got {temperature!r}')
    if not (drop_rate >= 0 and math.isfinite(drop_rate)):
        raise ConfigError(f'drop_rate must be a finite number >= 0, got {drop_rate!r}')


def _check_feature_map(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'{name} must have shape (B, C, H, W), got shape {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'{name} must be a floating point tensor, got dtype {x.dtype}')


def _sample_offsets(radius: int, num_offsets: Optional[int], generator: Optional[torch.Generator],
                    device: torch.device) -> torch.Tensor:
    """Offsets (S, 2) int64 on ``device``, drawn there (from ``generator``'s device, then moved, when one is
    given): they stay tensors, so that no forward reads them on the host."""
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
        if _use_cpu_kernel(x):
            return self_information_cpu(x, offsets, radius, (out_h, out_w), k, s, p, d, bandwidth)
        # -log q is invariant to the scale of x; rescaled where squares would leave float32's range
        distance = _patch_distances(x.detach(), rescale_factor(x), offsets, radius, (out_h, out_w), k, s, p, d)
        scale = (2.0 * bandwidth ** 2) * distance.mean().clamp_min(torch.finfo(torch.float32).tiny)
        # log q = logsumexp_o(-d_o / scale) - log S, in place (no second (B, S, Ho, Wo) tensor)
        distance.div_(-scale)
        top = distance.amax(1, keepdim=True)
        log_q = distance.sub_(top).exp_().sum(1, keepdim=True).log_().add_(top).sub_(math.log(len(offsets)))
        return log_q.neg_().clamp_min_(0.0)


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
# Batch chunks sized so that a chunk's temporaries (padded input, per-pixel maps, box-sum rows) stay small
# next to the masked tensor and in cache; the (B, S, Ho, Wo) distances are the one full-batch buffer.
_CHUNK_FLOATS = 2_500_000
_FEW_CHANNELS = 8


def _patch_distances(x, rescale, offsets, radius, out_size, kernel, stride, padding, dilation) -> torch.Tensor:
    """``d_o(j)`` for every offset: (B, S, Ho, Wo), float32, of ``x * rescale``.

    Per pixel ``sum_c (x - shift_o x)^2`` (exactly 0 for identical pixels), then a separable box sum
    with the conv's geometry. Shifts act on the zero-padded input, as the released code does; the
    padding (and the float32 copy of a low-precision input) is made one batch chunk at a time. ``offsets``
    (S, 2) and ``rescale`` (0-dim) are tensors on ``x``'s device: on a GPU and under torch.compile a shift is
    a gather, never a host read.
    """
    r = radius
    batch, channels, height, width = x.shape
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    pads = (padding[1] + r, padding[1] + r, padding[0] + r, padding[0] + r)
    compiling = torch.compiler.is_compiling()
    if x.device.type == 'cpu' and not compiling:  # reading a CPU tensor syncs nothing: shifts are views
        windows = [(slice(r + di, r + di + padded_h), slice(r + dj, r + dj + padded_w))
                   for di, dj in offsets.tolist()]
    else:  # the flat index, in the doubly padded plane, of each offset's shifted window: (S, Hp * Wp)
        rows = torch.arange(padded_h, device=x.device).view(1, -1, 1) + (r + offsets[:, :1, None])
        cols = torch.arange(padded_w, device=x.device).view(1, 1, -1) + (r + offsets[:, 1:, None])
        windows = (rows * (padded_w + 2 * r) + cols).view(len(offsets), -1)
    per_sample = (len(offsets) + channels + 1) * (padded_h + 2 * r) * (padded_w + 2 * r)
    # chunks are for a CPU's caches and memory; a GPU takes the batch whole (fewer kernel launches)
    chunk = min(batch, max(1, _CHUNK_FLOATS // per_sample)) if x.device.type == 'cpu' else batch
    maps = x.new_empty(chunk, len(offsets), padded_h, padded_w, dtype=torch.float32)
    out = x.new_empty(batch, len(offsets), *out_size, dtype=torch.float32)
    many_channels = channels > _FEW_CHANNELS
    diff = None if many_channels else x.new_empty(chunk, padded_h, padded_w, dtype=torch.float32)
    rows_buffer = x.new_empty(chunk, len(offsets), out_size[0], padded_w, dtype=torch.float32)
    for b0 in range(0, batch, chunk):
        b1 = min(batch, b0 + chunk)
        xp = F.pad(x[b0:b1].float(), pads).mul_(rescale)
        center = xp[:, :, r:r + padded_h, r:r + padded_w]
        flat = xp.flatten(2)
        for i in range(len(offsets)):
            dist = maps[:b1 - b0, i]
            if isinstance(windows, list):
                shifted = xp[:, :, windows[i][0], windows[i][1]]
            else:
                shifted = flat.index_select(2, windows[i]).view(b1 - b0, channels, padded_h, padded_w)
            if compiling:  # torch.compile takes no strided out= tensor, and fuses these itself
                dist.copy_((center - shifted).square().sum(1))
                continue
            if many_channels:
                torch.sum((center - shifted).square_(), 1, out=dist)
                continue
            torch.sub(center[:, 0], shifted[:, 0], out=dist).square_()
            for c in range(1, channels):
                step = torch.sub(center[:, c], shifted[:, c], out=diff[:b1 - b0])
                dist.addcmul_(step, step)
        _box_sum(maps[:b1 - b0], kernel, stride, dilation, out=out[b0:b1], rows_buffer=rows_buffer[:b1 - b0])
    return out


def _box_sum(t: torch.Tensor, kernel, stride, dilation, out: torch.Tensor,
             rows_buffer: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum over every (dilated, strided) kernel window of ``t`` (..., H, W), no padding, into ``out``;
    ``rows_buffer`` (..., Ho, W) holds the row sums when given."""
    out_h, out_w = out.shape[-2:]

    def taps(dim: int, size: int):
        step, span = stride[dim], stride[dim] * (size - 1) + 1
        return [slice(a * dilation[dim], a * dilation[dim] + span, step) for a in range(kernel[dim])]

    row_taps = [t[..., tap, :] for tap in taps(0, out_h)]
    if rows_buffer is None:
        rows_buffer = t.new_empty(*t.shape[:-2], out_h, t.shape[-1])
    if len(row_taps) == 1:
        rows = rows_buffer.copy_(row_taps[0])
    else:
        rows = torch.add(row_taps[0], row_taps[1], out=rows_buffer)
    for tap in row_taps[2:]:
        rows += tap
    col_taps = [rows[..., tap] for tap in taps(1, out_w)]
    if len(col_taps) == 1:
        return out.copy_(col_taps[0])
    torch.add(col_taps[0], col_taps[1], out=out)
    for tap in col_taps[2:]:
        out += tap
    return out


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
    logits = -information.float() / temperature
    if pool_kernel_size is not None:
        kh, kw, sh, sw, ph, pw = _pool_geometry(pool_kernel_size, pool_stride, pool_padding)
        logits = _min_pool(logits, (kh, kw), (sh, sw), (ph, pw))
    batch = logits.shape[0]
    return torch.softmax(logits.reshape(batch, -1), dim=1).reshape(logits.shape)


def _min_pool(logits: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    """Min-pool (B, 1, H, W) maps; the samples are laid out as the channels of one channels_last image, which
    CPU max-pooling vectorises across (5x faster than pooling B one-channel planes)."""
    batch, _, height, width = logits.shape
    planes = logits.reshape(1, batch, height, width).neg().contiguous(memory_format=torch.channels_last)
    pooled = F.max_pool2d(planes, kernel, stride, padding).neg_()
    return pooled.contiguous().view(batch, 1, *pooled.shape[-2:])


def _num_draws(drop_rate: float, height: int, width: int) -> int:
    return int(drop_rate * height * width)


def keep_probability(distribution: torch.Tensor, drop_rate: float = 1.5) -> torch.Tensor:
    """Marginal keep probability ``(1 - P)^m``, ``m = int(drop_rate * H * W)``; same shape as ``P``."""
    num_draws = _num_draws(drop_rate, *distribution.shape[-2:])
    if num_draws == 0:
        return torch.ones_like(distribution)
    return torch.exp(num_draws * torch.log1p(-distribution.clamp(max=1.0)))


def _bernoulli_threshold(distribution: torch.Tensor, drop_rate: float) -> torch.Tensor:
    """``round(2^16 (1 - P)^m)``, int32 in [0, 65536]: an element is kept iff a uniform 16-bit integer is below it."""
    return torch.round(keep_probability(distribution, drop_rate) * 65536.0).to(torch.int32)


def _uniform_int16(shape: Tuple[int, ...], generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Independent uniforms on the 65,536 int16 values, 4 per 64-bit draw (4x fewer generator calls)."""
    # tracers and torch.compile's functionalisation cannot alias a dtype view; same law, one draw per element
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return torch.randint(-2 ** 15, 2 ** 15, shape, dtype=torch.int16, device=device, generator=generator)
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2 ** 63, 2 ** 63 - 1, generator=generator)
    return words.view(torch.int16)[:numel].view(shape)


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
    inverse-CDF sampler, :func:`_drop_drawn`, or on a CPU with the C++ kernel by the alias method).
    ``'bernoulli'`` keeps every element
    independently with the same marginal probability ``(1 - P)^m``, resolved to 2^-16: one 16-bit
    uniform per element. ``channels_last`` lays the mask out in that memory format.
    """
    if sampling not in SAMPLING_MODES:
        raise ConfigError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
    batch, _, height, width = distribution.shape
    if sampling == 'bernoulli':
        # keep iff u < round(65536 keep) - 32768 for u uniform on [-32768, 32767]
        threshold = _bernoulli_threshold(distribution, drop_rate) - 32768
        if channels_last:
            uniform = _uniform_int16((batch, height, width, num_channels), generator, distribution.device)
            return uniform.permute(0, 3, 1, 2) < threshold
        uniform = _uniform_int16((batch, num_channels, height, width), generator, distribution.device)
        return uniform < threshold
    num_draws = _num_draws(drop_rate, height, width)
    if _use_cpu_kernel(distribution):
        return multinomial_keep_cpu(distribution, num_channels, num_draws, channels_last, generator)
    mask = torch.ones(batch * num_channels * height * width, dtype=torch.bool, device=distribution.device)
    if num_draws > 0:
        _drop_drawn(mask, distribution.reshape(batch, -1), num_channels, num_draws, generator)
    mask = mask.view(batch, num_channels, height, width)
    return mask.contiguous(memory_format=torch.channels_last) if channels_last else mask


_CDF_BITS = 32  # the inverse CDF is resolved to 2^-32 (torch.multinomial: float32's 2^-24)
_TABLE_BITS = 16  # (<= 16) a draw's top bits index a table that settles it unless a CDF step lies in its bucket
_DRAWS_PER_CHUNK = 1 << 20


def _refines_every_draw(device: torch.device) -> bool:
    """Whether the exact sampler refines every draw rather than the few its table leaves unsettled: on a GPU
    and under a tracer or torch.compile, where selecting those few (``nonzero``) would read the device (a host
    sync, a graph break). On a CPU in eager the selection costs nothing and saves most of the searches."""
    return device.type != 'cpu' or torch.jit.is_tracing() or torch.compiler.is_compiling()


def _drop_drawn(mask: torch.Tensor, distribution: torch.Tensor, num_channels: int, num_draws: int,
                generator: Optional[torch.Generator]) -> None:
    """Zero in ``mask`` (B * C * N, flat) the positions of ``num_draws`` draws with replacement from
    ``distribution`` (B, N) for every (sample, channel) row: the released procedure, exactly.

    Inverse-CDF sampling on 32-bit uniforms ``u``, the CDF rounded to multiples of 2^-32 (position ``i`` is
    drawn with probability ``P_i`` to 2^-32): the position of ``u`` is the number of CDF steps ``<= u``.
    A table over the 2^16 buckets of ``u``'s top 16 bits answers every bucket that holds no CDF step
    (almost all draws: at most N - 1 of the 65,536 buckets hold one) from 16 random bits; a draw in a bucket
    with a step gets its low 16 bits and a binary search (every draw does on a GPU and under compile, which
    then see no data-dependent shape: :func:`_refines_every_draw`). On a CPU the draws are made a chunk of
    samples at a time, to bound the memory.
    """
    batch, size = distribution.shape
    device = distribution.device
    buckets = 1 << _TABLE_BITS
    low_bits = _CDF_BITS - _TABLE_BITS
    # the N - 1 inner CDF steps as integers in [0, 2^32]; the last step (1) is past every u
    cdf = distribution.double().cumsum(1)
    steps = torch.round(cdf / cdf[:, -1:] * float(1 << _CDF_BITS)).long()[:, :-1]
    step_bucket = (steps >> low_bits).clamp_max_(buckets)  # a step at 2^32 falls past the last bucket
    in_bucket = torch.zeros(batch, buckets + 1, dtype=torch.int32, device=device)
    in_bucket.scatter_add_(1, step_bucket, torch.ones(1, dtype=torch.int32, device=device).expand_as(step_bucket))
    in_bucket = in_bucket[:, :buckets]
    # a bucket without a step: every u in it lies past exactly the steps of the buckets before it
    table = (in_bucket.cumsum(1, dtype=torch.int32) - in_bucket).masked_fill_(in_bucket > 0, -1)
    # all samples' steps in one sorted sequence: sample b's are shifted by b * 2^32
    sample_shift = torch.arange(batch, device=device).unsqueeze(1)
    all_steps = (steps + (sample_shift << _CDF_BITS)).view(-1)
    draws = num_channels * num_draws
    channel_start = torch.arange(num_channels, device=device, dtype=torch.int64).repeat_interleave(num_draws) * size
    chunk = max(1, _DRAWS_PER_CHUNK // draws) if device.type == 'cpu' else batch
    for b0 in range(0, batch, chunk):
        b1 = min(batch, b0 + chunk)
        high = _uniform_int16(((b1 - b0), draws), generator, device).long().add_(1 << 15)  # u's top 16 bits
        position = torch.gather(table[b0:b1], 1, high >> (16 - _TABLE_BITS) if _TABLE_BITS < 16 else high)
        if _refines_every_draw(device):  # no data-dependent shape: every draw gets its low bits and a search
            sample = torch.arange(b0, b1, device=device).unsqueeze(1)
            low = _uniform_int16(high.shape, generator, device).long().add_(1 << 15)
            found = torch.searchsorted(all_steps, ((high << 16) + low + (sample << _CDF_BITS)).view(-1), right=True)
            found = found.view_as(high) - sample * (size - 1)
            position = torch.where(position < 0, found.to(position.dtype), position)
        else:
            unsettled = (position < 0).view(-1).nonzero().squeeze(1)
            if unsettled.numel():
                sample = unsettled // draws + b0
                low = _uniform_int16((unsettled.numel(),), generator, device).long().add_(1 << 15)
                u = (high.view(-1)[unsettled] << 16) + low + (sample << _CDF_BITS)
                found = torch.searchsorted(all_steps, u, right=True) - sample * (size - 1)
                position.view(-1)[unsettled] = found.to(position.dtype)
        flat = position.long().add_(channel_start).add_(
            (torch.arange(b0, b1, device=device) * (num_channels * size)).unsqueeze(1))
        mask.scatter_(0, flat.view(-1), False)


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
    if sampling not in SAMPLING_MODES:
        raise ConfigError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
    if eval_mode not in EVAL_MODES:
        raise ConfigError(f'eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}')
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


def _pool_geometry(kernel_size, stride, padding) -> Tuple[int, int, int, int, int, int]:
    """(kh, kw, sh, sw, ph, pw) of the max-pool after the conv; (1, 1, 1, 1, 0, 0) for none."""
    if kernel_size is None:
        return 1, 1, 1, 1, 0, 0
    pk = _pair(kernel_size, 'pool_kernel_size')
    ps = _pair(stride, 'pool_stride') if stride is not None else pk
    pp = _pair(padding, 'pool_padding')
    return (*pk, *ps, *pp)


def _kernel_pool(pool: Tuple[int, ...]) -> bool:
    """Whether the threshold kernel takes the pool; any other goes to max_pool2d, which names what is wrong."""
    kh, kw, sh, sw, ph, pw = pool
    return min(kh, kw, sh, sw) >= 1 and 0 <= ph <= kh // 2 and 0 <= pw <= kw // 2


def _pooled_size(information: torch.Tensor, pool: Tuple[int, ...]) -> Tuple[int, int]:
    """The drop distribution's grid: the self-information map's after the pool (as max_pool2d sizes it)."""
    kh, kw, sh, sw, ph, pw = pool
    height, width = information.shape[-2:]
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def _check_drop_grid(batch: int, size, y: torch.Tensor) -> None:
    if batch != y.shape[0] or tuple(size) != tuple(y.shape[-2:]):
        raise ValueError(
            f'the drop distribution has shape {(batch, 1, *size)} (batch, 1, H, W) but y has '
            f'shape {tuple(y.shape)}: check the conv and pool geometry given to InfoDrop')


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
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
        if eval_mode not in EVAL_MODES:
            raise ConfigError(f'eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}')
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
