"""The synthetic benchmark's calibration study: single runs scored on a ``make-data`` folder, and its page.

``timm-infodrop study calibrate --data DATA --out FOLDER`` (:func:`calibrate`) trains one row on the benchmark
folder ``DATA`` through the zoo's own run path (:func:`~.pipeline.run_one`: the library trainer with the baseline's
CPU recipe at the folder's image size, the converter's strip (and with ``--recalibrate`` its BN recalibration, no
finetuning), the kind's evaluation of the deployed model, :func:`timm_infodrop.eval.suite.evaluate_folder`) in a
temporary work folder, and appends one :class:`CalibrationRecord` to ``FOLDER/calibration.jsonl``
(:mod:`timm_infodrop.records`). The folder's ``benchmark.json`` gives the generator's knobs the record keeps, so
runs on benchmarks drawn with other knobs (``make-data --set``) compare in one table: ``docs/benchmark.md``
(:func:`write_benchmark_doc`), and the card's investigation of InfoDrop's settings.
"""
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence

import yaml

from ..data.shapes import ShapesConfig
from ..errors import ConfigError, DataError
from ..io import atomic_output, check_output_path
from ..records import load_records
from ..registry import SHAPES, Row
from ..train.config import load_recipe
from .facts import recipe, recipe_text
from .formatting import render
from .pipeline import Benchmark, run_folders, run_one

__all__ = ['CalibrationRecord', 'CALIBRATION_FILE', 'BENCHMARK_TARGETS', 'load', 'benchmark_config', 'shapes_config',
           'calibrate', 'render_benchmark_doc', 'write_benchmark_doc']

CALIBRATION_FILE = 'calibration.jsonl'
EVALUATED = ('as trained', 'recalibrated')
SCORES = ('top1', 'silhouette_top1', 'texture_only_top1', 'shape_bias')
# what a plain resnet18 should score on the benchmark at the quick budget (the benchmark's design targets)
BENCHMARK_TARGETS = {'top1': '>= 0.90', 'silhouette_top1': '>= 0.40', 'texture_only_top1': '>= 0.40',
                     'shape_bias': '0.15 - 0.50'}


@dataclass(frozen=True)
class CalibrationRecord:
    """One training run scored on the benchmark: a line of ``calibration.jsonl``."""
    VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = 'calibration'
    version: int
    command: str  # the command that made the record (the options it was given that differ from the defaults)
    model: str  # timm architecture
    model_kwargs: Dict[str, Any]  # for timm.create_model
    epochs: int
    lr: float
    train: int  # training images
    seed: int  # training seed
    evaluated: str  # 'as trained', or 'recalibrated': stripped and BN-recalibrated over the training images
    knobs: Dict[str, Any]  # the benchmark knobs (ShapesConfig fields) the run changed from the defaults of its time
    config: Dict[str, Any]  # the whole ShapesConfig of the benchmark
    train_minutes: float
    total_minutes: float
    final_train_top1: float  # training top-1 of the last epoch
    top1: float  # val
    silhouette_top1: float
    texture_only_top1: float
    shape_bias: float  # on cue_conflict
    top1_as_trained: Optional[float] = None  # val top-1 before the recalibration ('recalibrated' only)
    note: str = ''

    def check(self) -> None:
        if self.evaluated not in EVALUATED:
            raise ValueError(f"'evaluated' must be one of {list(EVALUATED)}, got {self.evaluated!r}")
        if (self.top1_as_trained is not None) != (self.evaluated == 'recalibrated'):
            raise ValueError("'top1_as_trained' is given with evaluated 'recalibrated' and only then")
        for name in (*SCORES, 'final_train_top1', *(['top1_as_trained'] if self.top1_as_trained is not None else [])):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'{name!r} must be in [0, 1], got {getattr(self, name)}')
        for name in ('epochs', 'train'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name!r} must be >= 1, got {getattr(self, name)}')


def load(path) -> List[CalibrationRecord]:
    """The records of a ``calibration.jsonl`` (:func:`timm_infodrop.records.load_records`)."""
    return load_records(path, CalibrationRecord)


def benchmark_config(data) -> Dict[str, Any]:
    """The ShapesConfig (as a dict) of a ``timm-infodrop make-data`` folder, from its ``benchmark.json``."""
    marker = Path(data) / 'benchmark.json'
    if not marker.is_file():
        raise DataError(f'{str(data)!r} has no benchmark.json: write the benchmark with timm-infodrop make-data')
    try:
        return dict(json.loads(marker.read_text())['config'])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataError(f'{str(marker)!r} is not a make-data benchmark.json ({type(error).__name__}: '
                        f'{error})') from None


def shapes_config(data) -> ShapesConfig:
    """The :class:`~timm_infodrop.data.shapes.ShapesConfig` a ``make-data`` folder was drawn with."""
    return ShapesConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in benchmark_config(data).items()})


def _knobs(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields of ``config`` that differ from the current ShapesConfig defaults."""
    defaults = ShapesConfig().to_dict()
    return {k: v for k, v in config.items() if json.loads(json.dumps(defaults.get(k))) != v}


def calibrate(bench: Benchmark, model: Optional[str] = None, model_kwargs: Optional[Mapping[str, Any]] = None,
              recipe_file: Optional[Path] = None, recalibrate: bool = False, seed: int = 0, command: str = '',
              note: str = '', progress: bool = True, **settings) -> CalibrationRecord:
    """Train ``model`` (default: the recipe's) on the synthetic benchmark ``bench``'s data (opened with
    ``options.data_root``, the ``make-data`` folder) and score the deployed model; returns its record.

    ``recipe_file``: a recipe in place of the baseline's (``bench.recipes`` is its folder); ``settings``: trainer
    fields over it (``epochs``, ``lr``, ``batch_size``, ``device``...). The image size is the folder's. The run's
    work folder is temporary: the record is the result."""
    if not bench.options.data_root:
        raise ConfigError('the calibration study runs on a make-data folder: give it as the data root')
    data = bench.prepare(Path(bench.options.data_root))
    config = benchmark_config(data)
    baseline = bench.rows[bench.baseline]
    model = model or (load_recipe(recipe_file).get('model') if recipe_file else None) or baseline.model
    recipe_name = Path(recipe_file).stem if recipe_file else baseline.recipe or baseline.model
    row = Row(model, model, dict(model_kwargs or {}), recipe=recipe_name,
              settings=dict(settings, img_size=int(config['size'])))
    bench.recalibrate_batches = None if recalibrate else 0
    cell = bench.spec.cells[0]
    with tempfile.TemporaryDirectory(prefix='timm-infodrop-calibrate-') as work:
        record = run_one(bench, row, cell, seed, data, Path(work), Path(work) / 'results', progress)
        args = yaml.safe_load((run_folders(Path(work), row.name, cell, seed)[0] / 'args.yaml').read_text())
    train = json.loads((data / 'train' / 'metadata.json').read_text())['samples']
    scores = {k: float(record['metrics'][k]) for k in SCORES}
    out = CalibrationRecord(
        version=CalibrationRecord.VERSION, command=command, model=model, model_kwargs=record['model_kwargs'],
        epochs=record['epochs'], lr=float(args['lr']), train=len(train), seed=seed,
        evaluated='recalibrated' if recalibrate else 'as trained', knobs=_knobs(config), config=config,
        train_minutes=record['train_minutes'], total_minutes=record['total_minutes'],
        final_train_top1=float(record['epoch_log'][-1]['train_top1']), note=note,
        top1_as_trained=float(record['convert']['top1_source']) if recalibrate else None, **scores)
    out.check()
    return out


def render_benchmark_doc(records: Sequence[CalibrationRecord], source) -> str:
    """docs/benchmark.md: the calibration records' table with how they were made."""
    programs = sorted({r.command.split(' --')[0] for r in records})
    settings = {k: v for k, v in recipe(SHAPES.baseline).items() if k != 'img_size'}  # at the folder's size
    return render('benchmark.md.j2', targets=', '.join(f'{k} {v}' for k, v in BENCHMARK_TARGETS.items()),
                  programs=', '.join(f'`{p}`' for p in programs) or 'none yet', records=str(source),
                  settings=recipe_text(settings), runs=records)


def write_benchmark_doc(records_path, out) -> Path:
    """Render the calibration page from ``records_path`` (a calibration.jsonl) into ``out`` (.md), atomically;
    the records are an input and never the output."""
    out = check_output_path(out, overwrite=True, suffixes=('.md',), inputs=[records_path])
    text = render_benchmark_doc(load(records_path), records_path)
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return out
