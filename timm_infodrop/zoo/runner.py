"""The zoo: for every zoo model and seed, make the benchmark data, train, convert and evaluate.

A zoo model is a CPU recipe trained either on the benchmark or on its training split doubled with a
texture-suppressed copy of every image (the "Anisotropic ImageNet" recipe: originals plus filtered copies),
at the recipe's epochs or others (the control with as many updates as the doubled data makes).
Every step is the library function its ``timm-infodrop`` subcommand calls (:func:`make_benchmark`,
:func:`suppress_folder`, :func:`train`, :func:`convert_folder`, :func:`evaluate_to_folder`), with the
subcommand's defaults, so the zoo runs exactly what users run, and a step's error reaches the caller as it
was raised. Heavy artefacts (data, checkpoints, deploy folders) live under ``work`` (default ``out/zoo``);
the small ones (results.json, convert_report.json, train log, plots) are copied to
``results/<model>/seed<k>/``. :func:`report_zoo` aggregates the results folder (summary.json, run.json,
pictures, REPORT.md).
"""
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.benchmark import DEFAULT_SPLIT_SIZES, make_benchmark
from ..data.shapes import SPLITS, ShapesConfig
from ..data.texture import suppress_folder
from ..deploy import convert_folder, convert_summary
from ..errors import ConfigError
from ..eval.suite import evaluate_to_folder, results_markdown
from ..io import atomic_directory, atomic_output
from ..train import TrainConfig, train

__all__ = ['Budget', 'BUDGETS', 'ZooModel', 'ZOO_MODELS', 'zoo_model', 'run_zoo', 'run_one', 'suppressed_data',
           'ensure_data', 'report_zoo', 'ZooReport', 'write_card', 'BASELINE']

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


def repository_commit() -> str:
    """The repository commit the zoo runs at ('' outside a git checkout)."""
    import subprocess
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ''


def ensure_data(folder: Path, budget: Budget) -> Path:
    """The benchmark at ``folder`` with the budget's split sizes (written once, reused after): make-data's
    defaults (64 px, seed 0), splits the budget leaves out at their default sizes."""
    marker = folder / 'benchmark.json'
    if marker.is_file() and json.loads(marker.read_text()).get('sizes') == budget.sizes:
        return folder
    sizes = {split: budget.sizes.get(split, DEFAULT_SPLIT_SIZES[split]) for split in SPLITS}
    print(f'wrote {make_benchmark(folder, ShapesConfig(), sizes, overwrite=True)}')
    return folder


def suppressed_data(data: Path, method: str) -> Path:
    """``data`` with its training split doubled by ``method``'s filtered copies, beside ``data`` (written
    once, whole or not at all; the evaluation splits are copied as they are)."""
    folder = data.with_name(f'{data.name}-{method}-doubled')
    marker = folder / 'benchmark.json'
    if marker.is_file() and marker.read_bytes() == (data / 'benchmark.json').read_bytes():
        return folder
    with atomic_directory(folder) as tmp:
        count = suppress_folder(data / 'train', tmp / 'train', method, double=True)
        print(f'wrote {tmp / "train"} ({count} images doubled with {method})')
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
    epochs = budget.epochs if budget.epochs is not None else model.epochs
    train(TrainConfig.from_recipe(recipe, data_dir=str(train_data), seed=seed, output=str(run_dir.parent),
                                  experiment=run_dir.name, overwrite=True,
                                  **({} if epochs is None else {'epochs': epochs})))
    train_minutes = (time.perf_counter() - start) / 60
    report = convert_folder(f'local-dir:{run_dir}', train_data, deploy, finetune_epochs=budget.finetune_epochs,
                            finetune_params='all', no_aug=True, batch_size=64, seed=seed, overwrite=True, log=print)
    print(convert_summary(report, deploy))
    results_md = results_markdown(evaluate_to_folder(
        None, data, evaluation, checkpoint=f'local-dir:{deploy}', corruption_images=budget.corruption_images,
        pgd_images=budget.pgd_images, seed=seed, overwrite=True))
    print(results_md)
    print(f'wrote {evaluation}')
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
              'deploy': str(deploy), 'commit': repository_commit()}
    (target / 'run.json').write_text(json.dumps(record, indent=2) + '\n')
    return record


def run_zoo(models: Sequence[ZooModel], recipes: Path, seeds: Sequence[int], budget: Budget, work: Path,
            results: Path) -> List[Dict]:
    """Every model x seed, recipes read from the folder ``recipes`` (the baseline first, so later runs can
    be compared with it). The baseline must be among ``models`` unless ``results`` holds its runs already."""
    if BASELINE not in [m.name for m in models] and not (results / BASELINE).is_dir():
        raise ConfigError(f'the zoo needs {BASELINE} runs (mCE is relative to it): add it to --models')
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


@dataclass(frozen=True)
class ZooReport:
    """What :func:`report_zoo` wrote: the summary (``summary.json``), the run description (``run.json``), the
    pictures (file names in the results folder) and the path of ``REPORT.md``."""
    summary: Dict
    run: Dict
    pictures: List[str]
    report: Path


def report_zoo(results: Path, budget: Budget, work: Path) -> ZooReport:
    """Aggregate every model with results under ``results`` (the zoo's order; each per-seed ``run.json`` says how
    it was made) into ``summary.json``, ``run.json`` (budget, seeds of every run summarised, minutes, the commit or
    the commits per model), the pictures (the first seed's deploy folders on ``work``'s benchmark data) and
    ``REPORT.md``.

    Raises:
        DataError: no results of the baseline, or a results folder that does not read (:func:`collect`).
    """
    from .report import plot_zoo, render_report
    from .summary import collect, summarize

    results, work = Path(results), Path(work)
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
    run_info = {'command': f'timm-infodrop zoo run{" --quick" if budget.name == "quick" else ""} --seeds {len(seeds)}',
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
    return ZooReport(summary, run_info, list(pictures), results / 'REPORT.md')


def write_card(card: Path, results: Path, pacs_results: Path) -> Path:
    """Render ``MODEL_CARD.md`` from the zoo's ``results`` and the PACS results (:func:`zoo.card.render_card`)
    into ``card``, atomically; returns its path."""
    from .card import render_card

    card = Path(card)
    with atomic_output(card) as tmp:
        tmp.write_text(render_card(Path(results), Path(pacs_results)))
    return card
