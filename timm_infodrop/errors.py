"""The project's user errors: input a user can fix, raised at the boundary with the offending value.

The command line prints these on one line (exit 2); any other exception is a bug and keeps its
traceback (``timm_infodrop.cli.is_user_error`` says which is which). Each class also subclasses the standard
exception a caller would catch (``ValueError``; ``FloatingPointError`` for :class:`TrainingDiverged`).
"""

from types import ModuleType

import importlib

__all__ = ['UserError', 'DataError', 'ConfigError', 'OutputError', 'CheckpointError',
           'TrainingDiverged', 'MissingExtra', 'require']


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
