"""``timm-infodrop hub render``: write ``hub_configs/`` (config.json + model card per Hub repo) from the zoo."""
import argparse
from pathlib import Path

from ..registry import BENCHMARKS

HELP = 'render hub_configs/ (one config.json + README.md model card per Hub repo) from the zoo results'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=('render',), help='render: write the folders from the zoo results')
    for name, spec in BENCHMARKS.items():
        parser.add_argument(f'--{name}-results', default=None, dest=f'results_{name}',
                            help=f'the {name} results (default {spec.results}: its rows get repos when it has a '
                                 'summary.json)')
    parser.add_argument('--results', default=None, dest='results_shapes', help='alias of --shapes-results')
    parser.add_argument('--out', default='hub_configs', help='output folder, replaced whole')


def run(args: argparse.Namespace) -> int:
    from ..hub import hub_org
    from ..zoo.kinds import every_benchmark
    from ..zoo.render import render_hub_configs

    roots = {name: Path(getattr(args, f'results_{name}')) for name in BENCHMARKS if getattr(args, f'results_{name}')}
    for folder in roots.values():  # a folder named on the command line must hold results
        if not (folder / 'summary.json').is_file():
            raise FileNotFoundError(f'{str(folder)!r} has no summary.json: run `timm-infodrop zoo run` first')
    for folder in render_hub_configs(every_benchmark(roots), Path(args.out)):
        print(f'wrote {folder} (repo {hub_org()}/{folder.name})')
    return 0
