"""InfoDrop's C++ kernels as torch ops on a CPU: the library's prototypes, its ABI check, and the ops.

The torch-ops path issues hundreds of small ops per call (pads, shifted differences, box-sum taps,
log-sum-exp), each a pass over memory and an OpenMP barrier; under a competing process every barrier
waits on the slowest core. ``csrc/info_drop_cpu.cpp`` does the same arithmetic in two passes whose
temporaries stay in a core's cache, and hands work out dynamically; the masks are drawn (from a
counter-based generator keyed by one draw of torch's) and applied in the same pass. :mod:`._cpu_build` builds
it on first use; this module opens it through ctypes.

**Signatures checked at load.** ctypes trusts the prototypes it is given: a library whose functions take
other arguments would be called with the wrong ones and corrupt memory silently. So the library exports
``infodrop_abi()``, a string of its functions' signatures, and :func:`load_kernel` accepts it only if that
string is the one :data:`PROTOTYPES` renders; a stale or foreign library is rebuilt, and one that still differs
is refused (InfoDrop then runs on its torch ops).

**Threads.** Each call passes ``torch.get_num_threads()`` as the kernel's thread count (1 for a library built
without OpenMP), so ``torch.set_num_threads`` governs the kernels too. Their parallel regions run on the OpenMP
runtime the process already has: built by GCC, the library asks for ``libgomp.so.1``, which on Linux is torch's
own copy (loaded first, same soname), so the kernels and torch's ops share one pool of threads.

Each kernel is a ``torch.library`` op (``torch.ops.timm_infodrop.*``, with a fake implementation for
tracing and the gradient ``grad * keep``), so eager, ``torch.compile(fullgraph=True)`` and export see one
opaque op. Without a compiler, on a GPU, or switched off (:func:`kernels_switched`, or
``TIMM_INFODROP_CPU_KERNEL=0`` in the environment), InfoDrop uses the torch-ops path (the same numbers to
float rounding; one warning says why when a build fails).
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import contextlib
import ctypes
import math
import os
import threading

import torch
from torch.profiler import record_function

from . import _cpu_build
from .info_drop_fast import rescale_factor

__all__ = [
    'kernel_enabled', 'kernels_switched', 'kernels_ready', 'load_kernel', 'rescale_factor', 'self_information_cpu',
    'bernoulli_threshold_cpu', 'bernoulli_keep_cpu', 'multinomial_keep_cpu', 'multiply_keep_cpu', 'draw_key',
    'maskable', 'PROTOTYPES', 'expected_abi', 'library_abi',
]

ENV_SWITCH = 'TIMM_INFODROP_CPU_KERNEL'
_lock = threading.Lock()
_loaded: Optional[ctypes.CDLL] = None
_tried = False
_openmp = False  # whether the loaded library runs on OpenMP's threads


_switch: Optional[bool] = None  # kernels_switched's setting; None: the environment's default


def kernel_enabled() -> bool:
    """Whether InfoDrop may use the C++ kernels: :func:`kernels_switched`'s setting inside one, else
    ``TIMM_INFODROP_CPU_KERNEL`` unset or not ``0`` (read, never written)."""
    if _switch is not None:
        return _switch
    return os.environ.get(ENV_SWITCH, '1').strip().lower() not in ('0', 'false', 'no', 'off')


@contextlib.contextmanager
def kernels_switched(enabled: bool) -> Iterator[None]:
    """Switch the kernels on or off inside the block (a process-wide setting), and back after it.

    A model compiled inside the block keeps the path it was compiled with (torch.compile reads the
    setting once, when it traces)."""
    global _switch
    saved, _switch = _switch, bool(enabled)
    try:
        yield
    finally:
        _switch = saved


_I32, _I64, _U64, _F32, _PTR = ctypes.c_int, ctypes.c_int64, ctypes.c_uint64, ctypes.c_float, ctypes.c_void_p
# name: (result, arguments), as csrc/info_drop_cpu.cpp declares them (its infodrop_abi() string says the same)
PROTOTYPES: Dict[str, Tuple[Optional[type], Sequence[type]]] = {
    'infodrop_abi': (ctypes.c_char_p, []),
    'infodrop_self_information_scratch': (_I64, [_I64] * 6),
    'infodrop_self_information': (None, [_PTR, _I64, _I64, _I64, _I64, _PTR, _I64, _I64, *([_I64] * 8), _I64, _I64,
                                         _F32, _F32, _PTR, _PTR, _PTR, _I32]),
    'infodrop_bernoulli_threshold': (_I32, [_PTR, *([_I64] * 11), _F32, _I64, _PTR, _PTR, _I32]),
    'infodrop_bernoulli_keep': (None, [_PTR, _PTR, _PTR, _PTR, _I64, _I64, _I64, _I32, _U64, _F32, _I32]),
    'infodrop_multiply_keep': (None, [_PTR, _PTR, _PTR, _I64, _F32, _I32]),
    'infodrop_multinomial_workspace': (_I64, [_I64, _I64, _I32]),
    'infodrop_multinomial_keep': (None, [_PTR, _PTR, _I64, _I64, _I64, _I64, _I32, _U64, _PTR, _I32]),
}
_CODES = {_I32: 'i32', _I64: 'i64', _U64: 'u64', _F32: 'f32', _PTR: 'ptr', ctypes.c_char_p: 'ptr', None: 'void'}


def expected_abi() -> str:
    """The signatures :data:`PROTOTYPES` declares, in the form of the library's ``infodrop_abi()``."""
    return ''.join(f"{name}({','.join(_CODES[a] for a in arguments)}) -> {_CODES[result]}\n"
                   for name, (result, arguments) in PROTOTYPES.items())


def library_abi(library: ctypes.CDLL) -> Optional[str]:
    """The signatures ``library`` says it exports (its ``infodrop_abi()``), or None for a library without the
    symbol (built before it existed, or not ours)."""
    try:
        function = library.infodrop_abi
    except AttributeError:
        return None
    function.argtypes, function.restype = [], ctypes.c_char_p
    return function().decode('ascii')


def _verify_and_declare(library: ctypes.CDLL) -> Optional[str]:
    """Declare the prototypes on ``library`` if its signatures are :data:`PROTOTYPES`'; else say how it differs."""
    exported = library_abi(library)
    if exported != expected_abi():
        if exported is None:
            return 'it exports no infodrop_abi()'
        differing = sorted(set(exported.splitlines()) ^ set(expected_abi().splitlines()))
        return f'its signatures differ from the prototypes: {differing}'
    for name, (result, arguments) in PROTOTYPES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = list(arguments), result
    return None


def load_kernel() -> Optional[ctypes.CDLL]:
    """The built library, building it on the first call; None where it is switched off or cannot build (or
    its signatures do not match :data:`PROTOTYPES`)."""
    global _loaded, _tried, _openmp
    if not kernel_enabled():
        return None
    with _lock:
        if not _tried:
            _tried = True
            built = _cpu_build.build_library(_verify_and_declare)
            _loaded, _openmp = (built.library, built.openmp) if built is not None else (None, False)
    return _loaded


def _threads() -> int:
    return torch.get_num_threads() if _openmp else 1


@torch.compiler.assume_constant_result
def kernels_ready() -> bool:
    """Whether the kernels are switched on and built (building them on the first call); torch.compile
    reads this once, when it traces."""
    return load_kernel() is not None


@torch.library.custom_op('timm_infodrop::self_information', mutates_args=())
def _self_information_op(
        x: torch.Tensor, offsets: torch.Tensor, radius: int, out_h: int, out_w: int, kernel: List[int],
        stride: List[int], padding: List[int], dilation: List[int], bandwidth: float) -> torch.Tensor:
    library = load_kernel()
    x = x.detach().to(torch.float32).contiguous()
    batch, channels, height, width = x.shape
    information = torch.empty(batch, 1, out_h, out_w, dtype=torch.float32)
    rescale = float(rescale_factor(x))  # a CPU tensor, inside an opaque op: no device sync, no graph break
    if not math.isfinite(rescale):
        return information.fill_(math.nan)  # NaN in, NaN out
    offset_table = offsets.to(torch.int64).contiguous()
    distance = torch.empty(batch, offset_table.shape[0], out_h, out_w, dtype=torch.float32)
    threads = _threads()
    # scratch (each thread's padded sample and maps) as a torch tensor: the allocator and profiler see it
    scratch = torch.empty(threads * library.infodrop_self_information_scratch(
        channels, height, width, padding[0], padding[1], radius), dtype=torch.float32)
    with record_function('timm_infodrop::self_information_cpu'):  # a named op in torch.profiler's tables
        library.infodrop_self_information(
            x.data_ptr(), batch, channels, height, width, offset_table.data_ptr(), offset_table.shape[0], radius,
            kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
            out_h, out_w, rescale, bandwidth, distance.data_ptr(), information.data_ptr(),
            scratch.data_ptr(), threads)
    return information


@_self_information_op.register_fake
def _(x, offsets, radius, out_h, out_w, kernel, stride, padding, dilation, bandwidth):
    return x.new_empty(x.shape[0], 1, out_h, out_w, dtype=torch.float32)


def self_information_cpu(
        x: torch.Tensor, offsets: torch.Tensor, radius: int,
        out_size: Tuple[int, int], kernel: Tuple[int, int], stride: Tuple[int, int],
        padding: Tuple[int, int], dilation: Tuple[int, int], bandwidth: float,
) -> torch.Tensor:
    """``-log q`` (B, 1, Ho, Wo), float32, by the C++ kernel (the caller has checked :func:`kernels_ready`);
    NaN everywhere for an input holding NaN or Inf.

    ``x`` is the conv's input on the CPU (any floating dtype, any layout; a float32 contiguous copy is
    made only where needed), ``offsets`` (S, 2) int64; the other arguments are those of
    ``info_drop_fast._patch_distances``. One opaque op (``torch.ops.timm_infodrop.self_information``) to
    eager, torch.compile and export.
    """
    return _self_information_op(x, offsets, radius, out_size[0], out_size[1], list(kernel), list(stride),
                                list(padding), list(dilation), float(bandwidth))


def draw_key(generator: Optional[torch.Generator]) -> torch.Tensor:
    """One 64-bit key (a 0-dim int64 CPU tensor) for the kernels' counter-based generator, drawn from
    ``generator`` (torch's default CPU generator when None), so that ``torch.manual_seed`` makes the masks
    reproducible. A tensor, so that drawing it reads nothing on the host outside the kernels' ops."""
    return torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64, generator=generator)


def _key(key: torch.Tensor) -> int:
    return int(key) % 2 ** 64


def _channels_last(y: torch.Tensor) -> Optional[bool]:
    """The memory order the kernels read (False: b, c, p; True: b, p, c), or None for any other layout."""
    if y.is_contiguous():
        return False
    if y.is_contiguous(memory_format=torch.channels_last):
        return True
    return None


def maskable(y: torch.Tensor) -> bool:
    """Whether the mask kernels, once built, take ``y``: float32 on a CPU, contiguous or channels_last."""
    return y.device.type == 'cpu' and y.dtype == torch.float32 and y.dim() == 4 and _channels_last(y) is not None


@torch.library.custom_op('timm_infodrop::bernoulli_threshold', mutates_args=())
def _bernoulli_threshold_op(information: torch.Tensor, temperature: float, pool: List[int], out_h: int, out_w: int,
                            num_draws: int) -> Tuple[torch.Tensor, torch.Tensor]:
    library = load_kernel()
    information = information.to(torch.float32).contiguous()
    batch, height, width = information.shape[0], information.shape[-2], information.shape[-1]
    threshold = torch.empty(batch, out_h, out_w, dtype=torch.int32)
    work = torch.empty(batch, out_h, out_w, dtype=torch.float32)
    with record_function('timm_infodrop::bernoulli_threshold_cpu'):
        poisoned = library.infodrop_bernoulli_threshold(
            information.data_ptr(), batch, height, width, *pool, out_h, out_w, temperature, num_draws,
            work.data_ptr(), threshold.data_ptr(), _threads())
    return threshold, torch.tensor(math.nan if poisoned else 0.0, dtype=torch.float32)


@_bernoulli_threshold_op.register_fake
def _(information, temperature, pool, out_h, out_w, num_draws):
    return information.new_empty(information.shape[0], out_h, out_w, dtype=torch.int32), information.new_empty(())


def bernoulli_threshold_cpu(information: torch.Tensor, temperature: float, pool: Tuple[int, ...],
                            out_size: Tuple[int, int], num_draws: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(threshold, poison)`` from a self-information map (B, 1, H, W): the int32 (B, Ho, Wo) thresholds of
    :func:`bernoulli_keep_cpu` (``round(2^16 (1 - P)^m)``, P the softmax of ``-I / T`` min-pooled with ``pool``
    = (kh, kw, sh, sw, ph, pw) onto ``out_size``), and a 0-dim float32 that is NaN when the map holds NaN (NaN
    in, NaN out), else 0. One op for what the torch ops do in a dozen (``info_drop.drop_distribution`` and
    ``info_drop.keep_probability``), the same numbers to a few ulp of P."""
    return _bernoulli_threshold_op(information, float(temperature), list(pool), out_size[0], out_size[1], num_draws)


@torch.library.custom_op('timm_infodrop::bernoulli_keep', mutates_args=())
def _bernoulli_keep_op(y: torch.Tensor, threshold: torch.Tensor, key: torch.Tensor, offset: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    library = load_kernel()
    batch, channels, height, width = y.shape
    threshold = threshold.to(torch.int32).contiguous()
    out = torch.empty_like(y)
    keep = torch.empty_like(y, dtype=torch.bool)
    library.infodrop_bernoulli_keep(
        y.data_ptr(), out.data_ptr(), keep.data_ptr(), threshold.data_ptr(), batch, channels, height * width,
        int(_channels_last(y)), _key(key), float(offset), _threads())
    return out, keep


@_bernoulli_keep_op.register_fake
def _(y, threshold, key, offset):
    return torch.empty_like(y), torch.empty_like(y, dtype=torch.bool)


def _save_drawn_keep(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.set_materialize_grads(False)  # the keep output takes no gradient: no zeros of y's size made for it


def _masked_gradient(grad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``grad * keep`` in one pass over ``grad`` where the kernel takes it (no float copy of the bool mask)."""
    if maskable(grad):
        return _multiply_keep_op(grad, keep, grad.new_zeros(()))
    return grad * keep


def _drawn_keep_backward(ctx, grad, grad_keep):
    keep, = ctx.saved_tensors
    return None if grad is None else _masked_gradient(grad, keep), None, None, None


def bernoulli_keep_cpu(y: torch.Tensor, threshold: torch.Tensor, generator: Optional[torch.Generator],
                       offset: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(y * keep + offset, keep)``: each element of ``y`` (B, C, H, W; see :func:`maskable`) kept iff 16 random
    bits fall below ``threshold`` (B, H, W) int32 in [0, 65536]; ``keep`` is bool, laid out as ``y``. ``offset``
    (a 0-dim tensor, default 0) is 0, or NaN to poison the output, added in the same pass. The gradient with
    respect to ``y`` is ``grad * keep``."""
    return _bernoulli_keep_op(y, threshold, draw_key(generator), y.new_zeros(()) if offset is None else offset)


@torch.library.custom_op('timm_infodrop::multinomial_keep', mutates_args=())
def _multinomial_keep_op(distribution: torch.Tensor, num_channels: int, num_draws: int, channels_last: bool,
                         key: torch.Tensor) -> torch.Tensor:
    library = load_kernel()
    batch, _, height, width = distribution.shape
    keep = torch.ones((batch, num_channels, height, width), dtype=torch.bool)
    if channels_last:
        keep = keep.contiguous(memory_format=torch.channels_last)
    table = distribution.to(torch.float32).contiguous()
    threads = _threads()
    size = library.infodrop_multinomial_workspace(batch, height * width, threads)  # bytes
    workspace = torch.empty((size + 7) // 8, dtype=torch.float64)  # 8-byte aligned
    with record_function('timm_infodrop::multinomial_keep_cpu'):
        library.infodrop_multinomial_keep(
            table.data_ptr(), keep.data_ptr(), batch, num_channels, height * width, num_draws, int(channels_last),
            _key(key), workspace.data_ptr(), threads)
    return keep


@_multinomial_keep_op.register_fake
def _(distribution, num_channels, num_draws, channels_last, key):
    keep = distribution.new_empty((distribution.shape[0], num_channels, *distribution.shape[-2:]), dtype=torch.bool)
    return keep.contiguous(memory_format=torch.channels_last) if channels_last else keep


def multinomial_keep_cpu(distribution: torch.Tensor, num_channels: int, num_draws: int, channels_last: bool,
                         generator: Optional[torch.Generator]) -> torch.Tensor:
    """Keep mask (B, C, H, W) bool after ``num_draws`` draws with replacement from ``distribution``
    (B, 1, H, W) per (sample, channel) row cleared the drawn positions (the alias method)."""
    return _multinomial_keep_op(distribution, num_channels, num_draws, channels_last, draw_key(generator))


@torch.library.custom_op('timm_infodrop::multiply_keep', mutates_args=())
def _multiply_keep_op(y: torch.Tensor, keep: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    library = load_kernel()
    keep = keep.contiguous(memory_format=torch.channels_last if _channels_last(y) else torch.contiguous_format)
    out = torch.empty_like(y)
    library.infodrop_multiply_keep(y.data_ptr(), keep.data_ptr(), out.data_ptr(), y.numel(), float(offset),
                                   _threads())
    return out


@_multiply_keep_op.register_fake
def _(y, keep, offset):
    return torch.empty_like(y)


def _save_given_keep(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _given_keep_backward(ctx, grad):
    keep, = ctx.saved_tensors
    return _masked_gradient(grad, keep), None, None


_bernoulli_keep_op.register_autograd(_drawn_keep_backward, setup_context=_save_drawn_keep)
_multiply_keep_op.register_autograd(_given_keep_backward, setup_context=_save_given_keep)


def multiply_keep_cpu(y: torch.Tensor, keep: torch.Tensor, offset: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y * keep + offset`` for ``y`` that :func:`maskable` accepts and a bool ``keep`` of the same shape
    (any layout); ``offset`` as in :func:`bernoulli_keep_cpu`. The gradient with respect to ``y`` is
    ``grad * keep``."""
    return _multiply_keep_op(y, keep, y.new_zeros(()) if offset is None else offset)
