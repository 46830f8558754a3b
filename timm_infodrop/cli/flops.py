"""``timm-infodrop flops``: parameters, deploy and training FLOPs of every variant (fvcore)."""
import argparse
import platform

from ..errors import ConfigError
from ..io import atomic_output, check_output_path

HELP = 'count parameters and FLOPs of every variant with fvcore; print them and write a markdown table'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-o', '--output', default='docs/flops.md', help='markdown file to write (default: %(default)s)')
    parser.add_argument('--archs', nargs='+', help='plain architectures (default: all 19)')
    parser.add_argument('--overwrite', action='store_true', help='replace OUTPUT if it exists')


def run(args: argparse.Namespace) -> int:
    import fvcore
    import timm
    import torch
    from tqdm import tqdm

    from ..flops import markdown_table, measure
    from ..models import ARCHS

    output = check_output_path(args.output, args.overwrite, suffixes=('.md',))
    archs = args.archs or list(ARCHS)
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise ConfigError(f'not supported architectures: {unknown}; choose from {list(ARCHS)}')
    rows = []
    for arch in tqdm(archs, desc='counting FLOPs', unit='arch'):
        rows.extend(measure(arch))
    table = markdown_table(rows)
    print(table)
    text = '\n'.join([
        '# Parameters and FLOPs',
        '',
        'Made by `timm-infodrop flops` (batch 1, each architecture\'s default input size; torch '
        f'{torch.__version__}, timm {timm.__version__}, fvcore {getattr(fvcore, "__version__", "?")}, '
        f'Python {platform.python_version()}).',
        '',
        '- *deploy*: the plain architecture in eval, fvcore\'s own counting (1 multiply-add = 1 FLOP); what the '
        'stripped model costs.',
        '- *train*: one forward in training mode, with every op counted (elementwise ops, reductions and '
        'random draws 1 FLOP per element, max- and average pools k*k per output), for the plain architecture and for the '
        'variant; *overhead* is their ratio - 1: the regulariser\'s cost in the forward pass.',
        '- *train params*: with Information Dropout\'s alpha branches (and learned prior), which `remove_dropout` drops.',
        '',
        table,
        '',
    ])
    with atomic_output(output) as tmp:
        tmp.write_text(text)
    print(f'wrote {output}')
    return 0
