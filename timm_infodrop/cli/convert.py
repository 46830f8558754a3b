"""``timm-infodrop convert``: a trained variant -> a plain timm model folder that vanilla timm loads.

The architecture and the evaluation preprocessing come from the checkpoint's run when it has one:

* a timm ``train.py`` checkpoint (``RUN/last.pth.tar``, ``RUN/model_best.pth.tar``...): its ``arch``,
  and ``RUN/args.yaml`` (``model``, ``input_size``, ``img_size``, ``crop_pct``, ``mean``, ``std``,
  ``interpolation``; else the ``args`` saved in the checkpoint);
* ``local-dir:RUN`` (a ``timm-infodrop train`` run): ``RUN/args.yaml``, then ``RUN/config.json``;
* otherwise the source's config (``config.json`` of a model folder, or the variant's default cfg).

Flags (``--model``, ``--img-size``, ``--crop-pct``, ``--mean``, ``--std``, ``--interpolation``)
override. The preprocessing used is written into the deployed ``config.json``'s ``pretrained_cfg``
(train and test sizes and crops alike), so timm's ``validate.py`` with its defaults evaluates as the
report did.
"""
import argparse
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import CheckpointError, ConfigError, OutputError
from ..io import atomic_directory, check_output_path

HELP = 'strip InfoDrop/Information Dropout, recalibrate and finetune BN, write a plain timm model folder'
SPLITS = ('train', 'val')
KEEP_CHOICES = ('better', 'finetuned', 'recalibrated')
RUN_ARGS = 'args.yaml'  # timm train.py and timm-infodrop train write it into the run folder
# the run arguments that decide the evaluation preprocessing (timm's resolve_data_config reads them)
DATA_KEYS = ('input_size', 'img_size', 'in_chans', 'crop_pct', 'crop_mode', 'mean', 'std', 'interpolation')
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'box', 'hamming', 'lanczos')
_PICKLE_SUFFIXES = ('.pth.tar', '.pth', '.pt', '.bin')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', help='the trained variant, e.g. resnet18_infodrop (default: the checkpoint\'s '
                                        'arch, its run\'s args.yaml model, or a folder\'s config.json architecture)')
    parser.add_argument('--checkpoint', required=True,
                        help='file.safetensors, a timm train.py .pth.tar (state_dict / state_dict_ema), '
                             'local-dir:RUN (a timm-infodrop train run) or hf-hub:org/name')
    parser.add_argument('--data-dir', required=True, help='ImageFolder root with train/ and val/')
    parser.add_argument('--out', required=True,
                        help='output folder (model.safetensors, config.json, convert_report.json); may be inside '
                             'the run folder (RUN/deploy), never an input nor a folder holding one')
    parser.add_argument('--recalibrate-batches', type=int, default=None,
                        help='BN recalibration batches (default: one pass over train/; 0 skips)')
    parser.add_argument('--finetune-epochs', type=int, default=0, help='finetuning epochs after recalibration')
    parser.add_argument('--finetune-lr', type=float, default=1e-3, help='finetuning SGD learning rate')
    parser.add_argument('--finetune-params', choices=('bn', 'all'), default='bn', help='what finetuning trains')
    parser.add_argument('--keep', choices=KEEP_CHOICES, default='better',
                        help='weights to ship after finetuning: better (the finetuned ones unless their val top-1 '
                             'is lower than the recalibrated ones\'; default), finetuned or recalibrated')
    parser.add_argument('--no-aug', action='store_true',
                        help='finetune without augmentation (as a model trained with timm\'s --no-aug)')
    parser.add_argument('--export', choices=('onnx',), help='also write OUT/model.onnx, checked against torch')
    parser.add_argument('--img-size', type=int, default=None, help='input size (default: the run\'s, else the model\'s)')
    parser.add_argument('--crop-pct', type=float, default=None, help='eval center-crop fraction (default: the run\'s)')
    parser.add_argument('--mean', type=float, nargs='+', default=None, help='normalisation mean (default: the run\'s)')
    parser.add_argument('--std', type=float, nargs='+', default=None, help='normalisation std (default: the run\'s)')
    parser.add_argument('--interpolation', choices=INTERPOLATIONS, default=None,
                        help='resize interpolation (default: the run\'s)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--workers', type=int, default=0, help='data loader workers')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')


def _check_out(args: argparse.Namespace) -> Path:
    from ..checkpoint import checkpoint_input

    return check_output_path(args.out, args.overwrite, directory=True,
                             inputs=[checkpoint_input(args.checkpoint), args.data_dir])


def _check_data_dir(data_dir: str) -> Path:
    from ..data.folders import check_image_folders

    root = Path(data_dir)
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise FileNotFoundError(f'--data-dir {str(root)!r} has no {" or ".join(f"{m}/" for m in missing)} folder')
    check_image_folders(root, SPLITS)
    return root


# --- what the checkpoint's run says ---------------------------------------------------------------

def _safe_globals():
    """timm's train.py pickles its argparse.Namespace into every checkpoint: allow that one class (a plain
    attribute holder) to a weights-only load, nothing else."""
    import contextlib

    import torch

    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5
        return contextlib.nullcontext()
    return torch.serialization.safe_globals([argparse.Namespace])


def _peek_checkpoint(checkpoint: str) -> Optional[Dict[str, Any]]:
    """The dict of a timm train.py checkpoint (weights-only, memory-mapped); None for anything else, and for a
    file that does not load: the loader names its problem."""
    import torch

    path = Path(checkpoint)
    if checkpoint.startswith(('hf-hub:', 'local-dir:')) or not path.name.endswith(_PICKLE_SUFFIXES) \
            or not path.is_file():
        return None
    try:
        with _safe_globals():
            try:
                loaded = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            except RuntimeError:  # not a zip archive: mmap needs one
                loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # unreadable or unsafe: load_variant refuses it with its own message
        return None
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
    import yaml

    folder = _run_folder(checkpoint)
    path = folder / RUN_ARGS if folder is not None else None
    if path is not None and path.is_file():
        try:
            run_args = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f'{str(path)!r} (the checkpoint\'s run arguments) is not valid YAML: '
                              f'{" ".join(str(error).split())}') from None
        if not isinstance(run_args, dict):
            raise ConfigError(f'{str(path)!r} (the checkpoint\'s run arguments) is not a YAML mapping')
        return run_args, str(path)
    saved = (peeked or {}).get('args')
    if isinstance(saved, argparse.Namespace):
        return vars(saved), f'the args saved in {checkpoint}'
    return {}, None


def resolve_model_name(args: argparse.Namespace, peeked: Optional[Dict[str, Any]], run_args: Dict[str, Any],
                       run_source: Optional[str]) -> Optional[str]:
    """``--model``, else the checkpoint's ``arch``, else its run's ``model``; None for a model folder (its
    config.json names it). A ``--model`` that contradicts the checkpoint is refused."""
    named = [(name, source) for name, source in (
        ((peeked or {}).get('arch'), f'the checkpoint\'s arch ({args.checkpoint})'),
        (run_args.get('model'), f'model in {run_source}'),
    ) if isinstance(name, str) and name]
    if args.checkpoint.startswith(('hf-hub:', 'local-dir:')):
        return args.model  # the folder's config.json names the architecture; load_variant checks --model
    if args.model:
        for name, source in named[:1]:
            if name.split('.', 1)[0] != args.model.split('.', 1)[0]:
                raise CheckpointError(f'--model {args.model} but {source} is {name}: drop --model or give the '
                                      'checkpoint of that model')
        return args.model
    if not named:
        raise CheckpointError(f'{args.checkpoint!r} does not name its architecture (no arch in it, no {RUN_ARGS} '
                              'with model beside it): give --model')
    return named[0][0]


# --- preprocessing ------------------------------------------------------------------------------------

def _check_flags(args: argparse.Namespace) -> None:
    if args.img_size is not None and args.img_size < 1:
        raise ConfigError(f'--img-size must be >= 1, got {args.img_size}')
    if args.crop_pct is not None and not (0 < args.crop_pct <= 1):
        raise ConfigError(f'--crop-pct must be in (0, 1], got {args.crop_pct}')
    for name in ('mean', 'std'):
        values = getattr(args, name)
        if values is not None and not all(math.isfinite(v) and (v > 0 or name == 'mean') for v in values):
            raise ConfigError(f'--{name} must be finite{" and > 0" if name == "std" else ""}, got {values}')


def data_config(model, args: argparse.Namespace, run_args: Dict[str, Any], run_source: Optional[str]
                ) -> Tuple[Dict[str, Any], str]:
    """The evaluation data config (timm's ``resolve_data_config``) and a line saying where it comes from:
    the flags over the run's arguments over the model's ``pretrained_cfg``."""
    from timm.data import resolve_data_config

    given = {k: run_args[k] for k in DATA_KEYS if run_args.get(k) not in (None, '', [])}
    flags = {'crop_pct': args.crop_pct, 'mean': args.mean, 'std': args.std, 'interpolation': args.interpolation}
    flags = {k: v for k, v in flags.items() if v is not None}
    if args.img_size is not None:
        channels = given.get('in_chans') or (given.get('input_size') or model.pretrained_cfg['input_size'])[0]
        flags['input_size'] = (channels, args.img_size, args.img_size)
    try:
        config = resolve_data_config({**given, **flags}, model=model)
    except (AssertionError, TypeError, ValueError) as error:
        raise ConfigError(f'the preprocessing from {run_source or "the model config"} does not resolve '
                          f'({type(error).__name__}: {error}): {({**given, **flags})}') from None
    if run_source is not None:
        source = run_source
    elif args.checkpoint.startswith(('hf-hub:', 'local-dir:')):
        source = f'the config.json of {args.checkpoint}'
    else:
        source = f'the default config of {model.pretrained_cfg.get("architecture")}'
    overridden = [f'--{k.replace("_", "-")}' for k in ('img_size', 'crop_pct', 'mean', 'std', 'interpolation')
                  if getattr(args, k) is not None]
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


def _loaders(root: Path, model, args: argparse.Namespace, config: Optional[Dict[str, Any]] = None):
    import torch
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    if config is None:
        overrides = {} if args.img_size is None else {'input_size': (3, args.img_size, args.img_size)}
        config = resolve_data_config(overrides, model=model)
    eval_transform = create_transform(**config, is_training=False)
    train_transform = create_transform(**config, is_training=True, no_aug=args.no_aug)
    datasets = {
        'recalibrate': ImageFolder(root / 'train', transform=eval_transform),
        'finetune': ImageFolder(root / 'train', transform=train_transform),
        'val': ImageFolder(root / 'val', transform=eval_transform),
    }
    generator = torch.Generator().manual_seed(args.seed)
    # recalibration batches are shuffled too: ImageFolder lists images class by class, and BN's
    # per-batch statistics over one-class batches are not the statistics the model will see
    loaders = {
        name: torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=name != 'val',
                                          num_workers=args.workers, generator=generator)
        for name, ds in datasets.items()
    }
    return loaders, datasets['val'].classes, config


def _summary(report: Dict[str, Any], out: Path) -> str:
    def fmt(value):
        return 'n/a' if value is None else f'{value:.4f}'

    steps = ', '.join(f'{step} {fmt(report[f"top1_{step}"])}' for step in ('source', 'stripped', 'recalibrated')) \
        + ('' if report['top1_finetuned'] is None else f', finetuned {fmt(report["top1_finetuned"])}')
    return (f'val top-1: {steps}; kept {report["kept"]} (--keep {report["keep"]}): top-1 {fmt(report["top1"])}; '
            f'strip max |diff| {report["strip_max_abs_difference"]:.2g}; wrote {out}')


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import load_variant
    from ..convert import convert

    _check_flags(args)
    out = _check_out(args)
    root = _check_data_dir(args.data_dir)
    torch.manual_seed(args.seed)
    peeked = _peek_checkpoint(args.checkpoint)
    run_args, run_source = read_run_args(args.checkpoint, peeked)
    model_name = resolve_model_name(args, peeked, run_args, run_source)
    del peeked
    with _safe_globals():  # a train.py checkpoint carries its argparse.Namespace
        model = load_variant(args.checkpoint, model_name)
    config, line = data_config(model, args, run_args, run_source)
    print(line)
    loaders, classes, config = _loaders(root, model, args, config)
    if len(classes) != model.num_classes:
        raise CheckpointError(f'the checkpoint has {model.num_classes} classes but {str(root)!r} has {len(classes)}: {classes}')
    size = config['input_size']
    check_input = torch.randn(2, *size, generator=torch.Generator().manual_seed(args.seed))
    plain, report = convert(
        model, loaders['recalibrate'], loaders['val'], args.recalibrate_batches, args.finetune_epochs,
        args.finetune_lr, args.finetune_params, check_input=check_input, finetune_loader=loaders['finetune'],
        keep=args.keep)
    preprocessing = deploy_cfg(config)
    source_size = tuple(plain.pretrained_cfg.get('input_size') or ())
    plain.pretrained_cfg = dict(plain.pretrained_cfg, **preprocessing)
    if source_size[1:] != tuple(size)[1:]:
        plain.pretrained_cfg.pop('pool_size', None)  # the architecture's feature-map size at its default input
    report.update(source_model=model.pretrained_cfg['architecture'], architecture=plain.pretrained_cfg['architecture'],
                  checkpoint=args.checkpoint, classes=list(classes), input_size=list(size),
                  preprocessing={k: list(v) if isinstance(v, tuple) else v for k, v in preprocessing.items()},
                  preprocessing_source=line.split(':', 1)[0], keep=args.keep,
                  recalibrate_batches=args.recalibrate_batches, finetune_epochs=args.finetune_epochs,
                  finetune_lr=args.finetune_lr, finetune_params=args.finetune_params, no_aug=args.no_aug, seed=args.seed)
    _write(plain, out, classes, report, preprocessing, check_input if args.export == 'onnx' else None)
    print(_summary(report, out))
    return 0


def _write(plain, out: Path, classes: List[str], report, preprocessing: Dict[str, Any], onnx_input=None) -> None:
    import inspect

    from timm.models import save_for_hf

    from ..convert import export_onnx

    with atomic_directory(out) as tmp:
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
        (tmp / 'convert_report.json').write_text(json.dumps(report, indent=2) + '\n')
