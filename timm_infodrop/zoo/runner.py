"""The zoo: for every zoo model and seed, make the benchmark data, train, convert and evaluate.

A zoo model is a CPU recipe trained either on the benchmark or on its training split doubled with a
texture-suppressed copy of every image (the "Anisotropic ImageNet" recipe: originals plus filtered copies),
at the recipe's epochs or others (the control with as many updates as the doubled data makes).
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
from typing import Dict, List, Optional, Sequence, Tuple

from ..cli import main as cli
from ..data.benchmark import DEFAULT_SPLIT_SIZES
from ..io import atomic_directory

__all__ = ['Budget', 'BUDGETS', 'ZooModel', 'ZOO_MODELS', 'zoo_model', 'run_zoo', 'run_one', 'suppressed_data']

BASELINE = 'resnet18'


@dataclass(frozen=True)
class ZooModel:
    """One row of the zoo: the recipe ``zoo/recipes/<recipe>.yaml``, trained on the benchmark or, with
    ``texture`` (a :data:`timm_infodrop.data.texture.METHODS` name), on its training split doubled with
    the filtered copies; ``epochs`` overrides the recipe's (a budget's own epochs win)."""
    name: str
    recipe: str
    texture: str = ''
    epochs: Optional[int] = None


ZOO_MODELS = {m.name: m for m in (
    ZooModel('resnet18', 'resnet18'),  # the baseline first
    ZooModel('resnet18_infodrop', 'resnet18_infodrop'),
    ZooModel('resnet18_infodropout', 'resnet18_infodropout'),
    ZooModel('resnet18_anisotropic', 'resnet18', texture='anisotropic'),
    ZooModel('resnet18_infodrop_anisotropic', 'resnet18_infodrop', texture='anisotropic'),
    # the control for the doubled rows: the baseline with as many updates as they make (twice the epochs)
    ZooModel('resnet18_2x_epochs', 'resnet18', epochs=12),
)}
QUICK_MODELS = ('resnet18', 'resnet18_infodrop', 'resnet18_infodropout')


def zoo_model(name: str) -> ZooModel:
    """The zoo row ``name``; any other name is the recipe of that name on the plain benchmark."""
    return ZOO_MODELS.get(name) or ZooModel(name, name)


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
    models: Tuple[str, ...] = tuple(ZOO_MODELS)


BUDGETS = {
    # 3,000 of the benchmark's training images at the recipes' 6 epochs: about 9 minutes per run on 2 cores
    'full': Budget('full', sizes=dict(DEFAULT_SPLIT_SIZES, train=3000)),
    # the demo: about 3 minutes per model on 2 cores
    'quick': Budget('quick', sizes={'train': 2000, 'val': 500, 'cue_conflict': 500, 'silhouette': 500,
                                    'texture_only': 500}, epochs=3, finetune_epochs=0, corruption_images=50,
                    pgd_images=50, models=QUICK_MODELS),
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


def suppressed_data(data: Path, method: str) -> Path:
    """``data`` with its training split doubled by ``method``'s filtered copies, beside ``data`` (written
    once, whole or not at all; the evaluation splits are copied as they are)."""
    folder = data.with_name(f'{data.name}-{method}-doubled')
    marker = folder / 'benchmark.json'
    if marker.is_file() and marker.read_bytes() == (data / 'benchmark.json').read_bytes():
        return folder
    with atomic_directory(folder) as tmp:
        _call(['suppress-texture', '--method', method, '--in', str(data / 'train'), '--out', str(tmp / 'train'),
               '--double'])
        for item in sorted(data.iterdir()):
            if item.name not in ('train', 'benchmark.json'):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        shutil.copy2(data / 'benchmark.json', tmp / 'benchmark.json')  # last: the folder is complete
    return folder


def run_one(model: ZooModel, recipes: Path, seed: int, data: Path, work: Path, results: Path,
            budget: Budget) -> Dict:
    """Train, convert and evaluate one zoo model with one seed; returns the run's record.

    Training and the converter's BN recalibration and finetuning see the model's training data
    (doubled for a texture-suppressed row); evaluation always uses the benchmark's own splits.
    """
    import yaml

    recipe = recipes / f'{model.recipe}.yaml'
    train_data = suppressed_data(data, model.texture) if model.texture else data
    name = f'{model.name}-seed{seed}'
    run_dir, deploy, evaluation = work / 'runs' / name, work / 'deploy' / name, work / 'eval' / name
    start = time.perf_counter()
    train = ['train', '-c', str(recipe), '--data-dir', str(train_data), '--seed', str(seed), '--output',
             str(run_dir.parent), '--experiment', run_dir.name, '--overwrite']
    epochs = budget.epochs if budget.epochs is not None else model.epochs
    if epochs is not None:
        train += ['--epochs', str(epochs)]
    _call(train)
    train_minutes = (time.perf_counter() - start) / 60
    _call(['convert', '--checkpoint', f'local-dir:{run_dir}', '--data-dir', str(train_data), '--out', str(deploy),
           '--finetune-epochs', str(budget.finetune_epochs), '--finetune-params', 'all', '--no-aug', '--batch-size', '64',
           '--seed', str(seed), '--overwrite'])
    _call(['eval', '--checkpoint', f'local-dir:{deploy}', '--data', str(data), '--out', str(evaluation),
           '--corruption-images', str(budget.corruption_images), '--pgd-images', str(budget.pgd_images),
           '--seed', str(seed), '--overwrite'])
    target = results / model.name / f'seed{seed}'
    target.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, deploy, evaluation):
        for item in COPIED:
            if (folder / item).is_file():
                shutil.copy2(folder / item, target / item)
    record = {'model': model.name, 'architecture': yaml.safe_load(recipe.read_text())['model'],
              'recipe': str(recipe), 'training_data': f'benchmark + {model.texture} copies' if model.texture
              else 'benchmark', 'epochs': epochs, 'seed': seed, 'train_minutes': train_minutes,
              'total_minutes': (time.perf_counter() - start) / 60, 'budget': budget.name,
              'deploy': str(deploy), 'commit': _commit()}
    (target / 'run.json').write_text(json.dumps(record, indent=2) + '\n')
    return record


def run_zoo(models: Sequence[ZooModel], recipes: Path, seeds: Sequence[int], budget: Budget, work: Path,
            results: Path) -> List[Dict]:
    """Every model x seed, recipes read from the folder ``recipes`` (the baseline first, so later runs can
    be compared with it)."""
    missing = sorted({str(recipes / f'{m.recipe}.yaml') for m in models} - {str(p) for p in recipes.glob('*.yaml')})
    if missing:
        raise FileNotFoundError(f'no recipe {missing} (run from the repository root or pass --recipes)')
    models = sorted(models, key=lambda m: (m.name != BASELINE, m.name))
    data = ensure_data(work / f'data-{budget.name}', budget)
    records = []
    total = len(models) * len(seeds)
    for seed in seeds:
        for model in models:
            print(f'== zoo {len(records) + 1}/{total}: {model.name}, seed {seed} ({budget.name} budget)', flush=True)
            records.append(run_one(model, recipes, seed, data, work, results, budget))
    return records
