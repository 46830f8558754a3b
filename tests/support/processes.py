"""Child processes that a test interrupts as a user would (Ctrl-C)."""
import signal
import subprocess

__all__ = ['popen_interruptible']


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_interruptible(argv, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` whose child takes SIGINT as Ctrl-C (Python's KeyboardInterrupt) even where the tests run
    with SIGINT ignored, as a background job of a shell without job control does: Python installs its handler only
    over the default action, and a child inherits the ignoring."""
    return subprocess.Popen(argv, preexec_fn=_default_sigint, **kwargs)
