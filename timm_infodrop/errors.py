"""The project's user errors: input a user can fix, raised at the boundary with the offending value.

The command line prints these on one line (exit 2); any other exception is a bug and keeps its
traceback (``timm_infodrop.cli.is_user_error`` says which is which). Each class also subclasses the standard
exception a caller would catch (``ValueError``; ``FloatingPointError`` for :class:`TrainingDiverged`).

:func:`check_range` is the one check of a numeric argument (sizes, batch sizes, epochs, fractions, rates) every
command makes at the boundary, before it writes anything: a value out of range, NaN or infinite is a
:class:`ConfigError` naming the flag and the value.
"""
import importlib
import math
import numbers
from types import ModuleType
from typing import Iterable, Optional, Tuple, Union

__all__ = ['UserError', 'DataError', 'ConfigError', 'OutputError', 'CheckpointError',
           'TrainingDiverged', 'MissingExtra', 'require', 'check_range', 'check_ranges']


class UserError(Exception):
    """Base of the errors a user can fix: the message names the offending path or value."""


class DataError(UserError, ValueError):
    """A data folder, image or split that cannot be used as given."""


class ConfigError(UserError, ValueError):
    """A recipe, argument or hyperparameter out of range or unknown."""


class OutputError(UserError, ValueError):
    """An output path that must not be written (exists, is or contains an input, wrong format)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or model folder that cannot be loaded as the model asked for."""


class TrainingDiverged(UserError, FloatingPointError):
    """A training run whose loss became non-finite (NaN or Inf): lower the learning rate, or use fp32."""


class MissingExtra(UserError, ImportError):
    """An optional package that the called feature needs is not installed; the message names the extra."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` (a dotted name) for a feature of the ``extra`` install (``eval``, ``zoo``, ``onnx``);
    where it is missing, a one-line :class:`MissingExtra` that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(f"{module.split('.')[0]} is not installed ({error}); this feature needs "
                           f"pip install 'timm-infodrop[{extra}]'") from None


Number = Union[int, float]


def _bounds(low: Optional[Number], high: Optional[Number], low_open: bool, high_open: bool) -> str:
    if high is None:
        return f'{">" if low_open else ">="} {low:g}'
    if low is None:
        return f'{"<" if high_open else "<="} {high:g}'
    return f'in {"(" if low_open else "["}{low:g}, {high:g}{")" if high_open else "]"}'


def check_range(flag: str, value: Optional[Number], low: Optional[Number] = None, high: Optional[Number] = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Refuse ``value`` (skipped when None) outside ``[low, high]`` (``low_open``/``high_open``: the bound
    itself is out), and any NaN or infinity, naming ``flag`` (e.g. ``'--img-size'``).

    Raises:
        ConfigError: ``'--img-size must be >= 1, got -5'``; a value that is not a number (a recipe's string).
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f'{flag} must be a number, got {value!r}')
    inside = math.isfinite(value) and not (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high)))
    if not inside:
        bounds = _bounds(low, high, low_open, high_open) if (low, high) != (None, None) else 'finite'
        raise ConfigError(f'{flag} must be {bounds}, got {value}')


def check_ranges(checks: Iterable[Tuple]) -> None:
    """:func:`check_range` for each ``(flag, value, low, high[, low_open[, high_open]])``."""
    for check in checks:
        check_range(*check)
