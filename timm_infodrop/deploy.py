"""The conversion's file work (``timm-infodrop convert``): checkpoint and data in, a timm model folder out.

:func:`convert_folder` reads the checkpoint and what its run says, builds the ImageFolder loaders, hands the
model work (strip, check, recalibrate and finetune BN) to :mod:`timm_infodrop.convert` and writes a plain timm
model folder that vanilla timm loads.

Checkpoints: everything our trainer and timm's ``train.py`` write (:func:`timm_infodrop.checkpoint.read_state_dict`):
``RUN/model.safetensors``, the trainer's resume state ``RUN/last.safetensors`` (its model weights),
``local-dir:RUN``, timm's ``RUN/last.pth.tar`` and ``RUN/model_best.pth.tar``, and ``hf-hub:`` ids. ``--out
RUN/deploy`` is accepted: it overwrites no input (the inputs are the run's files, not its folder).

The architecture and the evaluation preprocessing come from the checkpoint's run when it has one:

* a timm ``train.py`` checkpoint (``RUN/last.pth.tar``, ``RUN/model_best.pth.tar``...): its ``arch``,
  and ``RUN/args.yaml`` (``model``, ``input_size``, ``img_size``, ``crop_pct``, ``mean``, ``std``,
  ``interpolation``; else the ``args`` saved in the checkpoint);
* ``local-dir:RUN`` (a ``timm-infodrop train`` run): ``RUN/args.yaml``, then ``RUN/config.json``;
* otherwise the source's config (``config.json`` of a model folder, or the variant's default cfg).

The arguments (``model``, ``img_size``, ``crop_pct``, ``mean``, ``std``, ``interpolation``) override. The
preprocessing used is written into the deployed ``config.json``'s ``pretrained_cfg`` (train and test sizes
and crops alike), so timm's ``validate.py`` with its defaults evaluates as the report did.

Messages name the ``timm-infodrop convert`` flags (``--img-size`` for ``img_size``...), the names the
documentation uses.
"""
import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .checkpoint import (BAD_CHECKPOINT_ERRORS, MODEL_FOLDER_PREFIXES, PICKLE_SUFFIXES, RUN_ARGS,
                         check_checkpoint_file, checkpoint_inputs, load_variant, read_args_yaml, unreadable_checkpoint)
from .convert import KEEP_CHOICES
from .errors import CheckpointError, ConfigError, check_ranges
from .io import atomic_directory, check_output_path

__all__ = ['convert_folder', 'convert_summary', 'read_run_args', 'resolve_model_name', 'load_trained', 'data_config',
           'deploy_cfg',
           'folder_loaders', 'write_deploy_folder', 'check_preprocessing', 'check_numbers', 'check_data_dir',
           'peek_checkpoint', 'safe_globals', 'KEEP_CHOICES', 'INTERPOLATIONS', 'SPLITS', 'RUN_ARGS', 'DATA_KEYS']

SPLITS = ('train', 'val')
# the run arguments that decide the evaluation preprocessing (timm's resolve_data_config reads them)
DATA_KEYS = ('input_size', 'img_size', 'in_chans', 'crop_pct', 'crop_mode', 'mean', 'std', 'interpolation')
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'box', 'hamming', 'lanczos')
_OVERRIDES = ('img_size', 'crop_pct', 'mean', 'std', 'interpolation')


def check_data_dir(data_dir) -> Tuple[Path, List[Path]]:
    """``data_dir`` as a Path, an ImageFolder root with ``train/`` and ``val/`` whose classes agree, and its
    unreadable images: up to 1% of each split (:func:`timm_infodrop.data.folders.verify_images`), skipped and
    named as ``train`` does; more is a DataError."""
    from .data.folders import check_image_folders, verify_images

    root = Path(data_dir)
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise FileNotFoundError(f'--data-dir {str(root)!r} has no {" or ".join(f"{m}/" for m in missing)} folder')
    check_image_folders(root, SPLITS)
    return root, [path for split in SPLITS for path in verify_images(root / split)]


# --- what the checkpoint's run says ---------------------------------------------------------------

def safe_globals():
    """timm's train.py pickles its argparse.Namespace into every checkpoint: allow that one class (a plain
    attribute holder) to a weights-only load, nothing else."""
    import torch

    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5
        return contextlib.nullcontext()
    return torch.serialization.safe_globals([argparse.Namespace])


def peek_checkpoint(checkpoint: str) -> Optional[Dict[str, Any]]:
    """The dict of a timm train.py checkpoint (weights-only, memory-mapped); None for a model folder, a
    safetensors file and a pickle that holds no dict.

    Raises:
        FileNotFoundError, CheckpointError: a missing file, an unknown suffix, or a file that does not decode
            (:func:`timm_infodrop.checkpoint.check_checkpoint_file`): the real cause, before anything asks the
            file which architecture it holds.
    """
    import torch

    if checkpoint.startswith(MODEL_FOLDER_PREFIXES):
        return None
    check_checkpoint_file(checkpoint)
    path = Path(checkpoint)
    if not path.name.endswith(PICKLE_SUFFIXES):
        return None
    try:
        with safe_globals():
            try:
                loaded = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            except RuntimeError:  # not a zip archive: mmap needs one
                loaded = torch.load(path, map_location='cpu', weights_only=True)
    except BAD_CHECKPOINT_ERRORS as error:  # unreadable or unsafe (weights_only refuses it)
        raise unreadable_checkpoint(checkpoint, error) from None
    return loaded if isinstance(loaded, dict) else None


def _run_folder(checkpoint: str) -> Optional[Path]:
    if checkpoint.startswith('hf-hub:'):
        return None
    if checkpoint.startswith('local-dir:'):
        return Path(checkpoint[len('local-dir:'):])
    return Path(checkpoint).parent


def read_run_args(checkpoint: str, peeked: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Any], Optional[str]]:
    """The arguments of the run that made ``checkpoint`` and where they come from (``None``: no run).

    ``RUN/args.yaml`` beside a file checkpoint or in a ``local-dir:`` run folder; else the ``args`` a timm
    ``train.py`` checkpoint carries.

    Raises:
        ConfigError: for an args.yaml that is not a YAML mapping.
    """
    folder = _run_folder(checkpoint)
    path = folder / RUN_ARGS if folder is not None else None
    if path is not None and path.is_file():
        run_args = read_args_yaml(path, "the checkpoint's run arguments")
        return run_args, str(path)
    saved = (peeked or {}).get('args')
    if isinstance(saved, argparse.Namespace):
        return vars(saved), f'the args saved in {checkpoint}'
    return {}, None


def resolve_model_name(checkpoint: str, model: Optional[str], peeked: Optional[Dict[str, Any]],
                       run_args: Dict[str, Any], run_source: Optional[str]) -> Optional[str]:
    """``model``, else the checkpoint's ``arch``, else its run's ``model``; None for a model folder (its
    config.json names it). A ``model`` that contradicts the checkpoint is refused."""
    named = [(name, source) for name, source in (
        ((peeked or {}).get('arch'), f'the checkpoint\'s arch ({checkpoint})'),
        (run_args.get('model'), f'model in {run_source}'),
    ) if isinstance(name, str) and name]
    if checkpoint.startswith(MODEL_FOLDER_PREFIXES):
        return model  # the folder's config.json names the architecture; load_variant checks model
    if model:
        for name, source in named[:1]:
            if name.split('.', 1)[0] != model.split('.', 1)[0]:
                raise CheckpointError(f'--model {model} but {source} is {name}: drop --model or give the '
                                      'checkpoint of that model')
        return model
    if not named:
        raise CheckpointError(f'{checkpoint!r} does not name its architecture (no arch in it, no {RUN_ARGS} '
                              'with model beside it): give --model')
    return named[0][0]


def load_trained(checkpoint: str, model: Optional[str] = None):
    """The trained model in ``checkpoint``, as convert and eval load it: named by ``model``, else by the checkpoint
    (:func:`resolve_model_name`: a train.py checkpoint's ``arch``, its run's ``args.yaml``, a folder's config.json),
    built with its run's model keywords (a train.py run's ``--model-kwargs``: a non-default placement) and loaded
    strictly (:func:`timm_infodrop.checkpoint.load_variant`). Returns ``(model, run_args, run_source)``:
    :func:`read_run_args`'s arguments of the run and where they come from.

    Raises:
        FileNotFoundError, CheckpointError, ConfigError: as :func:`peek_checkpoint`, :func:`resolve_model_name`
            and :func:`~timm_infodrop.checkpoint.load_variant` say.
    """
    peeked = peek_checkpoint(checkpoint)
    run_args, run_source = read_run_args(checkpoint, peeked)
    model_name = resolve_model_name(checkpoint, model, peeked, run_args, run_source)
    del peeked
    with safe_globals():  # a train.py checkpoint carries its argparse.Namespace
        model_kwargs = run_args.get('model_kwargs') if isinstance(run_args.get('model_kwargs'), dict) else None
        return load_variant(checkpoint, model_name, model_kwargs or None), run_args, run_source


# --- preprocessing ------------------------------------------------------------------------------------

def check_preprocessing(img_size: Optional[int] = None, crop_pct: Optional[float] = None,
                        mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> None:
    """ConfigError for an override out of range: ``img_size`` >= 1, ``crop_pct`` in (0, 1], finite ``mean``,
    finite ``std`` > 0."""
    check_ranges([('--img-size', img_size, 1), ('--crop-pct', crop_pct, 0, 1, True)]
                 + [('--mean', v) for v in mean or []] + [('--std', v, 0, None, True) for v in std or []])


def check_numbers(recalibrate_batches: Optional[int] = None, finetune_epochs: int = 0, finetune_lr: float = 1e-3,
                  batch_size: int = 32, workers: int = 0) -> None:
    """ConfigError for a conversion number out of range: ``recalibrate_batches`` and ``finetune_epochs``
    >= 0, ``finetune_lr`` > 0, ``batch_size`` >= 1, ``workers`` >= 0 (all finite)."""
    check_ranges([('--recalibrate-batches', recalibrate_batches, 0), ('--finetune-epochs', finetune_epochs, 0),
                  ('--finetune-lr', finetune_lr, 0, None, True), ('--batch-size', batch_size, 1),
                  ('--workers', workers, 0)])


def data_config(model, checkpoint: str, run_args: Dict[str, Any], run_source: Optional[str],
                img_size: Optional[int] = None, crop_pct: Optional[float] = None,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                interpolation: Optional[str] = None) -> Tuple[Dict[str, Any], str]:
    """The evaluation data config (timm's ``resolve_data_config``) and a line saying where it comes from:
    the overrides over the run's arguments over the model's ``pretrained_cfg``."""
    from timm.data import resolve_data_config

    overrides = dict(img_size=img_size, crop_pct=crop_pct, mean=mean, std=std, interpolation=interpolation)
    given = {k: run_args[k] for k in DATA_KEYS if run_args.get(k) not in (None, '', [])}
    flags = {k: v for k, v in overrides.items() if k != 'img_size' and v is not None}
    if img_size is not None:
        channels = given.get('in_chans') or (given.get('input_size') or model.pretrained_cfg['input_size'])[0]
        flags['input_size'] = (channels, img_size, img_size)
    try:
        config = resolve_data_config({**given, **flags}, model=model)
    except (AssertionError, TypeError, ValueError) as error:
        raise ConfigError(f'the preprocessing from {run_source or "the model config"} does not resolve '
                          f'({type(error).__name__}: {error}): {({**given, **flags})}') from None
    if run_source is not None:
        source = run_source
    elif checkpoint.startswith(MODEL_FOLDER_PREFIXES):
        source = f'the config.json of {checkpoint}'
    else:
        source = f'the default config of {model.pretrained_cfg.get("architecture")}'
    overridden = [f'--{k.replace("_", "-")}' for k in _OVERRIDES if overrides[k] is not None]
    line = (f'preprocessing from {source}' + (f', overridden by {" ".join(overridden)}' if overridden else '')
            + f': input_size {tuple(config["input_size"])}, crop_pct {config["crop_pct"]}, crop_mode '
              f'{config["crop_mode"]}, interpolation {config["interpolation"]}, mean {tuple(config["mean"])}, '
              f'std {tuple(config["std"])}')
    return config, line


def deploy_cfg(config: Dict[str, Any]) -> Dict[str, Any]:
    """The ``pretrained_cfg`` fields that make timm's defaults (train and test size alike) evaluate as ``config``."""
    size = tuple(config['input_size'])
    return {'input_size': size, 'test_input_size': size, 'crop_pct': config['crop_pct'],
            'test_crop_pct': config['crop_pct'], 'crop_mode': config['crop_mode'], 'mean': tuple(config['mean']),
            'std': tuple(config['std']), 'interpolation': config['interpolation']}


def folder_loaders(root, model, config: Optional[Dict[str, Any]] = None, img_size: Optional[int] = None,
                   batch_size: int = 32, workers: int = 0, seed: int = 0, no_aug: bool = False,
                   skip: Sequence[Path] = ()):
    """The converter's loaders over the ImageFolder ``root``: ``recalibrate`` (train/, eval transform,
    shuffled), ``finetune`` (train/, training transform, shuffled) and ``val`` (val/, in order); returns
    ``(loaders, val classes, data config)``. ``config`` defaults to the model's, at ``img_size`` if given;
    ``skip``: the unreadable images, left out (:func:`check_data_dir`)."""
    import torch
    from timm.data import create_transform, resolve_data_config

    from .data.folders import image_folder_dataset

    root = Path(root)
    if config is None:
        overrides = {} if img_size is None else {'input_size': (3, img_size, img_size)}
        config = resolve_data_config(overrides, model=model)
    eval_transform = create_transform(**config, is_training=False)
    train_transform = create_transform(**config, is_training=True, no_aug=no_aug)
    datasets = {
        'recalibrate': image_folder_dataset(root / 'train', eval_transform, skip),
        'finetune': image_folder_dataset(root / 'train', train_transform, skip),
        'val': image_folder_dataset(root / 'val', eval_transform, skip),
    }
    generator = torch.Generator().manual_seed(seed)
    # recalibration batches are shuffled too: ImageFolder lists images class by class, and BN's
    # per-batch statistics over one-class batches are not the statistics the model will see
    loaders = {
        name: torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=name != 'val',
                                          num_workers=workers, generator=generator)
        for name, ds in datasets.items()
    }
    return loaders, datasets['val'].classes, config


def convert_summary(report: Dict[str, Any], out) -> str:
    """The one line that sums up a conversion: every step's val top-1, what was kept, the output folder."""
    def fmt(value):
        return 'n/a' if value is None else f'{value:.4f}'

    steps = ', '.join(f'{step} {fmt(report[f"top1_{step}"])}' for step in ('source', 'stripped', 'recalibrated')) \
        + ('' if report['top1_finetuned'] is None else f', finetuned {fmt(report["top1_finetuned"])}')
    return (f'val top-1: {steps}; kept {report["kept"]} (--keep {report["keep"]}): top-1 {fmt(report["top1"])}; '
            f'strip max |diff| {report["strip_max_abs_difference"]:.2g}; wrote {out}')


def write_deploy_folder(plain, out, classes: List[str], report: Dict[str, Any], preprocessing: Dict[str, Any],
                        onnx_input=None, unreadable: Sequence[Path] = ()) -> None:
    """Write ``out`` whole or not at all: ``model.safetensors`` and ``config.json`` (timm's ``save_for_hf``,
    label names ``classes``, ``pretrained_cfg`` carrying ``preprocessing``), ``convert_report.json``, given
    ``onnx_input``, ``model.onnx`` checked against torch on it (``report['onnx_max_abs_difference']``), and given
    ``unreadable`` images (skipped), ``unreadable_images.txt``."""
    import inspect

    from timm.models import save_for_hf

    from .convert import export_onnx
    from .data.folders import write_unreadable

    with atomic_directory(Path(out)) as tmp:
        # pretrained_cfg carries the preprocessing; timm versions whose export resolves it again take it explicitly
        explicit = {'data_config': dict(preprocessing)} if 'data_config' in inspect.signature(save_for_hf).parameters else {}
        save_for_hf(plain, str(tmp), model_config={'label_names': list(classes)}, safe_serialization=True, **explicit)
        written = json.loads((tmp / 'config.json').read_text())['pretrained_cfg']
        differs = {k: (written.get(k), v) for k, v in preprocessing.items()
                   if (list(v) if isinstance(v, tuple) else v) != written.get(k)}
        if differs:  # timm's defaults would evaluate differently from the report: a bug, not a user error
            raise RuntimeError(f'config.json does not carry the preprocessing the report used: {differs}')
        if onnx_input is not None:
            report['onnx_max_abs_difference'] = export_onnx(plain, tmp / 'model.onnx', onnx_input)
        write_unreadable(tmp, unreadable)
        (tmp / 'convert_report.json').write_text(json.dumps(report, indent=2) + '\n')


def convert_folder(
        checkpoint: str,
        data_dir,
        out,
        model: Optional[str] = None,
        recalibrate_batches: Optional[int] = None,
        finetune_epochs: int = 0,
        finetune_lr: float = 1e-3,
        finetune_params: str = 'bn',
        keep: str = 'better',
        no_aug: bool = False,
        export: Optional[str] = None,
        img_size: Optional[int] = None,
        crop_pct: Optional[float] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        interpolation: Optional[str] = None,
        batch_size: int = 32,
        workers: int = 0,
        seed: int = 0,
        overwrite: bool = False,
        log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Convert ``checkpoint`` into the plain timm model folder ``out``; returns the report (``convert_report.json``).

    ``checkpoint``: a ``.safetensors`` file, a timm train.py ``.pth.tar``, ``local-dir:RUN`` or
    ``hf-hub:org/name``; ``data_dir``: an ImageFolder root with ``train/`` (BN recalibration, finetuning) and
    ``val/`` (the reported top-1). ``model`` names the variant when the checkpoint does not (module docstring),
    the preprocessing arguments override the run's. Then :func:`timm_infodrop.convert.convert` with
    ``recalibrate_batches`` (None: one pass over train/; 0 skips), ``finetune_epochs``/``finetune_lr``/
    ``finetune_params``, ``keep``; ``no_aug`` finetunes without augmentation; ``export='onnx'`` also writes
    ``model.onnx``. ``out`` may sit beside the inputs, never be or hold one; an existing ``out`` is replaced
    (atomically) only with ``overwrite``. ``log`` receives the line saying where the preprocessing comes from.

    Raises:
        OutputError, ConfigError, CheckpointError, DataError, FileNotFoundError: input a user can fix, before
            the conversion's work.
    """
    import torch

    from .convert import convert
    from .data.folders import UNREADABLE_FILE, unreadable_note
    from .models._builder import trained_cfg

    if export not in (None, 'onnx'):
        raise ConfigError(f"export must be None or 'onnx', got {export!r}")
    if keep not in KEEP_CHOICES:
        raise ConfigError(f'--keep must be one of {", ".join(KEEP_CHOICES)}, got {keep!r}')
    check_preprocessing(img_size, crop_pct, mean, std)
    check_numbers(recalibrate_batches, finetune_epochs, finetune_lr, batch_size, workers)
    out = check_output_path(out, overwrite, directory=True, inputs=[*checkpoint_inputs(checkpoint), data_dir])
    root, unreadable = check_data_dir(data_dir)
    torch.manual_seed(seed)
    source, run_args, run_source = load_trained(checkpoint, model)
    config, line = data_config(source, checkpoint, run_args, run_source, img_size=img_size, crop_pct=crop_pct,
                               mean=mean, std=std, interpolation=interpolation)
    if log is not None:
        log(line)
        if unreadable:
            log(unreadable_note(unreadable, Path(out) / UNREADABLE_FILE))
    loaders, classes, config = folder_loaders(root, source, config, batch_size=batch_size, workers=workers,
                                              seed=seed, no_aug=no_aug, skip=unreadable)
    if len(classes) != source.num_classes:
        raise CheckpointError(f'the checkpoint has {source.num_classes} classes but {str(root)!r} has {len(classes)}: {classes}')
    size = config['input_size']
    check_input = torch.randn(2, *size, generator=torch.Generator().manual_seed(seed))
    plain, report = convert(
        source, loaders['recalibrate'], loaders['val'], recalibrate_batches, finetune_epochs, finetune_lr,
        finetune_params, check_input=check_input, finetune_loader=loaders['finetune'], keep=keep)
    preprocessing = deploy_cfg(config)
    plain.pretrained_cfg = dict(trained_cfg(plain.pretrained_cfg, size), **preprocessing)
    report.update(source_model=source.pretrained_cfg['architecture'], architecture=plain.pretrained_cfg['architecture'],
                  checkpoint=checkpoint, classes=list(classes), input_size=list(size),
                  preprocessing={k: list(v) if isinstance(v, tuple) else v for k, v in preprocessing.items()},
                  preprocessing_source=line.split(':', 1)[0], keep=keep, recalibrate_batches=recalibrate_batches,
                  finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, finetune_params=finetune_params,
                  no_aug=no_aug, seed=seed, unreadable_images=[str(path) for path in unreadable])
    write_deploy_folder(plain, out, classes, report, preprocessing, check_input if export == 'onnx' else None,
                        unreadable)
    return report
