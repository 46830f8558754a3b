"""``timm-infodrop zoo``: ``run`` a benchmark's zoo end to end, ``report`` its results again, render the ``card``
(MODEL_CARD.md) over every benchmark, or measure where InfoDrop would drop in a benchmark's trained baseline
(``drop-sites``, :mod:`timm_infodrop.zoo.drop_sites`)."""
import argparse
import shlex
from pathlib import Path

from ..errors import ConfigError, DataError
from ..registry import BENCHMARKS, STUDIES

MAX_SEEDS = 100
HELP = 'run the model zoo (make data, train, convert, evaluate) or render MODEL_CARD.md from its results'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=('run', 'report', 'card', 'drop-sites'),
                        help='run: train, convert, evaluate and report (finished runs are kept and skipped); report: '
                             'summarise and draw the existing results again; card: render MODEL_CARD.md over every '
                             'benchmark; drop-sites: where InfoDrop would drop in the benchmark\'s trained baseline, '
                             'appended to RESULTS/drop_sites.jsonl')
    parser.add_argument('--benchmark', choices=tuple(BENCHMARKS) + tuple(STUDIES), default='shapes',
                        help='shapes: the synthetic shape-vs-texture benchmark; pacs: PACS domain generalisation; '
                             'a study (pacs_in1k_study: the pretrained PACS recipe, one knob a row) runs the same way')
    parser.add_argument('--quick', action='store_true',
                        help='the synthetic benchmark\'s demo budget (make demo): the quick rows, one seed, fewer images '
                             'and epochs (timm_infodrop.zoo.shapes.SHAPES_BUDGETS)')
    parser.add_argument('--seeds', type=int, default=None, help='seeds 0..N-1 (default: 1 with --quick, else 3)')
    parser.add_argument('--rows', '--models', nargs='+', default=None, dest='rows',
                        help='rows of the benchmark (default: all, or the quick budget\'s); results of rows not '
                             'run are kept and summarised with the new ones')
    parser.add_argument('--cells', '--targets', nargs='+', default=None, dest='cells', metavar='CELL',
                        help='cells to run, e.g. PACS\'s held-out target domains (default: the benchmark\'s)')
    parser.add_argument('--recipes', default=None, help='folder of the recipes (default: zoo/recipes)')
    parser.add_argument('--results', default=None, help="default: the benchmark's (zoo/results, zoo/results-pacs; "
                                                        "zoo/results-quick with --quick)")
    parser.add_argument('--work', default='out/zoo', help='data, checkpoints and deploy folders')
    parser.add_argument('--card', default='MODEL_CARD.md', help='card output (action card)')
    parser.add_argument('--data-root', '--pacs-root', default=None, dest='data_root',
                        help="the benchmark's data: a domain benchmark's tree (<domain>/<class>/<image>; default: the "
                             "registry's environment variable, e.g. $TIMM_INFODROP_PACS), or a make-data folder for the "
                             "synthetic benchmark (default: made in --work)")
    parser.add_argument('--finetune-epochs', type=int, default=None,
                        help='a domain benchmark\'s deploy finetuning epochs without the regulariser (default 1)')
    sites = parser.add_argument_group('drop-sites')
    sites.add_argument('--images', type=int, default=256, help='images measured (default: %(default)s)')
    sites.add_argument('--setting', action='append', default=None, metavar='T,RATE,RADIUS',
                       help='an InfoDrop setting (temperature, drop rate, radius); repeat for more; default: the '
                            'released defaults, then one change at a time')
    sites.add_argument('--baseline-seed', type=int, default=0,
                       help="the seed of the baseline run measured (also the images' draw; default: %(default)s)")


def _settings(items):
    if not items:
        return None
    settings = []
    for item in items:
        try:
            temperature, rate, radius = item.split(',')
            settings.append((float(temperature), float(rate), int(radius)))
        except ValueError:
            raise ConfigError(f'--setting {item!r}: expected T,RATE,RADIUS, e.g. 0.03,1.5,3') from None
    return settings


def run(args: argparse.Namespace) -> int:
    from ..zoo.drop_sites import DROP_SETTINGS, measure_drop_sites
    from ..zoo.kinds import every_benchmark, open_benchmark
    from ..zoo.pipeline import run_benchmark
    from ..zoo.render import summary_text, write_card, write_report

    if args.action == 'card':
        if args.results and not (Path(args.results) / 'summary.json').is_file():
            raise DataError(f'--results {args.results!r} has no summary.json: run `timm-infodrop zoo run` first')
        roots = {args.benchmark: Path(args.results)} if args.results else {}
        print(f'wrote {write_card(Path(args.card), every_benchmark(roots))}')
        return 0
    bench = open_benchmark(args.benchmark, Path(args.recipes) if args.recipes else None, args.quick,
                           args.data_root, args.finetune_epochs)
    results = Path(args.results) if args.results else bench.results
    work = bench.work_folder(Path(args.work))
    if args.action == 'drop-sites':
        settings = _settings(args.setting) or DROP_SETTINGS
        given = [('--images', args.images, 256), ('--baseline-seed', args.baseline_seed, 0)]
        command = ' '.join(['timm-infodrop zoo drop-sites --benchmark', args.benchmark]
                           + [f'{flag} {value}' for flag, value, default in given if value != default]
                           + [f'--setting {shlex.quote(item)}' for item in args.setting or []])
        record = measure_drop_sites(bench, results, work, args.images, settings, args.baseline_seed, command)
        for site in record.sites:
            regions = ''.join(f', {name} {100 * value:.0f}%' for name, value in site.regions.items())
            print(f'{site.site:8s} from k={site.from_k} T {site.temperature:g} drop rate {site.drop_rate:g} radius '
                  f'{site.radius}: normalised entropy of P {site.entropy:.2f}, {100 * site.all:.0f}% of units dropped'
                  f'{regions}')
        print(f'appended to {results / "drop_sites.jsonl"}')
        return 0
    if args.action == 'run':
        count = args.seeds if args.seeds is not None else (1 if args.quick else 3)
        if not 1 <= count <= MAX_SEEDS:
            raise ConfigError(f'--seeds must be in [1, {MAX_SEEDS}], got {args.seeds}')
        run_benchmark(bench, args.rows or bench.default_rows, args.cells or list(bench.spec.default_cells), list(range(count)), work, results)
    _, _, report = write_report(bench, results, work)
    print(summary_text(bench, results, report), end='')
    return 0
