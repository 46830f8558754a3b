"""The leave-one-domain-out kind (``domain``): each row trained on every domain of a ``<domain>/<class>/<image>``
tree but one, tested on the held-out one (the cell), converted and evaluated as a deployed plain timm model.

PACS is one such benchmark; Office-Home or any tree of the same layout is another registry entry
(:class:`~timm_infodrop.registry.BenchmarkSpec`): its domains are the ``cells``, its classes ``classes``, its data
root ``--data-root``, else the environment variable ``data_env``, else ``data_root``. The entry also gives the
image size, the architecture of its rows and the initial weights: a benchmark with ``weights`` starts every row
from the imported weights folder (:func:`timm_infodrop.weights.import_weights`) loaded as timm pretrained weights.
Every row uses the benchmark's one recipe and differs only by the regulariser or the training images (a row's
``texture``: each training image replaced by its filtered copy with probability 1/2, as many updates as the
baseline; ``paper_beta``: Information Dropout's beta divided by the number of training images).

Deploying is the paper's second phase: the regulariser stripped, BN recalibrated on the source train split,
then finetuning epochs of all weights without it (kept only if the source val top-1 does not drop). The
reported model is the one at the end of training and deployment: the target domain selects nothing. The
documents word its results with ``templates/kinds/domain/`` (:meth:`DomainBenchmark.findings`).
"""
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import timm
import torch

from ..data.domains import DataError, DomainTree, decode_image, leave_one_domain_out, sample_loader, scan_domains
from ..errors import require
from ..eval.domains import domain_scores
from ..layers import beta_from_paper
from ..registry import BenchmarkSpec, Row
from ..train import TrainConfig
from ..viz import first_info_drop_conv
from . import drop_sites
from .findings import calibration_findings, claim, domain_average, k_choice
from .pipeline import Benchmark, RunOptions

__all__ = ['DomainBenchmark', 'data_root', 'picture_images', 'plot_target_top1', 'plot_attributions']


def data_root(spec: BenchmarkSpec, given: Optional[Path] = None) -> Optional[Path]:
    """The benchmark's tree: ``given`` (the command line's), else ``$<spec.data_env>``, else ``spec.data_root``;
    None when none of them names one."""
    root = given or (os.environ.get(spec.data_env) if spec.data_env else None) or spec.data_root
    return Path(root) if root else None


class DomainBenchmark(Benchmark):
    """Leave-one-domain-out on the tree at :func:`data_root`: the cells are the spec's domains."""
    labels = {'top1': 'top-1 on the unseen {cell} domain',
              'mean_class_top1': 'mean per-class top-1 on the {cell} domain',
              'source_val_top1': 'source val top-1 (the 10% held out of the source domains)',
              'train_minutes': 'train minutes', 'total_minutes': 'minutes (train + deploy + evaluation)'}
    hub_metrics = {'top1': ('accuracy', '{cell}'), 'mean_class_top1': ('mean_class_accuracy', '{cell}'),
                   'source_val_top1': ('accuracy', 'source_val')}
    hub_train_metrics = {'top1_source': ('accuracy', 'source_val')}

    def __init__(self, spec: BenchmarkSpec, recipes: Optional[Path] = None, options: RunOptions = RunOptions()):
        super().__init__(spec, recipes, options)
        self.root = data_root(spec, options.data_root)
        self.tree: Optional[DomainTree] = None

    def prepare(self, work: Path) -> Path:
        if self.root is None:
            variable = f' or set {self.spec.data_env}' if self.spec.data_env else ''
            raise DataError(f'no {self.spec.name} data given: pass --data-root DIR (laid out '
                            f'DIR/<domain>/<class>/<image>){variable}')
        self.tree = scan_domains(self.root, self.spec.cells)
        if self.spec.weights:  # the initial weights, imported once into the work folder
            from ..weights import import_weights
            folder = Path(work) / 'weights' / self.spec.weights
            self.weights = folder if (folder / 'model.safetensors').is_file() else import_weights(
                self.spec.weights, folder)
        return self.root

    def check_cells(self, data: Path, cells) -> None:
        unknown = [t for t in cells if t not in self.tree.domains]
        if unknown:
            raise DataError(f'unknown target domain(s) {unknown}; {str(self.tree.root)!r} has {list(self.tree.domains)}')

    def _split(self, cell: str, seed: int, config: TrainConfig):
        return leave_one_domain_out(self.tree, cell, config.val_fraction, seed)

    def train_config(self, row: Row, cell: str, seed: int, data: Path, run_dir: Path) -> TrainConfig:
        config = TrainConfig.from_recipe(self.recipe(row), data_dir=str(data), target_domain=cell, seed=seed,
                                         model=row.model, img_size=self.spec.image_size, output=str(run_dir.parent),
                                         experiment=run_dir.name, **self.options.train)
        kwargs = dict(config.model_kwargs, **row.model_kwargs)
        if row.paper_beta is not None:
            kwargs['infodropout_beta'] = beta_from_paper(row.paper_beta, len(self._split(cell, seed, config).train))
        changes = {}
        if self.spec.weights:  # as timm train.py's --pretrained-path: the classifier adapted, not in the model's args
            changes['pretrained_path'] = str(self.weights)
        if row.texture:
            changes.update(texture_suppression=row.texture, texture_suppression_prob=0.5)
        changes.update(self.row_settings(row))
        return config.replace(model_kwargs=kwargs, **changes)

    def loaders(self, row: Row, cell: str, seed: int, data: Path, config: TrainConfig, data_config: Dict):
        split = self._split(cell, seed, config)
        augmentation = dict(scale=config.scale, ratio=config.ratio, hflip=config.hflip,
                            color_jitter=config.color_jitter, grayscale_prob=config.grayscale_prob)
        common = dict(classes=split.classes, data_config=data_config, batch_size=config.batch_size, seed=seed,
                      progress=not config.no_progress)
        return (sample_loader(split.train, shuffle=True, **common), sample_loader(split.val, **common),
                sample_loader(split.train, training=True, shuffle=True, **common, **augmentation), split.classes)

    def evaluate(self, model, row: Row, cell: str, seed: int, data: Path, config: TrainConfig):
        split = self._split(cell, seed, config)
        scores = domain_scores(model, split, config.batch_size, progress=not config.no_progress)
        metrics = {k: scores[k] for k in ('top1', 'mean_class_top1', 'source_val_top1')}
        return metrics, {'sources': list(split.sources), 'train_images': len(split.train),
                         'target_images': scores['target_images'], 'val_fraction': config.val_fraction}

    def run_info(self, records: List[Dict]) -> Dict:
        seeds, cells = sorted({r['seed'] for r in records}), sorted({r['cell'] for r in records})
        return {'command': f"timm-infodrop zoo run --benchmark {self.spec.name} --cells {' '.join(cells)} "
                           f"--seeds {len(seeds)}",
                'recipe': sorted({r['recipe'] for r in records})[0],
                'finetune_epochs': sorted({r['finetune_epochs'] for r in records})[0]}

    def _drop_models(self) -> Dict[str, torch.nn.Module]:
        """The training variant of each InfoDrop row whose first InfoDrop conv differs from the rows' before it
        (windows, padding, patch size, T, drop rate), untrained: at the stem the drop map is a function of the
        image alone."""
        models, seen = {}, set()
        for row in self.rows.values():
            model = timm.create_model(row.model, num_classes=len(self.spec.classes), **row.model_kwargs)
            conv = first_info_drop_conv(model)
            geometry = None if conv is None else (repr(conv), repr(conv.info_drop))
            if geometry is not None and geometry not in seen:
                seen.add(geometry)
                models[row.name] = model
        return models

    def pictures(self, results: Path, summary: Dict, records: List[Dict], work: Path) -> List[str]:
        """target_top1.png, and attributions.png from the deployed models on the first default cell, of the seed whose
        deploys are on this machine for the most rows (the lowest such seed), on the images of ``picture_cells``. The
        deploys live in a run's work folder, not in the results: where no seed has every recorded row deployed here,
        an attributions.png already drawn (from a machine that had them) is kept rather than redrawn with fewer rows."""
        cell = self.spec.default_cells[0]
        plot_target_top1(records, list(self.rows), results / 'target_top1.png', self.spec.name)
        rows = {r['row'] for r in records if r['cell'] == cell}
        deployed: Dict[int, Dict[str, Path]] = {}
        for r in records:
            if r['cell'] == cell and (Path(r['deploy']) / 'model.safetensors').is_file():
                deployed.setdefault(r['seed'], {})[r['row']] = Path(r['deploy'])
        seed = min(deployed, key=lambda s: (-len(deployed[s]), s), default=None)
        drawn = (results / 'attributions.png').is_file()
        if seed is None or self.root is None or not Path(self.root).is_dir() or \
                (drawn and set(deployed[seed]) != rows):
            return ['target_top1.png', 'attributions.png'] if drawn else ['target_top1.png']
        deploys = {row: deployed[seed][row] for row in self.rows if row in deployed[seed]}
        images, titles = picture_images(scan_domains(self.root, self.spec.cells), self.spec.image_size,
                                        self.spec.picture_cells or self.spec.default_cells)
        plot_attributions(deploys, images, results / 'attributions.png', titles, self._drop_models(),
                          self.spec.architecture, seed)
        return ['target_top1.png', 'attributions.png']

    def findings(self, results: Path, summary: Dict, records: List[Dict], gains: List[Dict], recipes=None) -> Dict:
        """InfoDrop's claim on the first default cell, the recipe's calibration, the choice of k from the
        drop-sites study, and each metric's average over the cells (the number papers report)."""
        cell = self.spec.default_cells[0]
        infodrop = [n for n, r in self.rows.items() if r.model.endswith('_infodrop') and not r.texture]
        metrics = {m for cells in summary.values() for stats in cells.values() for m in stats}
        return {'claim': claim(gains, infodrop, cell),
                'calibration': calibration_findings(records, self.baseline, self.spec.calibration,
                                                    self.spec.calibration_minutes, cell),
                'k': k_choice(drop_sites.latest(results)),
                'averages': {m: domain_average(summary, self.spec.cells, m) for m in metrics}}

    def drop_site_images(self, data: Path, count: int, seed: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """A seeded draw of ``count`` source training images of the first default cell's split (no masks)."""
        tree = self.tree or scan_domains(data, self.spec.cells)
        train = leave_one_domain_out(tree, self.spec.default_cells[0], seed=seed).train
        chosen = np.random.default_rng(seed).choice(len(train), min(count, len(train)), replace=False)
        return np.stack([decode_image(train[i][0], self.spec.image_size) for i in sorted(chosen)]), None


def plot_target_top1(records: List[Dict], order: List[str], path: Path, title: str) -> None:
    """Target top-1 per row and target: bars at the seed mean, one dot per seed; ``title`` names the benchmark."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    runs: Dict[str, Dict[str, List[Dict]]] = {}
    for r in records:
        runs.setdefault(r['row'], {}).setdefault(r['cell'], []).append(r)
    rows = [r for r in order if r in runs] + sorted(set(runs) - set(order))
    targets = sorted({t for row in runs.values() for t in row})
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(targets) * max(1, len(rows)) / 3, 4), layout='constrained')
    for i, row in enumerate(rows):
        for j, target in enumerate(targets):
            values = [100 * r['metrics']['top1'] for r in runs[row].get(target, [])]
            if not values:
                continue
            x = j + (i - (len(rows) - 1) / 2) * width
            ax.bar(x, np.mean(values), width * 0.9, color=f'C{i}', label=row if j == 0 else None, alpha=0.8)
            ax.scatter([x] * len(values), values, color='black', s=10, zorder=3)
    ax.set_xticks(range(len(targets)), targets)
    ax.set_ylabel('target-domain top-1 (%)')
    ax.set_title(f'{title}, unseen target domain (dots: seeds)')
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attributions(deploys: Dict[str, Path], images: np.ndarray, path: Path, titles: List[str],
                           drop_models: Dict[str, torch.nn.Module], architecture: str, seed: int = 0) -> None:
    """Rows: images (uint8 (N, H, W, 3)); columns: the image, the drop probability of each of ``drop_models``'
    InfoDrop (:func:`timm_infodrop.viz.model_drop_probability`, on the image as that model takes it), and the
    occlusion map of every row's deployed model (:func:`timm_infodrop.eval.saliency.attribution`); the rows are
    named by what they add to ``architecture``; the title names the training ``seed`` of the deploys."""
    require('matplotlib', 'eval')  # else a one-line error naming the extra
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt

    from ..eval.benchmark import normalizer
    from ..eval.metrics import images_to_tensor
    from ..eval.saliency import attribution
    from ..viz import model_drop_probability

    x = images_to_tensor(images)
    models = {row: timm.create_model(f'local-dir:{d}', pretrained=True).eval() for row, d in deploys.items()}
    maps = {row: attribution(m, x, normalizer(m), 'occlusion') for row, m in models.items()}
    drops = {row: model_drop_probability(m, normalizer(m)(x)).numpy() for row, m in drop_models.items()}
    columns = 1 + len(drops) + len(maps)

    def short(row: str) -> str:  # the columns say what differs from the architecture, the figure's title the rest
        return (row[len(architecture):].lstrip('_') or 'baseline') if row.startswith(architecture) else row

    fig, axes = plt.subplots(len(images), columns, figsize=(1.9 * columns, 1.9 * len(images)), squeeze=False,
                             layout='constrained')
    for i, image in enumerate(images):
        panels = [(titles[i], image, None, None)]
        panels += [(f'drop prob.:\n{short(row)}', d[i], 'magma', (0, 1)) for row, d in drops.items()]
        panels += [(f'occlusion:\n{short(row)}', m[i].numpy(), 'inferno', (0, 1)) for row, m in maps.items()]
        for j, (title, data, cmap, limits) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(data, cmap=cmap, vmin=None if limits is None else limits[0],
                      vmax=None if limits is None else limits[1], extent=(0, image.shape[1], image.shape[0], 0))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
    fig.suptitle(f'{architecture}: where InfoDrop drops (training) and what each deployed model uses (occlusion, '
                 f'seed {seed})',
                 fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def picture_images(tree: DomainTree, size: int, cells, per_domain: int = 3) -> Tuple[np.ndarray, List[str]]:
    """The same images for every row's picture: the first image of the first ``per_domain`` classes of each of
    ``cells`` in ``tree``, decoded at ``size``; returns uint8 (N, size, size, 3) and their titles."""
    images, titles = [], []
    for domain in cells:
        if domain not in tree.domains:
            continue
        for label in range(min(per_domain, len(tree.classes))):
            path = next(p for p, c in tree.files[domain] if c == label)
            images.append(decode_image(path, size))
            titles.append(f'{domain}: {tree.classes[label]}')
    return np.stack(images), titles
