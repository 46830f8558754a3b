"""``timm-infodrop zoo``: ``run`` the CPU zoo end to end, or render ``card`` (MODEL_CARD.md) from its results."""
import argparse
from pathlib import Path

from ..errors import ConfigError

MAX_SEEDS = 100
HELP = 'run the model zoo (make data, train, convert, evaluate) or render MODEL_CARD.md from its results'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=('run', 'report', 'card', 'drop-sites'),
                        help='run: train, convert, evaluate and report; report: aggregate and draw the existing '
                             'results again; card: render MODEL_CARD.md from summary.json')
    parser.add_argument('--quick', action='store_true', help='the demo budget: 2,000 training images, 3 epochs')
    parser.add_argument('--seeds', type=int, default=None, help='seeds 0..N-1 (default: 1 with --quick, else 3)')
    parser.add_argument('--recipes', default='zoo/recipes', help='folder of the CPU recipes')
    parser.add_argument('--models', nargs='+', default=None,
                        help='zoo models (default: the budget\'s; a name outside the zoo is a recipe on the plain '
                             'benchmark). Results of models not run are kept and summarised with the new ones')
    parser.add_argument('--results', default=None, help='default: zoo/results (zoo/results-quick with --quick)')
    parser.add_argument('--work', default='out/zoo', help='data, checkpoints and deploy folders')
    parser.add_argument('--card', default='MODEL_CARD.md', help='card output (action card)')
    pacs = parser.add_argument_group('PACS (--benchmark pacs)')
    pacs.add_argument('--benchmark', choices=('shapes', 'pacs'), default='shapes',
                      help='shapes: the synthetic shape-vs-texture benchmark; pacs: PACS domain generalisation')
    pacs.add_argument('--targets', nargs='+', default=['sketch'], metavar='DOMAIN',
                      help='held-out target domains (each row x target x seed is one run)')
    pacs.add_argument('--pacs-root', default=None,
                      help='PACS root (<domain>/<class>/<image>; default $TIMM_INFODROP_PACS, else ../shared/data/pacs/PACS)')
    pacs.add_argument('--finetune-epochs', type=int, default=None,
                      help='deploy finetuning epochs without the regulariser (default 1; the paper: 20)')
    pacs.add_argument('--pacs-results', default='zoo/results-pacs', help='PACS results read by `zoo card`')
    pacs.add_argument('--recipe', default='zoo/recipes/pacs64.yaml', help='the recipe every PACS row uses')


def _results(args) -> Path:
    return Path(args.results or ('zoo/results-quick' if args.quick else 'zoo/results'))


def run_pacs(args: argparse.Namespace) -> int:
    from ..data.domains import pacs_root
    from ..zoo.pacs import PACS_ROWS, run_pacs_zoo
    from ..zoo.pacs_report import report_pacs

    results = Path(args.results or 'zoo/results-pacs')
    if args.action == 'drop-sites':  # where InfoDrop would drop in the trained baseline: the choice of k
        from ..zoo.pacs import measure_drop_sites
        for site in measure_drop_sites(results, pacs_root(args.pacs_root))['sites']:
            print(f"{site['site']:8s} from k={site['from_k']} grid {site['grid']}: normalised entropy of P "
                  f"{site['entropy']:.2f}, {100 * site['dropped_fraction']:.0f}% of units dropped")
        print(f'wrote {results / "drop_sites.json"}')
        return 0
    if args.action == 'run':
        count = args.seeds if args.seeds is not None else 3
        if not 1 <= count <= MAX_SEEDS:
            raise ConfigError(f'--seeds must be in [1, {MAX_SEEDS}], got {args.seeds}')
        names = args.models or list(PACS_ROWS)
        unknown = [n for n in names if n not in PACS_ROWS]
        if unknown:
            raise ConfigError(f'unknown PACS rows {unknown}; rows: {list(PACS_ROWS)}')
        finetune = dict(finetune_epochs=args.finetune_epochs) if args.finetune_epochs is not None else {}
        run_pacs_zoo([PACS_ROWS[n] for n in names], args.targets, list(range(count)), pacs_root(args.pacs_root),
                     Path(args.recipe), Path(args.work) / 'pacs', results, **finetune)
    report = report_pacs(results, pacs_root(args.pacs_root))
    summary, run_info = report.summary, report.run
    for row, targets in summary.items():
        for target, stats in targets.items():
            print(f"{row:28s} {target:14s} top-1 {stats['top1']['mean']:.3f} +- {stats['top1']['std']:.3f} "
                  f"(n={stats['top1']['n']}), source val {stats['source_val_top1']['mean']:.3f}")
    print(f'\nreport: {report.report} ({run_info["minutes"]:.1f} min of training, conversion and evaluation)')
    return 0


def run(args: argparse.Namespace) -> int:
    if args.benchmark == 'pacs' and args.action != 'card':
        return run_pacs(args)
    if args.action == 'drop-sites':
        raise ConfigError('zoo drop-sites measures the PACS baseline: add --benchmark pacs '
                          '(the synthetic study is timm-infodrop study drop-sites)')
    from ..zoo.report import LABELS, summary_table
    from ..zoo.runner import BUDGETS, report_zoo, run_zoo, write_card, zoo_model

    results = _results(args)
    if args.action == 'card':
        print(f'wrote {write_card(Path(args.card), results, Path(args.pacs_results))}')
        return 0

    budget = BUDGETS['quick' if args.quick else 'full']
    count = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if not 1 <= count <= MAX_SEEDS:
        raise ConfigError(f'--seeds must be in [1, {MAX_SEEDS}], got {args.seeds}')
    names = args.models or list(budget.models)
    if args.action == 'run':
        run_zoo([zoo_model(name) for name in names], Path(args.recipes), list(range(count)), budget, Path(args.work),
                results)
    report = report_zoo(results, budget, Path(args.work))
    print(summary_table(report.summary, LABELS))
    print(f'\nreport: {report.report} ({report.run["minutes"]:.1f} min of training, conversion and evaluation)')
    return 0
