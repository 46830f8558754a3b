"""InfoDrop's self-information and mask sampling as C++ kernels on a CPU, built on first use.

The torch-ops path issues hundreds of small ops per call (pads, shifted differences, box-sum taps,
log-sum-exp), each a pass over memory and an OpenMP barrier; under a competing process every barrier
waits on the slowest core. ``csrc/info_drop_cpu.cpp`` does the same arithmetic in two passes whose
temporaries stay in a core's cache, and hands work out dynamically; the masks are drawn (from a
counter-based generator keyed by one draw of torch's) and applied in the same pass. It is compiled
once per source, compiler and CPU with the system's C++ compiler (``$CXX``, else ``c++``; about a
second) into ``kernels/`` of the package's cache (``$TIMM_INFODROP_CACHE``, default
``~/.cache/timm_infodrop``) and loaded with ctypes.

Without a compiler, or with ``TIMM_INFODROP_CPU_KERNEL=0``, InfoDrop uses the torch-ops path
(the same numbers to float rounding; one warning says why when a build fails).
"""
from typing import Iterator, Optional, Sequence, Tuple

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch.profiler import record_function

from ..io import cache_root

__all__ = [
    'kernel_enabled', 'kernels_switched', 'load_kernel', 'self_information_cpu', 'bernoulli_keep_cpu', 'multinomial_keep_cpu',
    'multiply_keep_cpu', 'draw_key', 'maskable',
]

_SOURCE = Path(__file__).with_name('csrc') / 'info_drop_cpu.cpp'
_FLAGS = ('-O3', '-std=c++17', '-fopenmp', '-fPIC', '-shared')
_NATIVE = '-march=native'
ENV_SWITCH = 'TIMM_INFODROP_CPU_KERNEL'
_lock = threading.Lock()
_loaded: Optional[ctypes.CDLL] = None
_tried = False


def kernel_enabled() -> bool:
    """Whether InfoDrop may use the C++ kernel (``TIMM_INFODROP_CPU_KERNEL`` unset or not ``0``)."""
    return os.environ.get(ENV_SWITCH, '1').strip().lower() not in ('0', 'false', 'no', 'off')


@contextlib.contextmanager
def kernels_switched(enabled: bool) -> Iterator[None]:
    """Switch the kernels on or off (``TIMM_INFODROP_CPU_KERNEL``) inside the block, and back after it."""
    saved = os.environ.get(ENV_SWITCH)
    os.environ[ENV_SWITCH] = '1' if enabled else '0'
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ENV_SWITCH, None)
        else:
            os.environ[ENV_SWITCH] = saved


def _cache_dir() -> Path:
    return cache_root() / 'kernels'


def _cpu_identity() -> str:
    """The CPU's model and feature flags: a library built with -march=native runs only where they match."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        return platform.processor()
    wanted = ('model name', 'flags', 'Features', 'CPU part')
    return '|'.join(dict.fromkeys(line for line in lines if line.split(':')[0].strip() in wanted))


def _compile(compiler: str, flags: Sequence[str], target: Path) -> Optional[str]:
    """Build the library at ``target`` (atomically); returns the compiler's complaint, or None on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(suffix='.so', dir=target.parent)
    os.close(handle)
    try:
        done = subprocess.run([compiler, *flags, str(_SOURCE), '-o', scratch], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            return done.stderr.strip()[-2000:] or f'{compiler} exited with {done.returncode}'
        os.replace(scratch, target)
        return None
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def _build() -> Optional[ctypes.CDLL]:
    compiler = os.environ.get('CXX') or 'c++'
    if shutil.which(compiler) is None:
        warnings.warn(f'InfoDrop: no C++ compiler ({compiler!r}) on PATH; using the slower torch-ops path '
                      f'(set CXX, or {ENV_SWITCH}=0 to silence this)', RuntimeWarning, stacklevel=3)
        return None
    source = _SOURCE.read_bytes()
    complaints = []
    for flags in ((*_FLAGS, _NATIVE), _FLAGS):
        key = hashlib.sha256(b'\0'.join([source, compiler.encode(), ' '.join(flags).encode(),
                                         platform.machine().encode(), _cpu_identity().encode()])).hexdigest()[:20]
        target = _cache_dir() / f'info_drop_cpu-{key}.so'
        if not target.exists():
            complaint = _compile(compiler, flags, target)
            if complaint is not None:
                complaints.append(complaint)
                continue
        try:
            return _declare(ctypes.CDLL(str(target)))
        except OSError as error:
            complaints.append(str(error))
    warnings.warn(f'InfoDrop: the C++ kernel did not build ({complaints[-1][-500:]}); using the slower '
                  f'torch-ops path ({ENV_SWITCH}=0 silences this)', RuntimeWarning, stacklevel=3)
    return None


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    library.infodrop_self_information_scratch.argtypes = [i64] * 6
    library.infodrop_self_information_scratch.restype = i64
    library.infodrop_self_information.argtypes = [
        ptr, i64, i64, i64, i64, ptr, i64, i64, *([i64] * 8), i64, i64, ctypes.c_float, ctypes.c_float,
        ptr, ptr, ptr, ctypes.c_int]
    library.infodrop_self_information.restype = None
    u64, c_int = ctypes.c_uint64, ctypes.c_int
    library.infodrop_bernoulli_keep.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, c_int, u64, c_int]
    library.infodrop_bernoulli_keep.restype = None
    library.infodrop_multiply_keep.argtypes = [ptr, ptr, ptr, i64, c_int]
    library.infodrop_multiply_keep.restype = None
    library.infodrop_multinomial_workspace.argtypes = [i64, i64, c_int]
    library.infodrop_multinomial_workspace.restype = i64
    library.infodrop_multinomial_keep.argtypes = [ptr, ptr, i64, i64, i64, i64, c_int, u64, ptr, c_int]
    library.infodrop_multinomial_keep.restype = None
    return library


def load_kernel() -> Optional[ctypes.CDLL]:
    """The built library, building it on the first call; None where it is switched off or cannot build."""
    global _loaded, _tried
    if not kernel_enabled():
        return None
    with _lock:
        if not _tried:
            _tried = True
            _loaded = _build()
    return _loaded


def self_information_cpu(
        x: torch.Tensor, rescale: float, offsets: Sequence[Tuple[int, int]], radius: int,
        out_size: Tuple[int, int], kernel: Tuple[int, int], stride: Tuple[int, int],
        padding: Tuple[int, int], dilation: Tuple[int, int], bandwidth: float,
) -> torch.Tensor:
    """``-log q`` (B, 1, Ho, Wo), float32, by the C++ kernel (the caller has checked :func:`load_kernel`).

    ``x`` is the conv's input on the CPU (any floating dtype, any layout; a float32 contiguous copy is
    made only where needed); the arguments are those of ``info_drop._patch_distances``.
    """
    library = load_kernel()
    x = x.detach().to(torch.float32).contiguous()
    batch, channels, height, width = x.shape
    offset_table = torch.tensor(offsets, dtype=torch.int64).reshape(-1, 2).contiguous()
    distance = torch.empty(batch, len(offsets), *out_size, dtype=torch.float32)
    information = torch.empty(batch, 1, *out_size, dtype=torch.float32)
    threads = torch.get_num_threads()
    # scratch (each thread's padded sample and maps) as a torch tensor: the allocator and profiler see it
    scratch = torch.empty(threads * library.infodrop_self_information_scratch(
        channels, height, width, padding[0], padding[1], radius), dtype=torch.float32)
    with record_function('timm_infodrop::self_information_cpu'):  # a named op in torch.profiler's tables
        library.infodrop_self_information(
            x.data_ptr(), batch, channels, height, width, offset_table.data_ptr(), len(offsets), radius,
            kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
            out_size[0], out_size[1], rescale, bandwidth, distance.data_ptr(), information.data_ptr(),
            scratch.data_ptr(), threads)
    return information


def draw_key(generator: Optional[torch.Generator]) -> int:
    """One 64-bit key for the kernels' counter-based generator, drawn from ``generator`` (torch's default
    CPU generator when None), so that ``torch.manual_seed`` makes the masks reproducible."""
    word = torch.empty((), dtype=torch.int64).random_(-2 ** 63, 2 ** 63 - 1, generator=generator)
    return int(word) % 2 ** 64


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


def bernoulli_keep_cpu(y: torch.Tensor, threshold: torch.Tensor, generator: Optional[torch.Generator]
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(y * keep, keep)``: each element of ``y`` (B, C, H, W; see :func:`maskable`) kept iff 16 random bits
    fall below ``threshold`` (B, H, W) int32 in [0, 65536]; ``keep`` is bool, laid out as ``y``."""
    library = load_kernel()
    batch, channels, height, width = y.shape
    threshold = threshold.to(torch.int32).contiguous()
    out = torch.empty_like(y)
    keep = torch.empty_like(y, dtype=torch.uint8)
    library.infodrop_bernoulli_keep(
        y.data_ptr(), out.data_ptr(), keep.data_ptr(), threshold.data_ptr(), batch, channels, height * width,
        int(_channels_last(y)), draw_key(generator), torch.get_num_threads())
    return out, keep.view(torch.bool)


def multinomial_keep_cpu(distribution: torch.Tensor, num_channels: int, num_draws: int, channels_last: bool,
                         generator: Optional[torch.Generator]) -> torch.Tensor:
    """Keep mask (B, C, H, W) bool after ``num_draws`` draws with replacement from ``distribution``
    (B, 1, H, W) per (sample, channel) row cleared the drawn positions (the alias method)."""
    library = load_kernel()
    batch, _, height, width = distribution.shape
    shape = (batch, num_channels, height, width)
    keep = torch.ones(shape, dtype=torch.uint8)
    if channels_last:
        keep = keep.contiguous(memory_format=torch.channels_last)
    table = distribution.to(torch.float32).contiguous()
    threads = torch.get_num_threads()
    size = library.infodrop_multinomial_workspace(batch, height * width, threads)  # bytes
    workspace = torch.empty((size + 7) // 8, dtype=torch.float64)  # 8-byte aligned
    key = draw_key(generator)
    with record_function('timm_infodrop::multinomial_keep_cpu'):
        library.infodrop_multinomial_keep(
            table.data_ptr(), keep.data_ptr(), batch, num_channels, height * width, num_draws, int(channels_last),
            key, workspace.data_ptr(), threads)
    return keep.view(torch.bool)


def multiply_keep_cpu(y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``y * keep`` for ``y`` that :func:`maskable` accepts and a bool ``keep`` of the same shape and layout."""
    library = load_kernel()
    keep = keep.contiguous(memory_format=torch.channels_last if _channels_last(y) else torch.contiguous_format)
    out = torch.empty_like(y)
    library.infodrop_multiply_keep(y.data_ptr(), keep.data_ptr(), out.data_ptr(), y.numel(),
                                   torch.get_num_threads())
    return out
