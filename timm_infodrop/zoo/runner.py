"""The zoo: for every CPU recipe and seed, make the benchmark data, train, convert and evaluate.

Everything goes through the ``timm-infodrop`` subcommands, so the zoo runs exactly what users run.
Heavy artefacts (data, checkpoints, deploy folders) live under ``work`` (default ``out/zoo``); the
small ones (results.json, convert_report.json, train log, plots) are copied to
``results/<model>/seed<k>/``.
"""
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..cli import main as cli
from ..data.benchmark import DEFAULT_SPLIT_SIZES

__all__ = ['Budget', 'BUDGETS', 'CPU_RECIPES', 'run_zoo', 'run_one']

CPU_RECIPES = ('resnet18', 'resnet18_infodrop', 'resnet18_infodropout')  # the baseline first
BASELINE = 'resnet18'
COPIED = ('results.json', 'results.md', 'convert_report.json', 'summary.csv', 'args.yaml', 'severity.png')


@dataclass(frozen=True)
class Budget:
    """How much data and work one zoo run gets."""
    name: str
    sizes: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SPLIT_SIZES))
    epochs: Optional[int] = None  # None: the recipe's
    finetune_epochs: int = 1
    corruption_images: int = 100
    pgd_images: int = 100


BUDGETS = {
    # 3,000 of the benchmark's training images at the recipes' 6 epochs: about 9 minutes per run on 2 cores
    'full': Budget('full', sizes=dict(DEFAULT_SPLIT_SIZES, train=3000)),
    # the demo: about 3 minutes per model on 2 cores
    'quick': Budget('quick', sizes={'train': 2000, 'val': 500, 'cue_conflict': 500, 'silhouette': 500,
                                    'texture_only': 500}, epochs=3, finetune_epochs=0, corruption_images=50,
                    pgd_images=50),
}


def _commit() -> str:
    """The repository commit the zoo runs at ('' outside a git checkout)."""
    import subprocess
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ''


def _call(argv: List[str]) -> None:
    code = cli(argv)
    if code != 0:
        raise RuntimeError(f'timm-infodrop {" ".join(argv)} exited with {code}')


def ensure_data(folder: Path, budget: Budget) -> Path:
    """The benchmark at ``folder`` with the budget's split sizes (written once, reused after)."""
    marker = folder / 'benchmark.json'
    if marker.is_file() and json.loads(marker.read_text()).get('sizes') == budget.sizes:
        return folder
    sizes = [f'--{split.replace("_", "-")}={count}' for split, count in budget.sizes.items()]
    _call(['make-data', str(folder), *sizes, '--overwrite'])
    return folder


def run_one(recipe: Path, seed: int, data: Path, work: Path, results: Path, budget: Budget) -> Dict:
    """Train, convert and evaluate one recipe with one seed; returns the run's record."""
    model = recipe.stem
    name = f'{model}-seed{seed}'
    run_dir, deploy, evaluation = work / 'runs' / name, work / 'deploy' / name, work / 'eval' / name
    start = time.perf_counter()
    train = ['train', '-c', str(recipe), '--data-dir', str(data), '--seed', str(seed), '--output',
             str(run_dir.parent), '--experiment', run_dir.name, '--overwrite']
    if budget.epochs is not None:
        train += ['--epochs', str(budget.epochs)]
    _call(train)
    train_minutes = (time.perf_counter() - start) / 60
    _call(['convert', '--checkpoint', f'local-dir:{run_dir}', '--data-dir', str(data), '--out', str(deploy),
           '--finetune-epochs', str(budget.finetune_epochs), '--finetune-params', 'all', '--no-aug', '--batch-size', '64',
           '--seed', str(seed), '--overwrite'])
    _call(['eval', '--checkpoint', f'local-dir:{deploy}', '--data', str(data), '--out', str(evaluation),
           '--corruption-images', str(budget.corruption_images), '--pgd-images', str(budget.pgd_images),
           '--seed', str(seed), '--overwrite'])
    target = results / model / f'seed{seed}'
    target.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, deploy, evaluation):
        for item in COPIED:
            if (folder / item).is_file():
                shutil.copy2(folder / item, target / item)
    record = {'model': model, 'seed': seed, 'train_minutes': train_minutes,
              'total_minutes': (time.perf_counter() - start) / 60, 'budget': budget.name,
              'deploy': str(deploy), 'commit': _commit()}
    (target / 'run.json').write_text(json.dumps(record, indent=2) + '\n')
    return record


def run_zoo(recipes: Sequence[Path], seeds: Sequence[int], budget: Budget, work: Path, results: Path) -> List[Dict]:
    """Every recipe x seed (the baseline recipe first, so later runs can be compared with it)."""
    recipes = sorted(recipes, key=lambda r: (r.stem != BASELINE, r.stem))
    data = ensure_data(work / f'data-{budget.name}', budget)
    records = []
    total = len(recipes) * len(seeds)
    for seed in seeds:
        for recipe in recipes:
            print(f'== zoo {len(records) + 1}/{total}: {recipe.stem}, seed {seed} ({budget.name} budget)', flush=True)
            records.append(run_one(recipe, seed, data, work, results, budget))
    return records
