"""``timm-infodrop zoo``: ``run`` the CPU zoo end to end, or render ``card`` (MODEL_CARD.md) from its results."""
import argparse
import json
from pathlib import Path
from typing import Dict, List

from ..io import atomic_output

MAX_SEEDS = 100
HELP = 'run the model zoo (make data, train, convert, evaluate) or render MODEL_CARD.md from its results'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('action', choices=('run', 'report', 'card'),
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


def _results(args) -> Path:
    return Path(args.results or ('zoo/results-quick' if args.quick else 'zoo/results'))


def run(args: argparse.Namespace) -> int:
    from ..zoo.report import plot_zoo, render_model_card, render_report, summary_table, LABELS
    from ..zoo.runner import BASELINE, BUDGETS, ZOO_MODELS, run_zoo, zoo_model
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
    count = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if not 1 <= count <= MAX_SEEDS:
        raise ValueError(f'--seeds must be in [1, {MAX_SEEDS}], got {args.seeds}')
    seeds = list(range(count))
    names = args.models or list(budget.models)
    work = Path(args.work)
    if args.action == 'run':
        if BASELINE not in names and not (results / BASELINE).is_dir():
            raise ValueError(f'the zoo needs {BASELINE} runs (mCE is relative to it): add it to --models')
        run_zoo([zoo_model(name) for name in names], Path(args.recipes), seeds, budget, work, results)
    # every model with results, in the zoo's order; the per-seed records say how each was made
    runs = collect(results, BASELINE)
    order = list(ZOO_MODELS)
    runs = {m: runs[m] for m in sorted(runs, key=lambda m: (order.index(m) if m in order else len(order), m))}
    records = [json.loads((results / model / f'seed{seed}' / 'run.json').read_text())
               for model in runs for seed in sorted(runs[model])]
    summary = summarize(runs, {r['model']: r.get('architecture', r['model']) for r in records})
    by_commit: Dict[str, List[str]] = {}
    for record in records:
        models = by_commit.setdefault(record.get('commit', ''), [])
        models += [] if record['model'] in models else [record['model']]
    seeds = sorted({record['seed'] for record in records})  # of every run summarised, not only this call's
    run_info = {'command': f'timm-infodrop zoo run{" --quick" if args.quick else ""} --seeds {len(seeds)}',
                'budget': budget.name, 'seeds': seeds, 'sizes': budget.sizes,
                'epochs': f'{budget.epochs} epochs' if budget.epochs else "the recipes' epochs",
                'minutes': round(sum(r['total_minutes'] for r in records), 1),
                # the code the runs were made with: one commit, or '' when unknown or mixed
                'commit': next(iter(by_commit)) if len(by_commit) == 1 else '',
                'commits': by_commit}
    with atomic_output(results / 'summary.json') as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + '\n')
    with atomic_output(results / 'run.json') as tmp:
        tmp.write_text(json.dumps(run_info, indent=2) + '\n')
    deploys = {r['model']: Path(r['deploy']) for r in records if r['seed'] == seeds[0] and Path(r['deploy']).is_dir()}
    pictures = plot_zoo(summary, results, deploys, work / f'data-{budget.name}')
    with atomic_output(results / 'REPORT.md') as tmp:
        tmp.write_text(render_report(summary, run_info, pictures))
    print(summary_table(summary, LABELS))
    print(f'\nreport: {results / "REPORT.md"} ({run_info["minutes"]:.1f} min of training, conversion and evaluation)')
    return 0
