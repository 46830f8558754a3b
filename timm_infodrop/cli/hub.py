"""``timm-infodrop hub render``: write ``hub_configs/`` (config.json + model card per Hub repo) from the zoo."""
import argparse
from pathlib import Path

HELP = 'render hub_configs/ (one config.json + README.md model card per Hub repo) from the zoo results'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=('render',), help='render: write the folders from the zoo results')
    parser.add_argument('--results', default='zoo/results', help='the zoo results (summary.json, run.json, per seed)')
    parser.add_argument('--pacs-results', default='zoo/results-pacs',
                        help='the PACS zoo results (its rows get repos too when it has a summary.json)')
    parser.add_argument('--out', default='hub_configs', help='output folder, replaced whole')


def run(args: argparse.Namespace) -> int:
    from ..hub import hub_org
    from ..zoo.hub_configs import render_hub_configs

    results = Path(args.results)
    if not (results / 'summary.json').is_file():
        raise FileNotFoundError(f'{str(results)!r} has no summary.json: run `timm-infodrop zoo run` first')
    for folder in render_hub_configs(results, Path(args.out), Path(args.pacs_results)):
        print(f'wrote {folder} (repo {hub_org()}/{folder.name})')
    return 0
