"""One run path for every benchmark: train -> convert -> evaluate -> an atomic per-run record, then one summary.

A :class:`Benchmark` is a registry entry (:class:`timm_infodrop.registry.BenchmarkSpec`: tag, classes, size,
cells, rows) plus the protocol its ``kind`` needs (:data:`timm_infodrop.zoo.kinds.KINDS`): prepare the data, check
the cells, the train config of a (row, cell, seed), the converter's loaders, the scores of a deployed model, and
for the documents its pictures and findings. Everything else is here, the same for every benchmark:

* :func:`run_one` trains with the library's :func:`~timm_infodrop.train.train`, converts with
  :func:`~timm_infodrop.convert.convert` (strip, BN recalibration on the training data, finetuning of all
  weights, kept only if val top-1 does not drop), saves the plain timm folder, evaluates the folder as
  deployed, and writes ``results/<row>/<cell>/seed<k>/run.json`` atomically (with the training log
  ``summary.csv``); an interrupted training resumes from its ``last.safetensors``;
* :func:`run_benchmark` sets up first (the data, each row's training data, one warm-up training step of each
  row's model: the InfoDrop kernel build and first-call costs), timed apart in ``setup.json`` so that no run's
  train minutes hold a cold start; then it runs every (seed, cell, row) that has no record yet, seed-major and
  the baseline first, so new rows, cells and seeds add to the results and a finished run is never run again;
* :func:`summarize` reads the records into the one summary schema, ``{row: {cell: {metric: {mean, std, n,
  values, seeds}}}}`` (:func:`~.stats.describe`), rows in the registry's order.
"""
import csv
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import timm
import torch
import yaml
from timm.data import resolve_data_config

from ..convert import convert
from ..errors import ConfigError, DataError
from ..io import atomic_output
from ..registry import BenchmarkSpec, Row
from ..train import STATE_FILE, TrainConfig, save_model_folder, train
from .stats import describe

__all__ = ['Benchmark', 'RunOptions', 'run_one', 'run_benchmark', 'set_up', 'collect', 'summarize', 'write_summary',
           'record_path', 'run_folders', 'repository_commit', 'RUN_FILE', 'SETUP_FILE', 'CONVERT_FIELDS']

RUN_FILE = 'run.json'
SETUP_FILE = 'setup.json'  # the last set-up's minutes, step by step (not part of any run's minutes)
# the convert report's fields a record keeps: the val top-1 after each step, what was kept, and how
CONVERT_FIELDS = ('top1_source', 'top1_stripped', 'top1_recalibrated', 'top1_finetuned', 'top1', 'kept',
                  'strip_max_abs_difference', 'recalibrate_batches', 'finetune_epochs', 'finetune_lr',
                  'finetune_params', 'no_aug')


STEP_LABELS = {'top1_source': 'as trained (eval, regulariser off)', 'top1_stripped': 'stripped, no recalibration',
               'top1_recalibrated': 'after BN recalibration', 'top1_finetuned': 'after finetuning (all weights)'}


@dataclass(frozen=True)
class RunOptions:
    """What a command line may change of a benchmark's protocol, the same options for every kind (a kind uses
    those it has a meaning for): ``quick``, the kind's demo budget; ``data_root``, the benchmark's data instead of
    its default (a domain tree; a ``make-data`` folder); ``finetune_epochs``, the deployment's finetuning epochs;
    ``train``, trainer settings over every row's (a smoke run's ``epochs``; they win over a row's own)."""
    quick: bool = False
    data_root: Optional[Path] = None
    finetune_epochs: Optional[int] = None
    train: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise DataError(f'--finetune-epochs must be >= 0, got {self.finetune_epochs}')


class Benchmark:
    """The protocol of one kind of benchmark over its registry entry ``spec``; every kind is built the same way,
    ``Kind(spec, recipes, options)``, and fills in the hooks below, the only places the pipeline, the renderer
    (:mod:`.render`) and the studies ask a benchmark anything.

    ``labels``: the metrics it reports, in words (``{cell}`` filled in), ``cost_labels`` the per-row costs;
    ``headline``: the metric every row is compared with the baseline on, and its scale (100: percentage points);
    ``hub_metrics``: metric -> (model-index metric type, dataset split) of the deployed model, ``hub_train_metrics``
    of the trained one.
    The documents word a kind's results with its template partials, ``templates/kinds/<kind>/``.
    """
    labels: Dict[str, str] = {}
    cost_labels: Dict[str, str] = {}
    step_labels: Dict[str, str] = STEP_LABELS
    headline: Tuple[str, float] = ('top1', 100.0)
    hub_metrics: Dict[str, Tuple[str, str]] = {}
    hub_train_metrics: Dict[str, Tuple[str, str]] = {}
    default_finetune_epochs: int = 1  # the deployment's finetuning epochs unless the command line gives them
    finetune_lr: float = 1e-3
    finetune_aug: bool = True  # finetune with the training augmentation (False: without)
    recalibrate_batches: Optional[int] = None  # the converter's BN recalibration: None all batches, 0 none

    # a results folder of the same benchmark with several seeds, whose seed spread reads results of one seed
    reference_results: Optional[Path] = None

    def __init__(self, spec: BenchmarkSpec, recipes: Optional[Path] = None, options: RunOptions = RunOptions()):
        self.spec = spec
        self.recipes = Path(recipes) if recipes is not None else None
        self.options = options
        self.rows: Dict[str, Row] = {row.name: row for row in spec.rows}

    @property
    def finetune_epochs(self) -> int:
        """The deployment's finetuning epochs: the command line's, else the kind's."""
        return self.default_finetune_epochs if self.options.finetune_epochs is None else self.options.finetune_epochs

    @property
    def baseline(self) -> str:
        return self.spec.baseline

    @property
    def default_rows(self) -> List[str]:
        """The rows a run without ``--rows`` trains."""
        return list(self.rows)

    @property
    def results(self) -> Path:
        """The results folder a run writes by default (the registry's)."""
        return Path(self.spec.results)

    def work_folder(self, root: Path) -> Path:
        """Where this benchmark's data, checkpoints and deploys go under the zoo's work folder ``root``."""
        return Path(root) / self.spec.name

    def recipe(self, row: Row) -> Path:
        """The row's recipe file (``spec.recipe`` with ``{model}``: the row's recipe or model name)."""
        path = Path(self.spec.recipe.format(model=row.recipe or row.model))
        return self.recipes / path.name if self.recipes is not None else path

    def prepare(self, work: Path) -> Path:
        """The benchmark's data (made or found once); returns its root."""
        raise NotImplementedError

    def training_data(self, row: Row, data: Path) -> Path:
        """The folder ``row`` trains on, made once (the benchmark's own data unless its protocol changes them)."""
        return data

    def warm_up(self, rows: Sequence[Row]) -> None:
        """One training step of each row's model on random images of the recipe's batch size and the benchmark's
        size, outside every timed training: builds the InfoDrop kernel and pays the first-call costs (allocator,
        kernel selection) once. The random state is left as it was."""
        size = (3, self.spec.image_size, self.spec.image_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for row in rows:
                batch = int(yaml.safe_load(self.recipe(row).read_text()).get('batch_size') or 8)
                model = timm.create_model(row.model, num_classes=len(self.spec.classes), **row.model_kwargs).train()
                loss = torch.nn.functional.cross_entropy(
                    model(torch.rand(batch, *size)), torch.randint(len(self.spec.classes), (batch,)))
                loss.backward()

    def check_cells(self, data: Path, cells: Sequence[str]) -> None:
        unknown = [c for c in cells if c not in self.spec.cells]
        if unknown:
            raise DataError(f'unknown {self.spec.name} cell(s) {unknown}; {self.spec.name} has {list(self.spec.cells)}')

    def train_config(self, row: Row, cell: str, seed: int, data: Path, run_dir: Path) -> TrainConfig:
        raise NotImplementedError

    def row_settings(self, row: Row) -> Dict[str, Any]:
        """The trainer settings ``row`` changes from its recipe (its epochs, its ``settings``), under the command
        line's (``options.train``), which win."""
        changes = {} if row.epochs is None else {'epochs': row.epochs}
        changes.update(row.settings)
        changes.update(self.options.train)
        return changes

    def loaders(self, row: Row, cell: str, seed: int, data: Path, config: TrainConfig, data_config: Dict):
        """``(recalibrate, val, finetune, classes)``: the converter's loaders over the training data."""
        raise NotImplementedError

    def evaluate(self, model, row: Row, cell: str, seed: int, data: Path, config: TrainConfig) -> Tuple[Dict, Dict]:
        """``(metrics, extra)`` of the deployed ``model``: the scores summarised, and what else the record keeps."""
        raise NotImplementedError

    def derived(self, records: List[Dict]) -> Dict[Tuple[str, str, int], Dict[str, float]]:
        """Metrics of a run computed against other runs (e.g. mCE against the baseline's same seed)."""
        return {}

    def costs(self, row: Row) -> Dict[str, float]:
        """Per-row constants the summary adds (e.g. parameters, FLOPs)."""
        return {}

    def run_info(self, records: List[Dict]) -> Dict:
        """What the benchmark adds to the results folder's ``run.json``."""
        return {}

    def pictures(self, results: Path, summary: Dict, records: List[Dict], work: Path) -> List[str]:
        """Draw the report's pictures into ``results`` from the records (and what of ``work`` is on this machine);
        returns their file names, in the report's order."""
        return []

    def findings(self, results: Path, summary: Dict, records: List[Dict], gains: List[Dict], recipes=None) -> Dict:
        """What the kind's template partials word, as data (:mod:`.findings`): added to the documents' section of
        this benchmark (:func:`timm_infodrop.zoo.render.section`)."""
        return {}

    def drop_site_images(self, data: Path, count: int, seed: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``count`` images of the benchmark (uint8 (N, H, W, 3), a seeded choice) for the drop-sites study
        (:mod:`.drop_sites`), with their object masks (float (N, H, W) in [0, 1]) where the benchmark has them
        (None otherwise)."""
        raise ConfigError(f'the {self.spec.kind} kind has no images for a drop-sites study')


def repository_commit() -> str:
    """The repository commit the zoo runs at ('' outside a git checkout)."""
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ''


def record_path(results: Path, row: str, cell: str, seed: int) -> Path:
    return Path(results) / row / cell / f'seed{seed}' / RUN_FILE


def _epoch_log(run_dir: Path) -> List[Dict]:
    """The training log (every epoch, those before an interruption included)."""
    with (run_dir / 'summary.csv').open() as f:
        return [{k: float(v) if v not in ('', None) else None for k, v in row.items()} for row in csv.DictReader(f)]


def run_folders(work: Path, row: str, cell: str, seed: int) -> Tuple[Path, Path]:
    """The trainer's run folder (``args.yaml``, the log, checkpoints) and the deploy folder of one run in ``work``."""
    name = f'{row}-{cell}-seed{seed}'
    return Path(work) / 'runs' / name, Path(work) / 'deploy' / name


def run_one(bench: Benchmark, row: Row, cell: str, seed: int, data: Path, work: Path, results: Path,
            progress: bool = True) -> Dict:
    """Train, convert, evaluate one (row, cell, seed); returns its record, also written to :func:`record_path`."""
    run_dir, deploy = run_folders(work, row.name, cell, seed)
    state = run_dir / STATE_FILE
    resume = str(state) if state.is_file() and not (run_dir / 'model.safetensors').is_file() else ''
    config = bench.train_config(row, cell, seed, data, run_dir).replace(
        resume=resume, overwrite=not resume, no_progress=not progress)
    result = train(config)
    start = time.perf_counter()  # deploy and evaluation; training's minutes come from its log
    data_config = resolve_data_config(config.as_dict(), model=result.model)
    recalibrate, val, finetune, classes = bench.loaders(row, cell, seed, data, config, data_config)
    torch.manual_seed(seed)
    plain, report = convert(result.model, recalibrate, val, recalibrate_batches=bench.recalibrate_batches,
                            finetune_epochs=bench.finetune_epochs, finetune_lr=bench.finetune_lr,
                            finetune_params='all', finetune_loader=finetune)
    report.update(recalibrate_batches=bench.recalibrate_batches, finetune_epochs=bench.finetune_epochs,
                  finetune_lr=bench.finetune_lr, finetune_params='all', no_aug=not bench.finetune_aug)
    save_model_folder(plain, deploy, data_config, classes)
    deployed = timm.create_model(f'local-dir:{deploy}', pretrained=True).eval()
    metrics, extra = bench.evaluate(deployed, row, cell, seed, data, config)
    log = _epoch_log(run_dir)
    train_minutes = sum(epoch['seconds'] for epoch in log) / 60  # a resumed run's epochs before the interruption too
    record = {'benchmark': bench.spec.name, 'row': row.name, 'model': row.model,
              'model_kwargs': {k: v for k, v in config.model_kwargs.items() if k != 'pretrained_cfg_overlay'},
              'texture': row.texture, 'cell': cell, 'seed': seed, 'classes': list(classes), 'epochs': config.epochs,
              'finetune_epochs': bench.finetune_epochs, 'recipe': str(bench.recipe(row)), 'metrics': metrics,
              'convert': {k: report.get(k) for k in CONVERT_FIELDS}, 'epoch_log': log, 'train_minutes': train_minutes,
              'total_minutes': train_minutes + (time.perf_counter() - start) / 60,
              'deploy': str(deploy), 'commit': repository_commit(), **extra}
    path = record_path(results, row.name, cell, seed)
    shutil.copy2(run_dir / 'summary.csv', _parent(path) / 'summary.csv')
    with atomic_output(path) as tmp:  # last: a run with a record is finished
        tmp.write_text(json.dumps(record, indent=2) + '\n')
    return record


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def run_benchmark(bench: Benchmark, rows: Sequence[str], cells: Sequence[str], seeds: Sequence[int], work: Path,
                  results: Path, progress: bool = True) -> List[Dict]:
    """Every (seed, cell, row) without a record in ``results``, seed-major (every row gets seed 0 before any
    gets seed 1), the baseline first within each; returns the new records."""
    unknown = [r for r in rows if r not in bench.rows]
    if unknown:
        raise ConfigError(f'unknown {bench.spec.name} rows {unknown}; rows: {list(bench.rows)}')
    if bench.baseline not in rows and not (Path(results) / bench.baseline).is_dir():
        raise ConfigError(f'the {bench.spec.name} zoo compares every row with {bench.baseline}: add it to --rows')
    missing = sorted({str(bench.recipe(bench.rows[r])) for r in rows if not bench.recipe(bench.rows[r]).is_file()})
    if missing:
        raise FileNotFoundError(f'no recipe {missing} (run from the repository root or pass --recipes)')
    start = time.perf_counter()
    data = bench.prepare(Path(work))
    bench.check_cells(data, cells)
    order = sorted(rows, key=lambda r: r != bench.baseline)
    todo = [(seed, cell, row) for seed in seeds for cell in cells for row in order
            if not record_path(results, row, cell, seed).is_file()]
    setup = set_up(bench, data, [bench.rows[r] for r in order if any(t[2] == r for t in todo)],
                   data_minutes=(time.perf_counter() - start) / 60) if todo else None
    records = []
    for i, (seed, cell, row) in enumerate(todo):
        print(f'== {bench.spec.name} zoo {i + 1}/{len(todo)}: {row}, {cell}, seed {seed}', flush=True)
        records.append(run_one(bench, bench.rows[row], cell, seed, data, work, results, progress))
        if i == 0:  # with the first record: a run that fails writes nothing into the results
            with atomic_output(Path(results) / SETUP_FILE) as tmp:
                tmp.write_text(json.dumps(setup, indent=2) + '\n')
    return records


def set_up(bench: Benchmark, data: Path, rows: Sequence[Row], data_minutes: float = 0.0) -> Dict:
    """Everything a first run pays once, before any training: each row's training data
    (:meth:`Benchmark.training_data`: e.g. the texture-suppressed copies) and :meth:`Benchmark.warm_up`; timed,
    with ``data_minutes`` (making or finding the benchmark's data). Returns ``{minutes, steps: {data,
    training_data, warm_up}, rows}`` (minutes), which :func:`run_benchmark` writes to ``results/setup.json``
    with the first record."""
    start = time.perf_counter()
    for row in rows:
        bench.training_data(row, data)
    made = time.perf_counter()
    bench.warm_up(rows)
    steps = {'data': data_minutes, 'training_data': (made - start) / 60, 'warm_up': (time.perf_counter() - made) / 60}
    return {'minutes': sum(steps.values()), 'steps': steps, 'rows': [row.name for row in rows]}


def collect(results: Path) -> List[Dict]:
    """Every run record under ``results`` (``<row>/<cell>/seed<k>/run.json``), by row, cell and seed."""
    paths = Path(results).glob(f'*/*/seed*/{RUN_FILE}')
    return [json.loads(p.read_text()) for p in sorted(paths, key=lambda p: (p.parts[-4], p.parts[-3],
                                                                              int(p.parts[-2][len('seed'):])))]


def summarize(bench: Benchmark, records: List[Dict]) -> Dict[str, Dict[str, Dict[str, Dict]]]:
    """``{row: {cell: {metric: describe(...)}}}`` over seeds: the records' metrics, the minutes, the converter's
    steps (``convert_<step>``), the benchmark's derived metrics and per-row costs; rows in the registry's order."""
    if not records:
        raise DataError(f'no {bench.spec.name} runs: run `timm-infodrop zoo run --benchmark {bench.spec.name}` first')
    derived = bench.derived(records)
    values: Dict[str, Dict[str, Dict[str, Dict[int, float]]]] = {}
    for r in records:
        row = {**r['metrics'], **derived.get((r['row'], r['cell'], r['seed']), {}),
               'train_minutes': r['train_minutes'], 'total_minutes': r['total_minutes'],
               **{k: v for k, v in r['convert'].items() if k.startswith('top1_') and v is not None}}
        for metric, value in row.items():
            values.setdefault(r['row'], {}).setdefault(r['cell'], {}).setdefault(metric, {})[r['seed']] = value
    order = list(bench.rows)
    summary = {}
    for row in sorted(values, key=lambda r: (order.index(r) if r in order else len(order), r)):
        costs = {k: describe([v]) for k, v in bench.costs(bench.rows.get(row) or Row(row, row)).items()}
        summary[row] = {cell: {**{m: describe(list(v.values()), list(v)) for m, v in per.items()}, **costs}
                        for cell, per in sorted(values[row].items())}
    return summary


def write_summary(bench: Benchmark, results: Path) -> Tuple[Dict, Dict]:
    """``summary.json`` and ``run.json`` of the results folder, each written atomically; returns both."""
    records = collect(results)
    summary = summarize(bench, records)
    by_commit: Dict[str, List[str]] = {}
    for r in records:
        rows = by_commit.setdefault(r.get('commit', ''), [])
        rows += [] if r['row'] in rows else [r['row']]
    run = {'benchmark': bench.spec.name, 'seeds': sorted({r['seed'] for r in records}),
           'cells': sorted({r['cell'] for r in records}), 'runs': len(records),
           'minutes': round(sum(r['total_minutes'] for r in records), 1), 'commits': by_commit,
           **bench.run_info(records)}
    setup = Path(results) / SETUP_FILE
    if setup.is_file():  # the last set-up, apart from every run's minutes
        info = json.loads(setup.read_text())
        run['setup'] = {'minutes': round(info['minutes'], 2),
                        'steps': {k: round(v, 2) for k, v in info['steps'].items()}, 'rows': info['rows']}
    for name, value in (('summary.json', summary), (RUN_FILE, run)):
        with atomic_output(Path(results) / name) as tmp:
            tmp.write_text(json.dumps(value, indent=2) + '\n')
    return summary, run
