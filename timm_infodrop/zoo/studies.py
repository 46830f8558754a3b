"""The zoo's studies of the synthetic benchmark, and the one schema their records are read back by.

Two studies, each run by ``timm-infodrop study ACTION --data BENCHMARK --out FOLDER`` (:mod:`timm_infodrop.cli.study`):

* ``calibrate`` (:func:`calibrate`): train a model on a ``timm-infodrop make-data`` benchmark with the library
  trainer (:func:`timm_infodrop.train.train`), score it on the benchmark's val, silhouette, texture-only and
  cue-conflict splits (optionally after the converter's strip and BN recalibration), and append one
  :class:`CalibrationRecord` to ``FOLDER/calibration.jsonl``;
* ``drop-sites`` (:func:`drop_sites`): where InfoDrop's stem drops land on the benchmark's val images (outline,
  object interior, background) for a few settings; appends one :class:`DropSitesRecord` to
  ``FOLDER/drop_sites.jsonl``.

Format: JSON Lines, one record a line, every record with ``version`` (:data:`RECORD_VERSION`). :func:`load_records`
validates each line against its dataclass (required fields, no unknown ones, types, ranges) and raises a
:class:`~timm_infodrop.errors.DataError` naming the file and the line.
"""
import json
import math
import tempfile
import time
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

from ..errors import ConfigError, DataError
from ..io import atomic_output, check_output_path
from .facts import recipe_text
from .formatting import fixed, knob_text, kwargs_text, render

__all__ = ['RECORD_VERSION', 'CalibrationRecord', 'DropSite', 'DropSitesRecord', 'CALIBRATION_FILE',
           'DROP_SITES_FILE', 'CALIBRATION_SETTINGS', 'DROP_SETTINGS', 'load_records', 'append_record',
           'record_line', 'calibrate', 'drop_sites', 'benchmark_config', 'same_benchmark', 'calibration_table',
           'render_benchmark_doc', 'BENCHMARK_TARGETS']

RECORD_VERSION = 1
CALIBRATION_FILE = 'calibration.jsonl'
DROP_SITES_FILE = 'drop_sites.jsonl'
EVALUATED = ('as trained', 'recalibrated')
SCORES = ('top1', 'silhouette_top1', 'texture_only_top1', 'shape_bias')


@dataclass(frozen=True)
class CalibrationRecord:
    """One training run scored on the benchmark: a line of ``calibration.jsonl``."""
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


@dataclass(frozen=True)
class DropSite:
    """Mean marginal drop probability of the stem's units per region, for one InfoDrop setting."""
    temperature: float
    drop_rate: float
    radius: int
    all: float
    outline: float  # cells the silhouette's edge crosses, and their neighbours
    interior: float  # inside the object, off the outline
    background: float  # outside the object, off the outline

    def check(self) -> None:
        for name in ('all', 'outline', 'interior', 'background'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'{name!r} must be in [0, 1], got {getattr(self, name)}')


@dataclass(frozen=True)
class DropSitesRecord:
    """One drop-sites measurement: a line of ``drop_sites.jsonl``; ``settings[0]`` is the released defaults."""
    version: int
    command: str
    images: int  # val images measured
    area: Dict[str, float]  # share of the pooled grid per region
    settings: List[DropSite]

    def check(self) -> None:
        if sorted(self.area) != ['background', 'interior', 'outline']:
            raise ValueError(f"'area' must have the keys background, interior, outline, got {sorted(self.area)}")
        if not self.settings:
            raise ValueError("'settings' is empty")
        if self.images < 1:
            raise ValueError(f"'images' must be >= 1, got {self.images}")


Record = TypeVar('Record', CalibrationRecord, DropSitesRecord)
KINDS = {CalibrationRecord: 'calibration', DropSitesRecord: 'drop-sites'}


# ---------------------------------------------------------------------------------------------- the schema
def _type_name(kind) -> str:
    return getattr(kind, '__name__', None) or str(kind).replace('typing.', '')


def _parse(value: Any, kind, where: str) -> Any:
    """``value`` (decoded JSON) as ``kind``, or ValueError naming ``where``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        return _parse(value, next(a for a in args if a is not type(None)), where)
    if kind is Any:
        return value
    if kind is bool or kind is str:
        if type(value) is not kind:
            raise ValueError(f'{where} must be a {kind.__name__}, got {value!r}')
        return value
    if kind is int:
        if type(value) is not int:
            raise ValueError(f'{where} must be an integer, got {value!r}')
        return value
    if kind is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f'{where} must be a finite number, got {value!r}')
        return float(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f'{where} must be an object, got {value!r}')
        return {key: _parse(item, args[1], f'{where}[{key!r}]') for key, item in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f'{where} must be a list, got {value!r}')
        return [_parse(item, args[0], f'{where}[{i}]') for i, item in enumerate(value)]
    if isinstance(kind, type) and hasattr(kind, '__dataclass_fields__'):
        return _from_dict(value, kind, where)
    raise TypeError(f'no parser for {_type_name(kind)}')  # a schema bug, not bad input


def _from_dict(value: Any, cls: Type, where: str):
    if not isinstance(value, dict):
        raise ValueError(f'{where} must be an object, got {value!r}')
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in value]
    if missing:
        raise ValueError(f'{where} lacks {", ".join(repr(m) for m in missing)}')
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f'{where} has unknown fields {", ".join(repr(u) for u in unknown)}')
    parsed = {name: _parse(value[name], hints[name], f'{where}.{name}' if where else repr(name))
              for name in names if name in value}
    record = cls(**parsed)
    record.check()
    return record


def _record(value: Any, cls: Type[Record]) -> Record:
    if not isinstance(value, dict):
        raise ValueError(f'a record is a JSON object, got {type(value).__name__}')
    version = value.get('version')
    if version != RECORD_VERSION:
        raise ValueError(f"'version' must be {RECORD_VERSION} (the version this timm-infodrop reads), got {version!r}")
    return _from_dict(value, cls, '')


def load_records(path, cls: Type[Record]) -> List[Record]:
    """Every record of the JSON Lines file ``path``, validated as ``cls`` (blank lines are skipped).

    Raises:
        FileNotFoundError: no such file.
        DataError: ``PATH:LINE: <kind> record: <what is wrong>`` for the first malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{str(path)!r}: no such {KINDS[cls]} records file')
    records = []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f'{path}: not a text file of {KINDS[cls]} records ({error})') from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_record(json.loads(line), cls))
        except json.JSONDecodeError as error:
            raise DataError(f'{path}:{number}: {KINDS[cls]} record: not JSON ({error})') from None
        except (ValueError, TypeError) as error:
            message = ' '.join(str(error).split())
            raise DataError(f'{path}:{number}: {KINDS[cls]} record: {message}') from None
    return records


def record_line(record) -> str:
    """The record as its one JSON line (fields in schema order)."""
    return json.dumps(asdict(record), allow_nan=False)


def append_record(path, record: Record) -> Path:
    """Append ``record`` to the JSON Lines file ``path`` (created if missing), after checking that the
    records already there load (a malformed file is refused, not extended); written atomically."""
    path = Path(path)
    _record(json.loads(record_line(record)), type(record))  # what is written loads back
    existing = path.read_text() if path.is_file() else ''
    if existing:
        load_records(path, type(record))
    with atomic_output(path) as tmp:
        tmp.write_text(existing + ('' if not existing or existing.endswith('\n') else '\n') + record_line(record) + '\n')
    return path


# ---------------------------------------------------------------------------------------------- the benchmark
def benchmark_config(data) -> Dict[str, Any]:
    """The ShapesConfig (as a dict) of a ``timm-infodrop make-data`` folder, from its ``benchmark.json``."""
    marker = Path(data) / 'benchmark.json'
    if not marker.is_file():
        raise DataError(f'{str(data)!r} has no benchmark.json: write the benchmark with timm-infodrop make-data')
    try:
        return dict(json.loads(marker.read_text())['config'])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataError(f'{str(marker)!r} is not a make-data benchmark.json ({type(error).__name__}: {error})') from None


def _shapes_config(config: Dict[str, Any]):
    from ..data.shapes import ShapesConfig
    return ShapesConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def _knobs(config: Dict[str, Any]) -> Dict[str, Any]:
    """The fields of ``config`` that differ from the current ShapesConfig defaults."""
    from ..data.shapes import ShapesConfig
    defaults = ShapesConfig().to_dict()
    return {k: v for k, v in config.items() if json.loads(json.dumps(defaults.get(k))) != v}


def same_benchmark(record: CalibrationRecord, config: Dict[str, Any]) -> bool:
    return record.config == config


# ---------------------------------------------------------------------------------------------- calibrate
# the calibration's trainer settings (those of the zoo's CPU recipes, zoo/recipes/resnet18.yaml); a recipe
# file given to calibrate replaces them
CALIBRATION_SETTINGS = dict(model='resnet18', crop_pct=1.0, batch_size=64, epochs=6, opt='sgd', lr=0.05, momentum=0.9,
                            weight_decay=5e-4, sched='cosine', warmup_epochs=0, no_aug=True, smoothing=0.0, workers=0,
                            device='cpu')


def _score(model, data: Path, limit: Optional[int]) -> Dict[str, float]:
    """val, silhouette and texture-only top-1 and cue-conflict shape bias on the benchmark folder."""
    from ..eval.benchmark import normalizer
    from ..eval.metrics import predict_images, shape_bias, top1
    from ..eval.suite import load_split, model_label_map

    normalize = normalizer(model)
    splits = {split: load_split(data, split, limit) for split in ('val', 'silhouette', 'texture_only', 'cue_conflict')}
    to_model = model_label_map(model, splits['val'][2]['shapes'])
    scores = {}
    for split, key, label in (('val', 'top1', 'shape'), ('silhouette', 'silhouette_top1', 'shape'),
                              ('texture_only', 'texture_only_top1', 'texture')):
        images, records, _ = splits[split]
        scores[key] = top1(predict_images(model, images, normalize), to_model[[r[label] for r in records]])
    images, records, _ = splits['cue_conflict']
    scores['shape_bias'] = shape_bias(predict_images(model, images, normalize), to_model[[r['shape'] for r in records]],
                                      to_model[[r['texture'] for r in records]])
    return scores


def _recalibrated(model, data: Path, batch_size: int, seed: int):
    """The converter's strip, then BN recalibration over the training images (shuffled batches)."""
    import torch

    from ..convert import recalibrate_bn, strip
    from ..eval.benchmark import normalizer
    from ..eval.metrics import images_to_tensor
    from ..eval.suite import load_split

    images, _, _ = load_split(data, 'train')
    x = normalizer(model)(images_to_tensor(images))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(len(x), dtype=torch.long)),
                                         batch_size=batch_size, shuffle=True, drop_last=len(x) >= batch_size,
                                         generator=torch.Generator().manual_seed(seed))
    return recalibrate_bn(strip(model), loader)


def calibrate(data, recipe=None, recalibrate: bool = False, eval_images: Optional[int] = None, command: str = '',
              progress: bool = True, **settings) -> CalibrationRecord:
    """Train on the benchmark folder ``data`` with the library trainer and score the model; returns its record.

    ``recipe``: a recipe file whose settings replace :data:`CALIBRATION_SETTINGS`; ``settings``: trainer fields
    (``model``, ``model_kwargs``, ``epochs``, ``lr``, ``batch_size``, ``seed``, ``device``...) over both. The
    image size is the benchmark's. The trainer's run folder is temporary: the record is the result.
    ``eval_images``: at most this many images per evaluation split (default: all).
    """
    from ..train import TrainConfig, train
    from ..train.trainer import _lr

    start = time.perf_counter()
    data = Path(data)
    config = benchmark_config(data)
    if eval_images is not None and eval_images < 1:
        raise ConfigError(f'--eval-images must be >= 1, got {eval_images}')
    base = TrainConfig.from_recipe(recipe) if recipe else TrainConfig().replace(**CALIBRATION_SETTINGS)
    with tempfile.TemporaryDirectory(prefix='timm-infodrop-calibrate-') as work:
        train_config = base.replace(**settings).replace(
            data_dir=str(data), img_size=int(config['size']), val_split='', output=work, experiment='run',
            overwrite=True, no_progress=not progress, resume='')
        result = train(train_config)
    model = result.model.eval()
    scores = _score(model, data, eval_images)
    as_trained = None
    if recalibrate:
        as_trained = scores['top1']
        model = _recalibrated(model, data, train_config.batch_size, train_config.seed)
        scores = _score(model, data, eval_images)
    from ..eval.suite import load_split
    train_images = len(load_split(data, 'train')[1])
    record = CalibrationRecord(
        version=RECORD_VERSION, command=command, model=train_config.model, model_kwargs=dict(train_config.model_kwargs),
        epochs=train_config.epochs, lr=float(_lr(train_config, 1)),
        train=train_images, seed=train_config.seed, evaluated='recalibrated' if recalibrate else 'as trained',
        knobs=_knobs(config), config=config,
        train_minutes=sum(row['seconds'] for row in result.history) / 60,
        total_minutes=(time.perf_counter() - start) / 60,
        final_train_top1=float(result.history[-1]['train_top1']), top1_as_trained=as_trained, **scores)
    record.check()
    return record


def calibration_table(records: Sequence[CalibrationRecord]) -> str:
    """A markdown table of calibration records, in order (docs/benchmark.md)."""
    lines = ['| # | model | knobs | train imgs | epochs | lr | seed | evaluated | val top-1 | silhouette | texture-only '
             '| shape bias | train min |',
             '| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |']
    for i, r in enumerate(records, 1):
        kwargs = kwargs_text(r.model_kwargs)
        lines.append(f"| {i} | {r.model}{f' ({kwargs})' if kwargs else ''} | {knob_text(r.knobs) or 'defaults'} | "
                     f"{r.train} | {r.epochs} | {r.lr:g} | {r.seed} | {r.evaluated} | {fixed(r.top1)} | "
                     f"{fixed(r.silhouette_top1)} | {fixed(r.texture_only_top1)} | {fixed(r.shape_bias)} | "
                     f"{fixed(r.train_minutes, 1)} |")
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------- drop sites
CELL = 4  # pixels per unit of the pooled grid (the stem's stride 2 x the max-pool's 2)
# (temperature, drop rate, radius): the released defaults, then one change at a time
DROP_SETTINGS: Tuple[Tuple[float, float, int], ...] = ((0.03, 1.5, 3), (0.1, 1.5, 3), (1.0, 1.5, 3), (0.03, 0.5, 3),
                                                       (0.03, 1.5, 6))


def _regions(masks):
    """Boolean (B, 1, H/4, W/4) outline / interior / background cells of silhouette masks (B, 1, H, W)."""
    import torch.nn.functional as F

    high, low = F.max_pool2d(masks, CELL), -F.max_pool2d(-masks, CELL)
    crossed = (high - low) > 0.05
    outline = F.max_pool2d(crossed.float(), 3, 1, 1) > 0
    return {'outline': outline, 'interior': ~outline & (low > 0.5), 'background': ~outline & (high < 0.5)}


def _drop_fractions(images, where: Dict, temperature: float, drop_rate: float, radius: int, seed: int = 0,
                    batch: int = 64) -> Dict[str, float]:
    """Mean marginal drop probability ``1 - (1 - P)^m`` per region of the released stem placement
    (self-information on the normalised image with conv1's geometry, min-pooled like the max-pool);
    batches of 64, as in training, share one mean patch distance."""
    import torch

    from ..layers.info_drop import drop_distribution, keep_probability, self_information
    from ..viz import STEM_CONV, STEM_POOL  # the released resnet stem's geometry

    generator = torch.Generator().manual_seed(seed)
    drops = []
    for start in range(0, len(images), batch):
        info = self_information(images[start:start + batch], **STEM_CONV, radius=radius, num_offsets=9,
                                generator=generator)
        drops.append(1.0 - keep_probability(drop_distribution(info, temperature, **STEM_POOL), drop_rate))
    drop = torch.cat(drops)
    return {'all': drop.mean().item(), **{name: drop[region].mean().item() for name, region in where.items()}}


def drop_sites(data, images: int = 256, settings: Sequence[Tuple[float, float, int]] = DROP_SETTINGS,
               command: str = '') -> DropSitesRecord:
    """Where InfoDrop's stem drops land on the first ``images`` val images of the benchmark folder ``data``:
    the expected drop fraction of the outline, object interior and background cells, per setting."""
    import numpy as np
    import torch
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from ..data.shapes import silhouette_mask
    from ..eval.metrics import images_to_tensor
    from ..eval.suite import load_split

    if images < 1:
        raise ConfigError(f'--images must be >= 1, got {images}')
    if not settings:
        raise ConfigError('no InfoDrop setting to measure')
    data = Path(data)
    config = _shapes_config(benchmark_config(data))
    if config.size % CELL:
        raise DataError(f'the benchmark at {str(data)!r} has {config.size} px images: drop sites need a multiple of {CELL}')
    pixels, records, _ = load_split(data, 'val', images)
    indices = [int(Path(r['file']).stem) for r in records]
    masks = np.stack([silhouette_mask(config, 'val', i) for i in indices]).astype(np.float32)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    x = (images_to_tensor(pixels) - mean) / std
    where = _regions(torch.from_numpy(masks)[:, None])
    measured = [DropSite(temperature=float(t), drop_rate=float(r), radius=int(k),
                         **_drop_fractions(x, where, t, r, k)) for t, r, k in settings]
    record = DropSitesRecord(version=RECORD_VERSION, command=command, images=len(indices),
                             area={k: v.float().mean().item() for k, v in where.items()}, settings=measured)
    record.check()
    return record


# what a plain resnet18 should score on the benchmark at the quick budget (the benchmark's design targets)
BENCHMARK_TARGETS = {'top1': '>= 0.90', 'silhouette_top1': '>= 0.40', 'texture_only_top1': '>= 0.40',
                     'shape_bias': '0.15 - 0.50'}


def render_benchmark_doc(records: Sequence[CalibrationRecord], source) -> str:
    """docs/benchmark.md: the calibration records' table with how they were made."""
    programs = sorted({r.command.split(' --')[0] for r in records})
    return render('benchmark.md.j2', targets=', '.join(f'{k} {v}' for k, v in BENCHMARK_TARGETS.items()),
                  programs=', '.join(f'`{p}`' for p in programs) or 'none yet', records=str(source),
                  settings=recipe_text(CALIBRATION_SETTINGS), table=calibration_table(records))


def write_benchmark_doc(records_path, out) -> Path:
    """Render the calibration page from ``records_path`` (a calibration.jsonl) into ``out`` (.md), atomically;
    the records are an input and never the output."""
    out = check_output_path(out, overwrite=True, suffixes=('.md',), inputs=[records_path])
    text = render_benchmark_doc(load_records(records_path, CalibrationRecord), records_path)
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return out
