"""Build InfoDrop's C++ kernels (``csrc/info_drop_cpu.cpp``) into a shared library on first use, and open it.

The library is compiled with the system's C++ compiler (``$CXX``, else ``c++``; about a second) once per
source, compiler, flags and CPU, into ``kernels/`` of the package's cache (``$TIMM_INFODROP_CACHE``, default
``~/.cache/timm_infodrop``): the file name hashes all four, so an edited source or another machine's CPU never
loads a stale build. Ranks of one machine that start together build once (a file lock beside the library).
Flag sets are tried best first: a compiler that refuses ``-march=native`` or ``-fopenmp`` (stock macOS clang)
gets the next one, the latter a one-thread library (one warning says so).

A library is handed out only after the caller's ``verify`` accepts it (:mod:`._cpu_kernel` compares the
signatures the library exports with its ctypes prototypes); a cached library it refuses is rebuilt once, and a
fresh build it refuses is not used. Every failure ends in one ``RuntimeWarning`` and ``None``: InfoDrop then
runs on its torch ops.
"""
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import _ctypes
from filelock import FileLock

from ..io import cache_root

__all__ = ['SOURCE', 'Built', 'build_library', 'library_path', 'flag_sets', 'compiler']

SOURCE = Path(__file__).with_name('csrc') / 'info_drop_cpu.cpp'
_FLAGS = ('-O3', '-std=c++17', '-fopenmp', '-fPIC', '-shared')
_NATIVE = '-march=native'
_SILENCE = 'TIMM_INFODROP_CPU_KERNEL=0 silences this'


class Built(NamedTuple):
    """An opened library and whether it runs its parallel regions on OpenMP's threads."""
    library: ctypes.CDLL
    openmp: bool


def compiler() -> str:
    """The C++ compiler used: ``$CXX``, else ``c++``."""
    return os.environ.get('CXX') or 'c++'


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


def flag_sets() -> List[Tuple[Tuple[str, ...], bool]]:
    """Flag sets to try, best first, each with whether it links OpenMP: a compiler that refuses
    ``-fopenmp`` (stock macOS clang) or ``-march=native`` gets the next set."""
    plain = tuple(flag for flag in _FLAGS if flag != '-fopenmp')
    return [((*_FLAGS, _NATIVE), True), (_FLAGS, True), ((*plain, _NATIVE), False), (plain, False)]


def library_path(compiler_name: str, flags: Sequence[str]) -> Path:
    """Where the library built from today's source by ``compiler_name`` with ``flags`` on this CPU lives."""
    key = hashlib.sha256(b'\0'.join([SOURCE.read_bytes(), compiler_name.encode(), ' '.join(flags).encode(),
                                     platform.machine().encode(), _cpu_identity().encode()])).hexdigest()[:20]
    return _cache_dir() / f'info_drop_cpu-{key}.so'


def _compile(compiler_name: str, flags: Sequence[str], target: Path) -> Optional[str]:
    """Build the library at ``target`` (atomically); returns the compiler's complaint, or None on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(suffix='.so', dir=target.parent)
    os.close(handle)
    try:
        done = subprocess.run([compiler_name, *flags, str(SOURCE), '-o', scratch], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            return done.stderr.strip()[-2000:] or f'{compiler_name} exited with {done.returncode}'
        os.replace(scratch, target)
        return None
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def _open(target: Path, verify: Callable[[ctypes.CDLL], Optional[str]]) -> Tuple[Optional[ctypes.CDLL], str]:
    """``(library, '')`` when ``verify`` accepts the library at ``target``, else ``(None, why)`` with the library
    closed again, so that a rebuild at the same path is really opened (dlopen hands back an open path's old
    handle). Raises ``OSError`` where the file does not open as a library."""
    library = ctypes.CDLL(str(target))
    refusal = verify(library)
    if refusal is None:
        return library, ''
    _ctypes.dlclose(library._handle)
    return None, refusal


def _rebuild_stale(compiler_name: str, flags: Sequence[str], target: Path, seen: os.stat_result) -> Optional[str]:
    """Replace a refused library with a fresh build, unless another process already did since ``seen``."""
    with FileLock(str(_cache_dir() / '.build.lock')):
        try:
            now = target.stat()
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            return None  # rebuilt by another rank meanwhile
        if now is not None:
            target.unlink()
        return _compile(compiler_name, flags, target)


def build_library(verify: Callable[[ctypes.CDLL], Optional[str]], stacklevel: int = 3) -> Optional[Built]:
    """The kernels' library, built into the cache if it is not there, opened and accepted by ``verify``
    (which returns None to accept, else why it refuses); None, after one ``RuntimeWarning``, where no compiler
    is found, none of the flag sets builds, or ``verify`` refuses a fresh build."""
    name = compiler()
    if shutil.which(name) is None:
        warnings.warn(f'InfoDrop: no C++ compiler ({name!r}) on PATH; using the slower torch-ops path '
                      f'(set CXX, or {_SILENCE})', RuntimeWarning, stacklevel=stacklevel)
        return None
    complaints = []
    for flags, openmp in flag_sets():
        target = library_path(name, flags)
        cached = target.exists()
        if not cached:
            target.parent.mkdir(parents=True, exist_ok=True)
            # DDP ranks starting together: one builds, the others wait and load its library
            with FileLock(str(_cache_dir() / '.build.lock')):
                complaint = None if target.exists() else _compile(name, flags, target)
            if complaint is not None:
                complaints.append(complaint)
                continue
        try:
            seen = target.stat()
            library, refusal = _open(target, verify)
            if library is None and cached:  # a stale or foreign library at this path: build it afresh, once
                complaint = _rebuild_stale(name, flags, target, seen)
                if complaint is not None:
                    complaints.append(complaint)
                    continue
                library, refusal = _open(target, verify)
        except OSError as error:
            complaints.append(str(error))
            continue
        if library is None:
            warnings.warn(f'InfoDrop: the C++ kernel library {target} does not match its Python wrapper '
                          f'({refusal[-500:]}); using the slower torch-ops path ({_SILENCE})', RuntimeWarning,
                          stacklevel=stacklevel)
            return None
        if not openmp:
            warnings.warn(f'InfoDrop: {name} refused -fopenmp; the C++ kernels run on one thread '
                          f'({complaints[0][-300:] if complaints else ""})', RuntimeWarning, stacklevel=stacklevel)
        return Built(library, openmp)
    warnings.warn(f'InfoDrop: the C++ kernel did not build ({complaints[-1][-500:]}); using the slower '
                  f'torch-ops path ({_SILENCE})', RuntimeWarning, stacklevel=stacklevel)
    return None
