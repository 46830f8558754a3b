"""Per-forward state that must never be copied, pickled or scripted (it may hold an autograd graph)."""
from typing import Any


class Transient:
    """Holds one value for the next use; ``copy.deepcopy`` and pickling give an empty holder.

    Modules keep such state here rather than in a plain attribute: a non-leaf tensor attribute makes
    ``copy.deepcopy`` (timm's EMA, the converter) fail, and ``__getstate__`` would be compiled by
    TorchScript.
    """
    __slots__ = ('value',)

    def __init__(self) -> None:
        self.value: Any = None

    def __deepcopy__(self, memo) -> 'Transient':
        return Transient()

    def __reduce__(self):
        return Transient, ()
