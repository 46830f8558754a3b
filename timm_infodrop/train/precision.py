"""Which autocast dtype a run really gets: bfloat16 on a CPU only where the CPU computes it natively.

On a CPU without bf16 instructions (AVX2 only, or AVX-512 without ``avx512_bf16``) PyTorch's oneDNN emulates
bfloat16, and a train step under bf16 autocast is many times slower than in float32 (docs/speed.md has both
timings). :func:`autocast_dtype` keeps float32 there and says so once, naming what the CPU lacks. CUDA devices
take the recipe's dtype as given.
"""
import platform
from pathlib import Path
from typing import Optional, Set, Tuple

import torch

__all__ = ['cpu_flags', 'native_cpu_low_precision', 'autocast_dtype']

# the CPU flags (Linux /proc/cpuinfo names) that compute each dtype natively: x86's AVX-512 BF16 and AMX, Arm's
# BF16 / FP16 extensions
NATIVE_FLAGS = {'bfloat16': ('avx512_bf16', 'amx_bf16', 'bf16'), 'float16': ('avx512_fp16', 'amx_fp16', 'fphp')}


def cpu_flags(cpuinfo: Path = Path('/proc/cpuinfo')) -> Set[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm), empty where the file is not there."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key.strip().lower() in ('flags', 'features'):
            return set(value.split())
    return set()


def native_cpu_low_precision(dtype: str, flags: Optional[Set[str]] = None) -> Tuple[bool, str]:
    """``(native, what)``: whether this CPU computes ``dtype`` ('bfloat16' or 'float16') natively, and the flags
    that say so (or, when it does not, which it lacks and the vector width it has)."""
    flags = cpu_flags() if flags is None else flags
    wanted = NATIVE_FLAGS[dtype]
    found = sorted(set(wanted) & flags)
    if found:
        return True, ', '.join(found)
    width = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else (platform.machine() or 'unknown')
    return False, f'{width} without {" / ".join(wanted)}'


def autocast_dtype(amp: bool, amp_dtype: str, device: torch.device, flags: Optional[Set[str]] = None,
                   say=print) -> Optional[str]:
    """The autocast dtype a run uses: None without ``amp``; on a CPU that lacks native ``amp_dtype``, None too (float32),
    with one line through ``say`` naming the CPU's capability; else ``amp_dtype``."""
    if not amp:
        return None
    if device.type != 'cpu':
        return amp_dtype
    native, what = native_cpu_low_precision(amp_dtype, flags)
    if native:
        return amp_dtype
    say(f'--amp: training in float32, not {amp_dtype}: this CPU ({what}) would emulate {amp_dtype}, many times '
        'slower than float32')
    return None
