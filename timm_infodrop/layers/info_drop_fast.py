"""InfoDrop's torch-ops path: the numbers of :mod:`.info_drop_reference`, fast, on any device.

GPUs, TorchScript tracing and CPUs without the C++ kernels (:mod:`._cpu_kernel`) take this path; it computes
the reference's numbers to float rounding (in float32) and draws masks of the same law. What makes it fast, by
step (docs/layers.md, "InfoDrop"):

2-4. the patch distances as per-pixel squared differences of shifted views and a separable box sum with the
     conv's geometry, a batch chunk at a time on a CPU (temporaries in cache), then a log-sum-exp in place;
     the input rescaled where squares would leave float32's range (``-log q`` is scale-invariant);
5.   ``-I / T`` min-pooled as one channels_last max-pool over the samples;
6.   Bernoulli masks from 16-bit uniforms, four per 64-bit draw; the exact (multinomial) sampler by inverse CDF
     on 32-bit uniforms, settled from a table over their top 16 bits for almost every draw.

Nothing here reads a device tensor on the host: offsets and the rescale factor stay tensors, so a GPU step does
not wait and ``torch.compile(fullgraph=True)`` traces it. Callers check the arguments (:mod:`._checks`).
"""
from typing import Optional, Tuple

import math

import torch
import torch.nn.functional as F

from ._checks import Pool

__all__ = [
    'rescale_factor', 'self_information_torch', 'drop_distribution_torch', 'num_draws', 'keep_probability_torch',
    'bernoulli_threshold', 'bernoulli_mask_torch', 'multinomial_mask_torch',
]

# |x| for which a window's sum of squared differences stays a normal float32 number without rescaling
_SAFE_PEAK = (1e-15, 1e15)


def rescale_factor(x: torch.Tensor) -> torch.Tensor:
    """The factor (0-dim float32 tensor on ``x``'s device) that keeps ``x``'s squared differences in
    float32's normal range: 1 where its peak ``|x|`` is in ``_SAFE_PEAK`` or 0, else ``1 / peak`` (``-log q``
    is invariant to the scale of ``x``). NaN for an input holding NaN, 0 for one holding Inf (and so NaN
    downstream): computed on the device, read by no one on the host. The C++ kernels use it too."""
    low, high = torch.aminmax(x.detach())  # no |x| copy of the input
    peak = torch.maximum(-low, high).float()
    safe = ((peak >= _SAFE_PEAK[0]) & (peak <= _SAFE_PEAK[1])) | (peak == 0)
    return torch.where(safe, torch.ones_like(peak), peak.reciprocal())


# --- steps 2-4: the self-information ---------------------------------------------------------------------------

def self_information_torch(x: torch.Tensor, offsets: torch.Tensor, radius: int, out_size: Tuple[int, int],
                           kernel: Tuple[int, int], stride: Tuple[int, int], padding: Tuple[int, int],
                           dilation: Tuple[int, int], bandwidth: float) -> torch.Tensor:
    """``-log q`` (B, 1, Ho, Wo), float32, of ``x`` (B, C, H, W, any floating dtype) for the (S, 2) int64
    ``offsets`` on ``x``'s device; the caller runs it under ``no_grad`` with autocast off."""
    # -log q is invariant to the scale of x; rescaled where squares would leave float32's range
    distance = _patch_distances(x.detach(), rescale_factor(x), offsets, radius, out_size, kernel, stride, padding,
                                dilation)
    scale = (2.0 * bandwidth ** 2) * distance.mean().clamp_min(torch.finfo(torch.float32).tiny)
    # log q = logsumexp_o(-d_o / scale) - log S, in place (no second (B, S, Ho, Wo) tensor)
    distance.div_(-scale)
    top = distance.amax(1, keepdim=True)
    log_q = distance.sub_(top).exp_().sum(1, keepdim=True).log_().add_(top).sub_(math.log(len(offsets)))
    return log_q.neg_().clamp_min_(0.0)


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


# --- step 5: the drop distribution -----------------------------------------------------------------------------

def drop_distribution_torch(information: torch.Tensor, temperature: float, pool: Optional[Pool]) -> torch.Tensor:
    """``softmax_j(-I / T)`` per sample, float32 (B, 1, H', W'), ``-I / T`` min-pooled first with ``pool``
    (kh, kw, sh, sw, ph, pw) when one is given."""
    logits = -information.float() / temperature
    if pool is not None:
        kh, kw, sh, sw, ph, pw = pool
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


# --- step 6: the mask -------------------------------------------------------------------------------------------

def num_draws(drop_rate: float, height: int, width: int) -> int:
    """``m = int(r * H * W)``: the draws per (sample, channel) row of the masked tensor."""
    return int(drop_rate * height * width)


def keep_probability_torch(distribution: torch.Tensor, drop_rate: float) -> torch.Tensor:
    """Marginal keep probability ``(1 - P)^m``, ``m = int(drop_rate * H * W)``; same shape as ``P``."""
    num_draws_ = num_draws(drop_rate, *distribution.shape[-2:])
    if num_draws_ == 0:
        return torch.ones_like(distribution)
    return torch.exp(num_draws_ * torch.log1p(-distribution.clamp(max=1.0)))


def bernoulli_threshold(distribution: torch.Tensor, drop_rate: float) -> torch.Tensor:
    """``round(2^16 (1 - P)^m)``, int32 in [0, 65536]: an element is kept iff a uniform 16-bit integer is below it."""
    return torch.round(keep_probability_torch(distribution, drop_rate) * 65536.0).to(torch.int32)


def _uniform_int16(shape: Tuple[int, ...], generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Independent uniforms on the 65,536 int16 values, 4 per 64-bit draw (4x fewer generator calls)."""
    # tracers and torch.compile's functionalisation cannot alias a dtype view; same law, one draw per element
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return torch.randint(-2 ** 15, 2 ** 15, shape, dtype=torch.int16, device=device, generator=generator)
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2 ** 63, 2 ** 63 - 1, generator=generator)
    return words.view(torch.int16)[:numel].view(shape)


def bernoulli_mask_torch(distribution: torch.Tensor, num_channels: int, drop_rate: float,
                         generator: Optional[torch.Generator], channels_last: bool) -> torch.Tensor:
    """Keep mask (B, num_channels, H, W), bool: every element kept independently with probability
    ``(1 - P)^m`` resolved to 2^-16 (one 16-bit uniform per element), laid out channels_last if asked."""
    batch, _, height, width = distribution.shape
    # keep iff u < round(65536 keep) - 32768 for u uniform on [-32768, 32767]
    threshold = bernoulli_threshold(distribution, drop_rate) - 32768
    if channels_last:
        uniform = _uniform_int16((batch, height, width, num_channels), generator, distribution.device)
        return uniform.permute(0, 3, 1, 2) < threshold
    uniform = _uniform_int16((batch, num_channels, height, width), generator, distribution.device)
    return uniform < threshold


def multinomial_mask_torch(distribution: torch.Tensor, num_channels: int, drop_rate: float,
                           generator: Optional[torch.Generator], channels_last: bool) -> torch.Tensor:
    """Keep mask (B, num_channels, H, W), bool: ``m`` draws with replacement from ``P`` per (sample, channel)
    row cleared the drawn positions (the released law, by :func:`_drop_drawn`), laid out channels_last if asked."""
    batch, _, height, width = distribution.shape
    num_draws_ = num_draws(drop_rate, height, width)
    mask = torch.ones(batch * num_channels * height * width, dtype=torch.bool, device=distribution.device)
    if num_draws_ > 0:
        _drop_drawn(mask, distribution.reshape(batch, -1), num_channels, num_draws_, generator)
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
