"""``timm-infodrop flops``: parameters, deploy and training FLOPs of every variant (fvcore;
:func:`timm_infodrop.flops.write_flops_table`)."""
import argparse
from pathlib import Path

HELP = 'count parameters and FLOPs of every variant with fvcore; print them and write a markdown table'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-o', '--output', default='docs/flops.md', help='markdown file to write (default: %(default)s)')
    parser.add_argument('--archs', nargs='+', help='plain architectures (default: every supported one, timm_infodrop.models.ARCHS)')
    parser.add_argument('--overwrite', action='store_true', help='replace OUTPUT if it exists')


def run(args: argparse.Namespace) -> int:
    from ..flops import write_flops_table

    print(write_flops_table(args.output, args.archs, overwrite=args.overwrite))
    print(f'wrote {Path(args.output)}')
    return 0
