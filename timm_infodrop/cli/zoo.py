"""``timm-infodrop zoo``: ``run`` the CPU zoo end to end, or render ``card`` (MODEL_CARD.md) from its results."""
import argparse
import json
from pathlib import Path

from ..io import atomic_output

HELP = 'run the model zoo (make data, train, convert, evaluate) or render MODEL_CARD.md from its results'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=('run', 'report', 'card'),
                        help='run: train, convert, evaluate and report; report: aggregate and draw the existing '
                             'results again; card: render MODEL_CARD.md from summary.json')
    parser.add_argument('--quick', action='store_true', help='the demo budget: 2,000 training images, 3 epochs')
    parser.add_argument('--seeds', type=int, default=None, help='seeds 0..N-1 (default: 1 with --quick, else 3)')
    parser.add_argument('--recipes', default='zoo/recipes', help='folder of the CPU recipes')
    parser.add_argument('--models', nargs='+', default=None, help='recipe names (default: the CPU zoo)')
    parser.add_argument('--results', default=None, help='default: zoo/results (zoo/results-quick with --quick)')
    parser.add_argument('--work', default='out/zoo', help='data, checkpoints and deploy folders')
    parser.add_argument('--card', default='MODEL_CARD.md', help='card output (action card)')


def _results(args) -> Path:
    return Path(args.results or ('zoo/results-quick' if args.quick else 'zoo/results'))


def run(args: argparse.Namespace) -> int:
    from ..zoo.report import plot_zoo, render_model_card, render_report, summary_table, LABELS
    from ..zoo.runner import BUDGETS, CPU_RECIPES, run_zoo
    from ..zoo.summary import collect, summarize

    results = _results(args)
    if args.action == 'card':
        summary = json.loads((results / 'summary.json').read_text())
        run_info = json.loads((results / 'run.json').read_text())
        with atomic_output(args.card) as tmp:
            tmp.write_text(render_model_card(summary, run_info, results / 'calibration.jsonl'))
        print(f'wrote {args.card}')
        return 0

    budget = BUDGETS['quick' if args.quick else 'full']
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    if not seeds:
        raise ValueError(f'--seeds must be >= 1, got {args.seeds}')
    names = args.models or list(CPU_RECIPES)
    recipes = [Path(args.recipes) / f'{name}.yaml' for name in names]
    missing = [str(r) for r in recipes if not r.is_file()]
    if missing:
        raise FileNotFoundError(f'no recipe {missing} (run from the repository root or pass --recipes)')
    if 'resnet18' not in names:
        raise ValueError('the zoo needs the resnet18 baseline recipe (mCE is relative to it)')
    work = Path(args.work)
    if args.action == 'run':
        records = run_zoo(recipes, seeds, budget, work, results)
    else:
        records = [json.loads((results / name / f'seed{seed}' / 'run.json').read_text()) for seed in seeds
                   for name in names]
    summary = summarize(collect(results, 'resnet18'))
    run_info = {'command': f'timm-infodrop zoo run{" --quick" if args.quick else ""} --seeds {len(seeds)}',
                'budget': budget.name, 'seeds': seeds, 'sizes': budget.sizes,
                'epochs': f'{budget.epochs} epochs' if budget.epochs else "the recipes' epochs",
                'minutes': round(sum(r['total_minutes'] for r in records), 1),
                # the code the runs were made with: one commit, or '' when unknown or mixed
                'commit': commits.pop() if len(commits := {r.get('commit', '') for r in records}) == 1 else ''}
    with atomic_output(results / 'summary.json') as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + '\n')
    with atomic_output(results / 'run.json') as tmp:
        tmp.write_text(json.dumps(run_info, indent=2) + '\n')
    deploys = {r['model']: Path(r['deploy']) for r in records if r['seed'] == seeds[0]}
    pictures = plot_zoo(summary, results, deploys, work / f'data-{budget.name}')
    with atomic_output(results / 'REPORT.md') as tmp:
        tmp.write_text(render_report(summary, run_info, pictures))
    print(summary_table(summary, LABELS))
    print(f'\nreport: {results / "REPORT.md"} ({run_info["minutes"]:.1f} min of training, conversion and evaluation)')
    return 0
