"""The synthetic shapes benchmark's protocol: make the data, train a row's recipe, score the deployed model.

A row is a CPU recipe ``zoo/recipes/<model>.yaml`` trained either on the benchmark or on its training split
doubled with a texture-suppressed copy of every image (the "Anisotropic ImageNet" recipe: originals plus
filtered copies), at the recipe's epochs or others (the control with as many updates as the doubled data
makes). Training and the converter's BN recalibration and finetuning (without augmentation) see the row's
training data; evaluation always uses the benchmark's own splits (:func:`~timm_infodrop.eval.suite.evaluate_folder`:
val, silhouette, texture-only and cue-conflict top-1, shape bias, corruptions, PGD). The benchmark has one cell,
``all``. The documents word its results with ``templates/kinds/shapes/``: the targets, the cues, texture
suppression and the investigation of InfoDrop's settings (:meth:`ShapesBenchmark.findings`).
"""
import inspect
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import timm
import torch
import yaml

from ..data.benchmark import DEFAULT_SPLIT_SIZES, make_benchmark
from ..data.shapes import SPLITS, ShapesConfig, silhouette_mask
from ..data.texture import suppress_folder
from ..deploy import folder_loaders
from ..eval.robustness import corruption_errors, pgd_top1
from ..eval.suite import evaluate_folder, load_split
from ..flops import count_flops
from ..hub.naming import plain_architecture
from ..io import atomic_directory
from ..registry import SHAPES, BenchmarkSpec, Row
from ..train import TrainConfig
from . import drop_sites, shapes_calibration
from .facts import TARGETS, recipes_folder, single_run_spread
from .findings import (cues, drop_findings, experiment_findings, infodrop_meets_target, readings, target_checks,
                       texture_findings)
from .pipeline import Benchmark, RunOptions

__all__ = ['ShapesBudget', 'SHAPES_BUDGETS', 'ShapesBenchmark', 'suppressed_data', 'ensure_shapes_data',
           'SHAPES_METRICS']

SHAPES_METRICS = ('top1', 'shape_bias', 'silhouette_top1', 'texture_only_top1', 'corruption_mean_top1', 'pgd_top1')


@dataclass(frozen=True)
class ShapesBudget:
    """How much data and work one synthetic-benchmark run gets."""
    name: str
    sizes: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SPLIT_SIZES))
    epochs: Optional[int] = None  # None: the recipe's (or the row's)
    finetune_epochs: int = 1
    corruption_images: int = 100
    pgd_images: int = 100
    rows: Tuple[str, ...] = tuple(row.name for row in SHAPES.rows)
    results: str = ''  # its results folder ('': the registry's)


SHAPES_BUDGETS = {
    # 3,000 of the benchmark's training images at the recipes' 6 epochs: about 9 minutes per run on 2 cores
    'full': ShapesBudget('full', sizes=dict(DEFAULT_SPLIT_SIZES, train=3000)),
    # the demo (`make demo`): the baseline, both regularisers and the texture-suppressed row (the effect large
    # enough for one seed to show; trained on twice the images), about 10 minutes on 2 cores with the set-up
    'quick': ShapesBudget('quick', sizes={'train': 1600, 'val': 300, 'cue_conflict': 300, 'silhouette': 300,
                                          'texture_only': 300}, epochs=3, finetune_epochs=0, corruption_images=30,
                          pgd_images=30, rows=('resnet18', 'resnet18_infodrop', 'resnet18_infodropout',
                                               'resnet18_anisotropic'), results='zoo/results-quick'),
}


def ensure_shapes_data(folder: Path, budget: ShapesBudget) -> Path:
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


class ShapesBenchmark(Benchmark):
    """The synthetic benchmark at its ``budget`` (:data:`SHAPES_BUDGETS`: ``options.quick`` picks the demo's; the
    ``budget`` attribute may be set to another). ``options.data_root``: an existing ``make-data`` folder to run on
    instead of the one the budget makes in the work folder."""
    labels = {
        'top1': 'val top-1', 'shape_bias': 'shape bias', 'silhouette_top1': 'silhouette top-1',
        'texture_only_top1': 'texture-only top-1', 'corruption_mean_top1': 'corruption mean top-1',
        'mce': f'mCE (vs {SHAPES.baseline}, same seed)', 'pgd_top1': 'PGD-Linf 8/255 top-1',
        'train_minutes': 'train minutes'}
    cost_labels = {'params_m': 'params (M)', 'gflops_train': 'GFLOPs, training forward', 'gflops_deploy': 'GFLOPs, deployed'}
    headline = ('shape_bias', 1.0)
    hub_metrics = {
        'top1': ('accuracy', 'val'), 'shape_bias': ('shape_bias', 'cue_conflict'),
        'silhouette_top1': ('accuracy', 'silhouette'), 'texture_only_top1': ('accuracy', 'texture_only'),
        'corruption_mean_top1': ('accuracy', 'val_corrupted'), 'mce': ('mce', 'val_corrupted'),
        'pgd_top1': ('accuracy', 'val_pgd_linf_8')}
    hub_train_metrics = {'top1_source': ('accuracy', 'val')}
    finetune_aug = False

    def __init__(self, spec: BenchmarkSpec = SHAPES, recipes: Optional[Path] = None,
                 options: RunOptions = RunOptions()):
        super().__init__(spec, recipes, options)
        self.budget = SHAPES_BUDGETS['quick' if options.quick else 'full']

    @property
    def default_finetune_epochs(self) -> int:
        return self.budget.finetune_epochs

    @property
    def default_rows(self) -> List[str]:
        return list(self.budget.rows)

    @property
    def results(self) -> Path:
        return Path(self.budget.results or self.spec.results)

    def work_folder(self, root: Path) -> Path:
        """The work folder itself: the budgets' data (``data-<budget>``), runs and deploys share it."""
        return Path(root)

    def _data_folder(self, work: Path) -> Path:
        """The benchmark folder of a run with the work folder ``work``."""
        return Path(self.options.data_root) if self.options.data_root else Path(work) / f'data-{self.budget.name}'

    @property
    def reference_results(self) -> Optional[Path]:
        """A smaller budget's results are read against the full zoo's seed spread (its results folder)."""
        return None if self.budget.name == 'full' else Path(self.spec.results)

    def prepare(self, work: Path) -> Path:
        if self.options.data_root:
            shapes_calibration.benchmark_config(self.options.data_root)  # a make-data folder, or a one-line error
            return Path(self.options.data_root)
        return ensure_shapes_data(self._data_folder(work), self.budget)

    def training_data(self, row: Row, data: Path) -> Path:
        """The benchmark, or for a texture-suppressed row its doubled copy (made once, beside it)."""
        return suppressed_data(data, row.texture) if row.texture else data

    def train_config(self, row: Row, cell: str, seed: int, data: Path, run_dir: Path) -> TrainConfig:
        changes = self.row_settings(row)
        if self.budget.epochs is not None and 'epochs' not in self.options.train:  # the budget's, over the row's
            changes['epochs'] = self.budget.epochs
        config = TrainConfig.from_recipe(self.recipe(row), data_dir=str(self.training_data(row, data)), seed=seed,
                                         model=row.model, output=str(run_dir.parent), experiment=run_dir.name,
                                         **changes)
        return config.replace(model_kwargs=dict(config.model_kwargs, **row.model_kwargs)) if row.model_kwargs else config

    def loaders(self, row: Row, cell: str, seed: int, data: Path, config: TrainConfig, data_config: Dict):
        loaders, classes, _ = folder_loaders(self.training_data(row, data), None, data_config, batch_size=64,
                                             seed=seed, no_aug=True)
        return loaders['recalibrate'], loaders['val'], loaders['finetune'], classes

    def evaluate(self, model, row: Row, cell: str, seed: int, data: Path, config: TrainConfig):
        scores = evaluate_folder(model, data, self.budget.corruption_images, self.budget.pgd_images, seed=seed)
        metrics = {k: scores[k] for k in SHAPES_METRICS if k != 'corruption_mean_top1'}
        metrics['corruption_mean_top1'] = scores['corruption']['mean_top1']
        return metrics, {'scores': scores, 'budget': self.budget.name,
                         'training_data': f'benchmark + {row.texture} copies' if row.texture else 'benchmark'}

    def derived(self, records: List[Dict]):
        """mCE of every run against the baseline's run with the same seed (the baseline's is 1)."""
        base = {r['seed']: r['scores']['corruption'] for r in records if r['row'] == self.baseline}
        return {(r['row'], r['cell'], r['seed']): {'mce': corruption_errors(r['scores']['corruption'],
                                                                            base[r['seed']])['mce']}
                for r in records if r['seed'] in base}

    def costs(self, row: Row) -> Dict[str, float]:
        """Parameters (millions, deployed) and GFLOPs (batch 1) of the trained and the deployed network."""
        torch.manual_seed(0)
        classes, size = len(self.spec.classes), (3, self.spec.image_size, self.spec.image_size)
        trained = timm.create_model(row.model, num_classes=classes).train()
        plain = timm.create_model(plain_architecture(row.model), num_classes=classes).eval()
        return {'params_m': sum(p.numel() for p in plain.parameters()) / 1e6,
                'gflops_train': count_flops(trained, size, every_op=True) / 1e9,
                'gflops_deploy': count_flops(plain, size, every_op=False) / 1e9}

    def run_info(self, records: List[Dict]) -> Dict:
        seeds = sorted({r['seed'] for r in records})
        quick = ' --quick' if self.budget.name == 'quick' else ''
        return {'command': f'timm-infodrop zoo run{quick} --seeds {len(seeds)}', 'budget': self.budget.name,
                'sizes': self.budget.sizes,
                'epochs': f'{self.budget.epochs} epochs' if self.budget.epochs else "the recipes' epochs"}

    def pictures(self, results: Path, summary: Dict, records: List[Dict], work: Path) -> List[str]:
        """shape_bias.png, severity.png, and saliency.png from the first seed's deployed models on this machine. The
        deploys and the benchmark data live in a run's work folder, not in the results: without them, a saliency.png
        already drawn (from a machine that had them) is kept."""
        from ..eval.benchmark import normalizer
        from ..eval.saliency import plot_saliency_grid, plot_severity, plot_shape_bias
        from ..eval.suite import load_split

        rows = {row: cells[self.spec.cells[0]] for row, cells in summary.items()}
        plot_shape_bias({m: s['shape_bias']['mean'] for m, s in rows.items()}, results / 'shape_bias.png',
                        errors=[s['shape_bias']['std'] for s in rows.values()], baseline=self.baseline)
        per_seed: Dict[str, List[Dict]] = {}
        for r in records:
            per_seed.setdefault(r['row'], []).append(r['scores'])
        plot_severity(per_seed, results / 'severity.png')
        written = ['shape_bias.png', 'severity.png']
        first = min(r['seed'] for r in records)
        deploys = {r['row']: Path(r['deploy']) for r in records
                   if r['seed'] == first and (Path(r['deploy']) / 'model.safetensors').is_file()}
        data = self._data_folder(work)
        if deploys and data.is_dir():
            loaded = {m: timm.create_model(f'local-dir:{d}', pretrained=True).eval() for m, d in deploys.items()}
            images, _, _ = load_split(data, 'cue_conflict', limit=6)
            plot_saliency_grid(images, loaded, normalizer(next(iter(loaded.values()))), results / 'saliency.png')
        if (results / 'saliency.png').is_file():
            written.append('saliency.png')
        return written

    def findings(self, results: Path, summary: Dict, records: List[Dict], gains: List[Dict], recipes=None) -> Dict:
        """The one cell's rows against the baseline and the targets, their cues, texture suppression, the studies'
        records (``drop_sites.jsonl``, ``calibration.jsonl``), the evaluation's settings and the reading."""
        cell = {row: cells[self.spec.cells[0]] for row, cells in summary.items()}
        base, baseline = cell[self.baseline], self.baseline
        calibration = results / shapes_calibration.CALIBRATION_FILE
        runs = shapes_calibration.load(calibration) if calibration.is_file() else []
        drops = drop_sites.latest(results)
        spread = single_run_spread(cell)
        listed = [r for r in runs if r.model != baseline or r.model_kwargs or r.evaluated == 'recalibrated']
        per = next(iter(records))['scores']['corruption']['per_corruption']
        pgd = {k: p.default for k, p in inspect.signature(pgd_top1).parameters.items()}
        return dict(
            cell=cell, targets=TARGETS, checks={r: target_checks(s, base) for r, s in cell.items()},
            cues={r: cues(s, base) for r, s in cell.items()}, texture=texture_findings(cell, self.rows, baseline),
            infodrop_met=infodrop_meets_target(cell, self.rows, baseline), drops=drops, drop=drop_findings(drops),
            experiments=listed, experiment=experiment_findings(runs, spread, baseline), spread=spread,
            plain_runs=[r for r in runs if r not in listed and r.model == baseline and listed
                        and r.config == listed[0].config],
            evaluation={'corruptions': len(per), 'severities': len(next(iter(per.values()))),
                        'eps': round(pgd['eps'] * 255), 'steps': pgd['steps']},
            gpu_recipes=[f.name for f in sorted(recipes_folder(recipes).glob('*.yaml'))
                         if yaml.safe_load(f.read_text()).get('device', 'cpu') != 'cpu'],
            reading=self._reading(summary, json.loads((results / 'run.json').read_text())))

    def _reading(self, summary: Dict, run: Dict) -> Dict:
        """:func:`~.findings.readings` of the one cell, the noise level from these results' seeds, else from the
        reference results (the full zoo's seeds), with where it came from."""
        name = self.spec.cells[0]
        cell = {row: cells[name] for row, cells in summary.items() if name in cells}
        spread, source = single_run_spread(cell), None
        reference = self.reference_results
        if spread is None and reference is not None:
            beside = Path(__file__).resolve().parents[2] / reference  # a checkout's, else the working directory's
            folder = beside if (beside / 'summary.json').is_file() else reference
            if (folder / 'summary.json').is_file():
                other = json.loads((folder / 'summary.json').read_text())
                spread = single_run_spread({row: cells[name] for row, cells in other.items() if name in cells})
                source = str(reference) if spread is not None else None
        return dict(readings(cell, self.baseline, spread, self.headline[0]), source=source, run=run,
                    texture=[r.name for r in self.spec.rows if r.texture])

    def drop_site_images(self, data: Path, count: int, seed: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The first ``count`` val images and their silhouettes (the object masks the generator drew)."""
        images, records, _ = load_split(data, 'val', count)
        config = shapes_calibration.shapes_config(data)
        masks = np.stack([silhouette_mask(config, 'val', int(Path(r['file']).stem)) for r in records])
        return images, masks.astype(np.float32)
