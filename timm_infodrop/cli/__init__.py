"""The ``timm-infodrop`` command: one subcommand per module, registered in ``SUBCOMMANDS``.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and optionally ``reparse(parser, subparser, args, argv) -> args`` (e.g. to apply a recipe file).
Errors a user can fix (:func:`is_user_error`: the project's :class:`~timm_infodrop.errors.UserError`
classes, Hub errors, a diverged training run, a missing, unreadable or unwritable path, a full disk) print one
line and exit with status 2; any other exception is a bug: its traceback is printed with a line saying so, and
the status is 1. ``--debug`` re-raises either kind.
"""
import argparse
import errno
import importlib
import sys
import traceback
from typing import List, Optional

from ..errors import ConfigError, UserError
from ..hub import HubWeightsError

__all__ = ['main', 'build_parser', 'is_user_error', 'SUBCOMMANDS', 'PROJECT']

PROJECT = 'timm-infodrop'

# name -> module under timm_infodrop.cli, imported only when the subcommand runs or is listed
SUBCOMMANDS = {
    'infomap': 'infomap',
    'flops': 'flops',
    'convert': 'convert',
    'make-data': 'make_data',
    'eval': 'evaluate',
    'cue-conflict': 'cue_conflict',
    'train': 'train',
    'zoo': 'zoo',
    'hub': 'hub',
    'publish': 'publish',
    'suppress-texture': 'suppress_texture',
    'study': 'study',
    'import-weights': 'import_weights',
}

# OS errors a user can fix, by class or by errno (a full disk has no class of its own); OSError names the file
USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
USER_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC,
                         errno.EDQUOT, errno.EROFS})
TRAINER_PACKAGE = 'timm_infodrop.train'


def _raised_while_training(error: BaseException) -> bool:
    """Whether the traceback of ``error`` passes through the trainer (``timm_infodrop.train``)."""
    frame = error.__traceback__
    while frame is not None:
        name = frame.tb_frame.f_globals.get('__name__', '')
        if name == TRAINER_PACKAGE or name.startswith(TRAINER_PACKAGE + '.'):
            return True
        frame = frame.tb_next
    return False


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is input a user can fix (printed on one line) rather than a bug (a traceback).

    User errors: :class:`~timm_infodrop.errors.UserError` (DataError, ConfigError, OutputError, CheckpointError,
    TrainingDiverged), :class:`~timm_infodrop.hub.HubWeightsError`, a ``FloatingPointError`` raised while
    training (the trainer's non-finite loss), and the OS errors of a path: FileNotFoundError, PermissionError,
    IsADirectoryError, NotADirectoryError, or an ``OSError`` whose errno says the same or that the disk is full
    (ENOSPC, EDQUOT) or read-only (EROFS). Anything else, a bare ValueError, KeyError or RuntimeError
    included, is a bug.
    """
    if isinstance(error, (UserError, HubWeightsError, *USER_OS_ERRORS)):
        return True
    if isinstance(error, OSError):
        return error.errno in USER_ERRNOS
    return isinstance(error, FloatingPointError) and _raised_while_training(error)


def _refuse_nul(args: argparse.Namespace) -> None:
    """No path or value holds a NUL character (the OS refuses such paths with a ValueError)."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and '\0' in item:
                raise ConfigError(f'{name.replace("_", "-")} {item!r} holds a NUL character: not a valid path or value')


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(PROJECT)
    except PackageNotFoundError:
        return 'unknown version'


def _load(name: str):
    return importlib.import_module(f'{__name__}.{SUBCOMMANDS[name]}')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='timm-infodrop', description='Shape-biased timm CNNs: InfoDrop and Information Dropout.')
    parser.add_argument('--debug', action='store_true', help='show tracebacks instead of one-line errors')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name in SUBCOMMANDS:
        module = _load(name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        sub.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                         help='show tracebacks instead of one-line errors')
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _reparse=getattr(module, 'reparse', None), _subparser=sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _refuse_nul(args)
        if args._reparse is not None:
            args = args._reparse(parser, args._subparser, args, argv)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f'{PROJECT} {args.command}: interrupted', file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        if is_user_error(error):
            message = ' '.join(str(error).split()) or type(error).__name__  # one line, whatever the message
            print(f'{PROJECT} {args.command}: error: {message}', file=sys.stderr)
            return 2
        traceback.print_exc(file=sys.stderr)
        summary = ' '.join(f'{type(error).__name__}: {error}'.split())
        print(f'{PROJECT} {args.command}: internal error ({summary}). This is a bug in {PROJECT} {_version()}, '
              'not in your input: please report it with the traceback above.', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
