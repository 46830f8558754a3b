"""The ``timm-infodrop`` command: one subcommand per module, registered in ``SUBCOMMANDS``.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and optionally ``reparse(parser, subparser, args, argv) -> args`` (e.g. to apply a recipe file).
Errors a user can fix (bad paths, sizes, formats, unreadable files, a full disk) print one line and exit
with status 2;
``--debug`` shows the traceback instead.
"""
import argparse
import importlib
import sys
from typing import List, Optional

from ..hub import HubWeightsError

__all__ = ['main', 'build_parser', 'SUBCOMMANDS']

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
}

# what a user can fix: bad values and files, unreadable images, full or unwritable disks (OSError names the
# file), a diverged training run (FloatingPointError); anything else is a bug and keeps its traceback
USER_ERRORS = (ValueError, OSError, FloatingPointError, HubWeightsError)


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
        if args._reparse is not None:
            args = args._reparse(parser, args._subparser, args, argv)
        return int(args._run(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = ' '.join(str(error).split()) or type(error).__name__  # one line, whatever the message
        print(f'timm-infodrop {args.command}: error: {message}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'timm-infodrop {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
