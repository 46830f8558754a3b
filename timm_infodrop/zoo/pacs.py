"""The PACS zoo: domain generalisation rows, each trained from scratch on three PACS domains and tested on
the fourth, converted and evaluated as a deployed plain timm model.

Every row uses one recipe (``zoo/recipes/pacs64.yaml``: 64 px, the same epochs, augmentation and budget)
and differs only by the regulariser or the training images:

* ``resnet18``: the baseline; ``resnet18_infodrop``: the released placement and defaults (the stem);
* ``resnet18_infodrop_early``: the stem and the first block of stage 0, at both of its released sites
  (after conv1 -> bn1 -> relu, and after the block's output relu): the released ``dropout_layers = 1``;
* ``resnet18_infodropout``: Information Dropout at the stride-2 stage entries, the paper's beta (3)
  divided by the number of training images;
* ``resnet18_anisotropic``: every training image replaced by its anisotropic-diffusion copy with
  probability 1/2 (the "Anisotropic ImageNet" mix of originals and filtered copies, with as many
  updates as the baseline, so it needs no same-updates control).

Deploying is the paper's second phase: the regulariser stripped, BN recalibrated on the source train
split, then one finetuning epoch of all weights without the regulariser (kept only if the source val
top-1 does not drop). The reported model is the one at the end of training and deployment: the
target domain is never used to select anything. A finished (row, target, seed) is kept in
``results/<row>/<target>/seed<k>/run.json`` and skipped when the zoo runs again; an interrupted
training resumes from its ``last.safetensors``.
"""
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data.domains import DataError, leave_one_domain_out, sample_loader, scan_domains
from ..io import atomic_output
from .runner import repository_commit

__all__ = ['PacsRow', 'PACS_ROWS', 'BASELINE', 'run_pacs_zoo', 'run_pacs_one', 'summarize_pacs',
           'EARLY_STAGES', 'FINETUNE_EPOCHS']

BASELINE = 'resnet18'
FINETUNE_EPOCHS = 1
# the released dropout_layers = 1 (k = 1 rather than 2: see zoo/results-pacs/calibration.jsonl and the card)
EARLY_STAGES = ('stem', 0, 'out0')
INFODROPOUT_PAPER_BETA = 3.0


@dataclass(frozen=True)
class PacsRow:
    """One row of the PACS zoo: the recipe with ``model`` and ``model_kwargs``, optionally with a texture
    suppression mixed into the training images, or Information Dropout's paper beta (divided by the
    training-set size at run time)."""
    name: str
    model: str
    model_kwargs: Dict = field(default_factory=dict)
    texture_suppression: str = ''
    paper_beta: Optional[float] = None


PACS_ROWS = {row.name: row for row in (
    PacsRow('resnet18', 'resnet18'),
    PacsRow('resnet18_infodrop', 'resnet18_infodrop'),
    PacsRow('resnet18_infodrop_early', 'resnet18_infodrop', {'infodrop_stages': list(EARLY_STAGES)}),
    PacsRow('resnet18_infodropout', 'resnet18_infodropout', paper_beta=INFODROPOUT_PAPER_BETA),
    PacsRow('resnet18_anisotropic', 'resnet18', texture_suppression='anisotropic'),
)}


def _row_config(row: PacsRow, recipe: Path, root: Path, target: str, seed: int, run_dir: Path, **overrides):
    from ..layers import beta_from_paper
    from ..train import TrainConfig

    config = TrainConfig.from_recipe(recipe, data_dir=str(root), target_domain=target, seed=seed, model=row.model,
                                     output=str(run_dir.parent), experiment=run_dir.name, **overrides)
    kwargs = dict(config.model_kwargs, **row.model_kwargs)
    if row.paper_beta is not None:
        split = leave_one_domain_out(scan_domains(root), target, config.val_fraction, seed)
        kwargs['infodropout_beta'] = beta_from_paper(row.paper_beta, len(split.train))
    changes = dict(model_kwargs=kwargs)
    if row.texture_suppression:
        changes.update(texture_suppression=row.texture_suppression, texture_suppression_prob=0.5)
    return config.replace(**changes)


def _resume_point(run_dir: Path) -> str:
    """The run's training state when an earlier call was interrupted after an epoch, else ''."""
    from ..train import STATE_FILE
    state = run_dir / STATE_FILE
    return str(state) if state.is_file() and not (run_dir / 'model.safetensors').is_file() else ''


def run_pacs_one(row: PacsRow, target: str, seed: int, root: Path, recipe: Path, work: Path, results: Path,
                 finetune_epochs: int = FINETUNE_EPOCHS, progress: bool = True, **overrides) -> Dict:
    """Train, deploy and evaluate one (row, target, seed); returns its record (also ``run.json``)."""
    import torch

    from ..convert import convert
    from ..eval.domains import domain_scores
    from ..train import save_model_folder, train

    name = f'{row.name}-{target}-seed{seed}'
    run_dir, deploy = work / 'runs' / name, work / 'deploy' / name
    resume = _resume_point(run_dir)
    config = _row_config(row, recipe, root, target, seed, run_dir, resume=resume, overwrite=not resume,
                         no_progress=not progress, **overrides)
    start = time.perf_counter()
    result = train(config)
    train_minutes = (time.perf_counter() - start) / 60
    split = leave_one_domain_out(scan_domains(root), target, config.val_fraction, seed)
    from timm.data import resolve_data_config
    data_config = resolve_data_config(config.as_dict(), model=result.model)
    augmentation = dict(scale=config.scale, ratio=config.ratio, hflip=config.hflip, color_jitter=config.color_jitter,
                        grayscale_prob=config.grayscale_prob)
    loader = dict(classes=split.classes, data_config=data_config, batch_size=config.batch_size, seed=seed,
                  progress=progress)
    torch.manual_seed(seed)
    plain, report = convert(
        result.model, sample_loader(split.train, shuffle=True, **loader), sample_loader(split.val, **loader),
        finetune_epochs=finetune_epochs, finetune_params='all',
        finetune_loader=sample_loader(split.train, training=True, shuffle=True, **loader, **augmentation))
    save_model_folder(plain, deploy, data_config, split.classes)
    scores = domain_scores(plain, split, config.batch_size, progress=progress)
    record = {'row': row.name, 'model': row.model, 'model_kwargs': config.model_kwargs,
              'texture_suppression': row.texture_suppression, 'target': target, 'sources': list(split.sources),
              'seed': seed, 'classes': list(split.classes), 'epochs': config.epochs, 'finetune_epochs': finetune_epochs,
              'train_images': len(split.train), **scores,
              'convert': {k: v for k, v in report.items()
                          if k.startswith('top1') or k in ('kept', 'strip_max_abs_difference')},
              'epoch_log': result.history, 'train_minutes': train_minutes,
              'total_minutes': (time.perf_counter() - start) / 60, 'deploy': str(deploy),
              'commit': repository_commit(),
              'recipe': str(recipe)}
    target_dir = results / row.name / target / f'seed{seed}'
    with atomic_output(target_dir / 'run.json') as tmp:
        tmp.write_text(json.dumps(record, indent=2) + '\n')
    if (run_dir / 'summary.csv').is_file():
        shutil.copy2(run_dir / 'summary.csv', target_dir / 'summary.csv')
    return record


def run_pacs_zoo(rows: Sequence[PacsRow], targets: Sequence[str], seeds: Sequence[int], root: Path, recipe: Path,
                 work: Path, results: Path, finetune_epochs: int = FINETUNE_EPOCHS, progress: bool = True,
                 **overrides) -> List[Dict]:
    """Every (seed, target, row) not yet in ``results``, seed-major (every row gets seed 0 before any gets
    seed 1), the baseline first within each; returns the new records."""
    if not Path(recipe).is_file():
        raise FileNotFoundError(f'no recipe {str(recipe)!r} (run from the repository root or pass --recipe)')
    if finetune_epochs < 0:
        raise DataError(f'--finetune-epochs must be >= 0, got {finetune_epochs}')
    tree = scan_domains(root)
    unknown = [t for t in targets if t not in tree.domains]
    if unknown:
        raise DataError(f'unknown target domain(s) {unknown}; {str(tree.root)!r} has {list(tree.domains)}')
    rows = sorted(rows, key=lambda r: r.name != BASELINE)
    todo = [(seed, target, row) for seed in seeds for target in targets for row in rows
            if not (results / row.name / target / f'seed{seed}' / 'run.json').is_file()]
    records = []
    for i, (seed, target, row) in enumerate(todo):
        print(f'== PACS zoo {i + 1}/{len(todo)}: {row.name}, target {target}, seed {seed}', flush=True)
        records.append(run_pacs_one(row, target, seed, root, recipe, work, results, finetune_epochs, progress,
                                    **overrides))
    return records


def _stats(values: Sequence[float]) -> Dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {'mean': float(values.mean()), 'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'n': int(len(values))}


SUMMARY_METRICS = {'top1': 'top1', 'mean_class_top1': 'mean_class_top1', 'source_val_top1': 'source_val_top1',
                   'train_minutes': 'train_minutes', 'total_minutes': 'total_minutes'}


def _epoch_minutes(record: Dict, log: Path) -> Dict:
    """``train_minutes`` as the sum of the training log's epoch times (a resumed run's wall clock counts only
    the part after the interruption), ``total_minutes`` adding the deploy and evaluation time, and
    ``epoch_log`` from the log (a resumed run's record holds only the epochs after the interruption)."""
    if not log.is_file():
        return record
    import csv
    with log.open() as f:
        rows = [{k: float(v) if v not in ('', None) else None for k, v in row.items()} for row in csv.DictReader(f)]
    minutes = sum(row['seconds'] for row in rows) / 60
    after_training = record['total_minutes'] - record['train_minutes']
    return dict(record, train_minutes=minutes, total_minutes=minutes + after_training, epoch_log=rows)


def collect_pacs(results: Path) -> Dict[str, Dict[str, List[Dict]]]:
    """``{row: {target: [run record, ...]}}`` from ``results/<row>/<target>/seed<k>/run.json``, by seed."""
    runs: Dict[str, Dict[str, List[Dict]]] = {}
    for path in sorted(Path(results).glob('*/*/seed*/run.json'), key=lambda p: (p.parts[-4], p.parts[-3],
                                                                               int(p.parts[-2][len('seed'):]))):
        record = _epoch_minutes(json.loads(path.read_text()), path.parent / 'summary.csv')
        runs.setdefault(record['row'], {}).setdefault(record['target'], []).append(record)
    return runs


def summarize_pacs(results: Path) -> Dict[str, Dict[str, Dict]]:
    """``{row: {target: {metric: {mean, std, n}}}}`` (top-1 on the target domain, its mean-class top-1,
    source val top-1, minutes), rows in :data:`PACS_ROWS` order."""
    runs = collect_pacs(results)
    order = list(PACS_ROWS)
    summary = {}
    for row in sorted(runs, key=lambda r: (order.index(r) if r in order else len(order), r)):
        summary[row] = {target: {**{metric: _stats([r[key] for r in records]) for metric, key in SUMMARY_METRICS.items()},
                                 'seeds': [r['seed'] for r in records]}
                        for target, records in sorted(runs[row].items())}
    return summary


# the candidate sites of the released dropout_layers = k on a timm ResNet-18: (site, conv whose input
# the distances are taken on, its geometry (k, s, p), a max-pool after it), k = 1 adds stage0 and out0, k = 2 stage1
CANDIDATE_SITES = (
    ('stem', 'conv1', (7, 2, 3), (3, 2, 1), 0),
    ('stage0', 'layer1.0.conv1', (3, 1, 1), None, 1),
    ('out0', 'layer1.0.conv2', (3, 1, 1), None, 1),
    ('stage1', 'layer2.0.conv1', (3, 2, 1), None, 2),
)


def drop_site_statistics(model, images, temperature: float = 0.03, drop_rate: float = 1.5,
                         seed: int = 0) -> List[Dict]:
    """Where InfoDrop would drop in a trained plain ResNet, per candidate site of ``dropout_layers = k``:
    the drop distribution ``P = softmax(-I / T)`` of each image over the site's grid, summarised by its
    normalised entropy (1: uniform, the mask is plain spatial dropout; lower: it singles out predictable
    places) and the fraction of units dropped. ``images``: a normalised batch (B, 3, H, W)."""
    import torch

    from ..layers.info_drop import drop_distribution, keep_probability, self_information

    inputs = {}
    modules = dict(model.named_modules())
    hooks = [modules[conv].register_forward_hook(lambda m, a, o, conv=conv: inputs.__setitem__(conv, a[0]))
             for _, conv, *_ in CANDIDATE_SITES]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    rows = []
    for name, conv, (k, s, p), pool, k_min in CANDIDATE_SITES:
        info = self_information(inputs[conv], k, s, p, generator=torch.Generator().manual_seed(seed))
        pooled = {} if pool is None else dict(pool_kernel_size=pool[0], pool_stride=pool[1], pool_padding=pool[2])
        grid = drop_distribution(info, temperature, **pooled)  # (B, 1, H, W) on the grid the mask acts on
        dist = grid.flatten(1)
        entropy = -(dist * dist.clamp_min(1e-30).log()).sum(1) / np.log(dist.shape[1])
        dropped = 1 - keep_probability(grid, drop_rate)
        rows.append({'site': name, 'conv': conv, 'from_k': k_min, 'grid': list(grid.shape[-2:]),
                     'entropy': float(entropy.mean()), 'entropy_min': float(entropy.min()),
                     'dropped_fraction': float(dropped.mean())})
    return rows


def measure_drop_sites(results: Path, root: Path, images: int = 96, seed: int = 0) -> Dict:
    """:func:`drop_site_statistics` of the baseline's seed-``seed`` sketch-target deploy on ``images`` source
    training images (a seeded draw): ``{'model', 'images', 'sites': [...]}``, also written to
    ``results/drop_sites.json``."""
    import timm
    from timm.data import resolve_data_config

    record = next((r for r in collect_pacs(results).get(BASELINE, {}).get('sketch', []) if r['seed'] == seed), None)
    if record is None or not (Path(record['deploy']) / 'model.safetensors').is_file():
        raise DataError(f'no deployed {BASELINE} (sketch target, seed {seed}) from {str(results)!r} on this machine: '
                        'run the PACS zoo first')
    model = timm.create_model(f"local-dir:{record['deploy']}", pretrained=True)
    split = leave_one_domain_out(scan_domains(root), 'sketch', record.get('val_fraction', 0.1), seed)
    loader = sample_loader(split.train, split.classes, resolve_data_config(model=model), images, shuffle=True,
                           seed=seed, progress=False)
    batch, _ = next(iter(loader))
    out = {'model': f'{BASELINE} (sketch target, seed {seed}, deployed)', 'images': int(batch.shape[0]),
           'temperature': 0.03, 'drop_rate': 1.5, 'sites': drop_site_statistics(model, batch, seed=seed)}
    with atomic_output(Path(results) / 'drop_sites.json') as tmp:
        tmp.write_text(json.dumps(out, indent=2) + '\n')
    return out
