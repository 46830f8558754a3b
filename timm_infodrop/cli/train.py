"""``timm-infodrop train``: timm's train.py arguments and ``-c recipe.yaml``, on one process or many.

Argument names (and YAML keys, with ``_``) mean what they mean in timm's train.py, so a recipe runs
with both. Distributed: ``torchrun --nproc_per_node N -m timm_infodrop train ...`` (gloo on CPU, nccl
on CUDA). The run folder ``OUTPUT/EXPERIMENT`` holds ``args.yaml``, ``summary.csv`` (one row per
epoch), ``last.safetensors`` (the full training state, for ``--resume``) and, at the end,
``model.safetensors`` + ``config.json``: a timm model folder that ``timm.create_model('local-dir:RUN',
pretrained=True)`` and ``timm-infodrop convert --checkpoint local-dir:RUN`` read.
"""
import argparse
import csv
import math
import time
from pathlib import Path
from typing import Dict

from ..io import atomic_output, check_output_path

HELP = "train a model with timm's train.py arguments (-c recipe.yaml); multi-process with torchrun"

STATE_FILE = 'last.safetensors'
LOG_COLUMNS = ('epoch', 'train_loss', 'train_kl_loss', 'train_top1', 'eval_top1', 'lr', 'seconds')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from timm.utils import ParseKwargs

    parser.add_argument('-c', '--config', metavar='YAML',
                        help='recipe: a YAML mapping of these arguments (underscored), as for timm train.py -c')
    data = parser.add_argument_group('data')
    data.add_argument('data', nargs='?', metavar='DIR', help='dataset root (same as --data-dir)')
    data.add_argument('--data-dir', metavar='DIR', help='dataset root: an ImageFolder with train/ (and val/)')
    data.add_argument('--dataset', default='', help="timm dataset name ('' = folder)")
    data.add_argument('--train-split', default='train')
    data.add_argument('--val-split', default='val', help="validated after every epoch when present ('' = never)")
    model = parser.add_argument_group('model')
    model.add_argument('--model', default='resnet18_infodrop', help='timm model name')
    model.add_argument('--pretrained', action='store_true', help="start from the model's pretrained weights")
    model.add_argument('--initial-checkpoint', default='', help='start from these weights (safetensors or .pth.tar)')
    model.add_argument('--resume', default='', help=f'continue from a run\'s {STATE_FILE}')
    model.add_argument('--num-classes', type=int, default=None, help="default: the dataset's class count")
    model.add_argument('--img-size', type=int, default=None, help="input size (default: the model's)")
    model.add_argument('--crop-pct', type=float, default=None, help='validation centre-crop fraction')
    model.add_argument('--mean', type=float, nargs='+', default=None)
    model.add_argument('--std', type=float, nargs='+', default=None)
    model.add_argument('--interpolation', default='', help="resize interpolation (default: the model's)")
    model.add_argument('-b', '--batch-size', type=int, default=128, help='per-process batch size')
    model.add_argument('-vb', '--validation-batch-size', type=int, default=None)
    model.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs, metavar='KEY=VALUE',
                       help='extra timm.create_model arguments, e.g. infodrop_temperature=0.1')
    model.add_argument('--drop', type=float, default=0.0, help='classifier dropout rate')
    model.add_argument('--drop-path', type=float, default=None, help='stochastic depth rate')
    model.add_argument('--channels-last', action='store_true')
    model.add_argument('--sync-bn', action='store_true', help='SyncBatchNorm across processes (CUDA only)')
    model.add_argument('--dist-bn', default='reduce', choices=('reduce', 'broadcast', ''),
                       help='after every epoch, average (reduce) or copy rank 0\'s (broadcast) BN statistics')
    opt = parser.add_argument_group('optimizer and schedule (timm.optim / timm.scheduler)')
    opt.add_argument('--opt', default='sgd')
    opt.add_argument('--opt-eps', type=float, default=None)
    opt.add_argument('--opt-betas', type=float, nargs='+', default=None)
    opt.add_argument('--momentum', type=float, default=0.9)
    opt.add_argument('--weight-decay', type=float, default=2e-5)
    opt.add_argument('--clip-grad', type=float, default=None, help='gradient-norm clipping')
    opt.add_argument('--sched', default='cosine')
    opt.add_argument('--lr', type=float, default=None, help='default: lr-base x global batch / lr-base-size')
    opt.add_argument('--lr-base', type=float, default=0.1)
    opt.add_argument('--lr-base-size', type=int, default=256)
    opt.add_argument('--warmup-lr', type=float, default=1e-5)
    opt.add_argument('--min-lr', type=float, default=0.0)
    opt.add_argument('--epochs', type=int, default=300)
    opt.add_argument('--decay-epochs', type=float, default=90)
    opt.add_argument('--decay-milestones', type=int, nargs='+', default=[90, 180, 270])
    opt.add_argument('--decay-rate', type=float, default=0.1)
    opt.add_argument('--warmup-epochs', type=int, default=5)
    opt.add_argument('--cooldown-epochs', type=int, default=0)
    opt.add_argument('--train-batches-per-epoch', type=int, default=None,
                     help='stop each epoch after this many batches (smoke tests)')
    aug = parser.add_argument_group('augmentation and regularisation (timm.data)')
    aug.add_argument('--no-aug', action='store_true', help='no training augmentation (resize and centre crop only)')
    aug.add_argument('--scale', type=float, nargs=2, default=[0.08, 1.0])
    aug.add_argument('--ratio', type=float, nargs=2, default=[3 / 4, 4 / 3])
    aug.add_argument('--hflip', type=float, default=0.5)
    aug.add_argument('--vflip', type=float, default=0.0)
    aug.add_argument('--color-jitter', type=float, default=0.4)
    aug.add_argument('--aa', default=None, help='AutoAugment policy, e.g. rand-m9-mstd0.5')
    aug.add_argument('--reprob', type=float, default=0.0, help='random erasing probability')
    aug.add_argument('--mixup', type=float, default=0.0)
    aug.add_argument('--cutmix', type=float, default=0.0)
    aug.add_argument('--mixup-prob', type=float, default=1.0)
    aug.add_argument('--mixup-switch-prob', type=float, default=0.5)
    aug.add_argument('--smoothing', type=float, default=0.1, help='label smoothing')
    aug.add_argument('--train-interpolation', default='random')
    aug.add_argument('--texture-suppression', default=None, choices=('anisotropic', 'bilateral', 'cartoon'),
                     help='filter training images with this texture suppression (timm_infodrop.data.texture) '
                          'before timm\'s transforms')
    aug.add_argument('--texture-suppression-prob', type=float, default=0.5,
                     help='probability an image is filtered (0.5: half the images, like the doubled dataset)')
    run = parser.add_argument_group('run')
    run.add_argument('--model-ema', action='store_true', help='keep an EMA of the weights (timm ModelEmaV3)')
    run.add_argument('--model-ema-decay', type=float, default=0.9998)
    run.add_argument('--seed', type=int, default=42)
    run.add_argument('-j', '--workers', type=int, default=2, help='data loader processes per training process')
    run.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    run.add_argument('--amp', action='store_true', help='mixed precision autocast')
    run.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    run.add_argument('--output', default='output/train', help='parent folder of the run folder')
    run.add_argument('--experiment', default='', help='run folder name (default: <time>-<model>)')
    run.add_argument('--overwrite', action='store_true', help='replace an existing run folder')
    run.add_argument('--no-progress', action='store_true', help='no progress bars')


def recipe_keys(parser: argparse.ArgumentParser) -> set:
    return {action.dest for action in parser._actions if action.dest not in ('help', 'config')}


def apply_recipe(parser: argparse.ArgumentParser, path: str) -> Dict:
    """Read a YAML recipe and make its values the parser's defaults (command-line flags win)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f'-c {path!r}: no such recipe file')
    try:
        recipe = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f'-c {path!r} is not valid YAML: {error}') from None
    if not isinstance(recipe, dict):
        raise ValueError(f'-c {path!r} must hold a mapping of argument names to values')
    unknown = sorted(set(recipe) - recipe_keys(parser))
    if unknown:
        raise ValueError(f'-c {path!r}: unknown keys {unknown}; keys are argument names with _ (e.g. batch_size)')
    parser.set_defaults(**recipe)
    return recipe


def _data_root(args: argparse.Namespace) -> Path:
    root = args.data_dir or args.data
    if not root:
        raise ValueError('no dataset: give --data-dir DIR (an ImageFolder with train/)')
    root = Path(root)
    if not args.dataset:  # an ImageFolder: checked here, before the model is built
        from ..data.folders import check_image_folders

        if not (root / args.train_split).is_dir():
            raise FileNotFoundError(f'--data-dir {str(root)!r} has no {args.train_split}/ folder')
        with_val = bool(args.val_split) and (root / args.val_split).is_dir()
        check_image_folders(root, [args.train_split] + ([args.val_split] if with_val else []))
    return root


def _run_dir(args: argparse.Namespace) -> Path:
    name = args.experiment or f"{time.strftime('%Y%m%d-%H%M%S')}-{args.model}"
    folder = Path(args.output) / name
    if args.resume and Path(args.resume).resolve().parent == folder.resolve():
        return folder  # resuming in place
    return check_output_path(folder, args.overwrite, directory=True)


def _lr(args: argparse.Namespace, world_size: int) -> float:
    if args.lr is not None:
        return args.lr
    ratio = args.batch_size * world_size / args.lr_base_size
    scale = 'sqrt' if any(name in args.opt.lower() for name in ('ada', 'lamb')) else 'linear'
    return args.lr_base * (math.sqrt(ratio) if scale == 'sqrt' else ratio)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    import numpy as np
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _check_args(args: argparse.Namespace) -> None:
    for name in ('batch_size', 'epochs'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if args.train_batches_per_epoch is not None and args.train_batches_per_epoch < 1:
        raise ValueError(f'--train-batches-per-epoch must be >= 1, got {args.train_batches_per_epoch}')
    if args.workers < 0:
        raise ValueError(f'--workers must be >= 0, got {args.workers}')
    if not 0.0 <= args.texture_suppression_prob <= 1.0:
        raise ValueError(f'--texture-suppression-prob must be in [0, 1], got {args.texture_suppression_prob}')


def _train_dataset(args, root: Path):
    from timm.data import create_dataset

    return create_dataset(args.dataset, root=str(root), split=args.train_split, is_training=True,
                          batch_size=args.batch_size, seed=args.seed)


def _loaders(args, train_set, root: Path, ctx, data_config):
    from timm.data import create_dataset, create_loader

    if len(train_set) < args.batch_size * ctx.world_size:
        raise ValueError(f'{args.train_split}/ has {len(train_set)} images, fewer than one global batch '
                         f'({args.batch_size} x {ctx.world_size} processes)')
    common = dict(input_size=data_config['input_size'], mean=data_config['mean'], std=data_config['std'],
                  num_workers=args.workers, device=ctx.device, use_prefetcher=False,
                  persistent_workers=False, crop_pct=data_config['crop_pct'])
    train_loader = create_loader(
        train_set, batch_size=args.batch_size, is_training=True, no_aug=args.no_aug, re_prob=args.reprob,
        scale=args.scale, ratio=args.ratio, hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter,
        auto_augment=args.aa, interpolation=args.train_interpolation, distributed=ctx.distributed, **common)
    if args.texture_suppression:
        from torchvision import transforms

        from ..data.texture import TextureSuppression

        train_set.transform = transforms.Compose([
            TextureSuppression(args.texture_suppression, args.texture_suppression_prob), train_set.transform])
    val_loader = None
    if args.val_split and (args.dataset or (root / args.val_split).is_dir()) and ctx.is_main:
        val_set = create_dataset(args.dataset, root=str(root), split=args.val_split, is_training=False,
                                 batch_size=args.batch_size)
        val_loader = create_loader(val_set, batch_size=args.validation_batch_size or args.batch_size,
                                   is_training=False, interpolation=data_config['interpolation'], **common)
    return train_loader, val_loader


def _classes(train_set) -> list:
    """The training set's class names (ImageFolder order); empty for readers without a class map."""
    return list(getattr(train_set.reader, 'class_to_idx', None) or [])


def _num_classes(args, classes) -> int:
    if args.num_classes is not None:
        return args.num_classes
    if not classes:
        raise ValueError('cannot infer the class count from the dataset: give --num-classes')
    return len(classes)


def _write_log(path: Path, row: Dict) -> None:
    new = not path.exists()
    with path.open('a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: ('' if row.get(k) is None else row[k]) for k in LOG_COLUMNS})


def _save_model(model, folder: Path, args, data_config, classes) -> None:
    """``model.safetensors`` + ``config.json`` (timm's ``save_for_hf``), with the data config of the run."""
    import os
    import tempfile

    from timm.models import save_for_hf

    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=tuple(data_config['input_size']),
                                crop_pct=data_config['crop_pct'], mean=tuple(data_config['mean']),
                                std=tuple(data_config['std']), interpolation=data_config['interpolation'])
    with tempfile.TemporaryDirectory(prefix='.model.', dir=folder) as tmp:
        save_for_hf(model, tmp, model_config={'label_names': list(classes)} if classes else None,
                    model_args=dict(args.model_kwargs) or None, safe_serialization=True)
        for name in ('model.safetensors', 'config.json'):
            os.replace(Path(tmp) / name, folder / name)


def _build_model(args: argparse.Namespace, ctx, num_classes: int):
    """The timm model on the run's device, its automatic KL gradient off (the loop adds the KL)."""
    import timm
    import torch

    import timm_infodrop  # noqa: F401  registers the variants
    from ..train import prepare_for_training

    if not args.model.startswith(('hf-hub:', 'local-dir:')) and not timm.is_model(args.model):
        raise ValueError(f'--model {args.model!r} is not a registered timm model (timm.list_models() names them)')
    kwargs = dict(args.model_kwargs)
    if args.drop_path is not None:
        kwargs['drop_path_rate'] = args.drop_path
    try:
        model = timm.create_model(args.model, pretrained=args.pretrained, num_classes=num_classes,
                                  drop_rate=args.drop, checkpoint_path=args.initial_checkpoint or None, **kwargs)
    except TypeError as error:  # a keyword the architecture does not take
        raise ValueError(f'--model {args.model}: {error} (from --model-kwargs, --drop or --drop-path)') from None
    prepare_for_training(model).to(ctx.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.sync_bn and ctx.distributed:
        if ctx.device.type != 'cuda':
            raise ValueError('--sync-bn needs CUDA (torch SyncBatchNorm does not run on CPU)')
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _criterion(args: argparse.Namespace, num_classes: int):
    """timm's loss for the run (soft targets with mixup/cutmix, label smoothing) and its Mixup, if any."""
    import torch
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if args.mixup or args.cutmix:
        mixup = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                      switch_prob=args.mixup_switch_prob, label_smoothing=args.smoothing, num_classes=num_classes)
        return SoftTargetCrossEntropy(), mixup
    if args.smoothing:
        return LabelSmoothingCrossEntropy(args.smoothing), None
    return torch.nn.CrossEntropyLoss(), None


def _log_epoch(path: Path, epoch: int, epochs: int, stats, eval_top1, lr: float) -> None:
    """One summary.csv row and one printed line per epoch."""
    _write_log(path, {
        'epoch': epoch, 'train_loss': round(stats.loss, 6), 'train_kl_loss': round(stats.kl_loss, 6),
        'train_top1': None if stats.top1 is None else round(stats.top1, 6),
        'eval_top1': None if eval_top1 is None else round(eval_top1, 6), 'lr': lr, 'seconds': round(stats.seconds, 2)})
    print(f'epoch {epoch}/{epochs}: loss {stats.loss:.4f}' + ('' if eval_top1 is None else f', val top-1 {eval_top1:.4f}')
          + f' ({stats.seconds:.0f} s)', flush=True)


def _save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={'format': 'pt'})


def train(args: argparse.Namespace):
    """Run the training that ``args`` describes; returns the trained model (unwrapped) on every rank."""
    import torch
    import yaml
    from timm.data import resolve_data_config
    from timm.optim import create_optimizer_v2, optimizer_kwargs
    from timm.scheduler import create_scheduler_v2, scheduler_kwargs
    from timm.utils import ModelEmaV3, distribute_bn

    from ..train import (TrainingState, cleanup_distributed, grad_scaler, load_training_state, save_training_state,
                         setup_distributed, train_one_epoch, validate)

    _check_args(args)
    root = _data_root(args)
    ctx = setup_distributed(args.device)
    try:
        out = _run_dir(args) if ctx.is_main else None
        torch.manual_seed(args.seed + ctx.rank)
        train_set = _train_dataset(args, root)
        classes = _classes(train_set)
        num_classes = _num_classes(args, classes)
        model = _build_model(args, ctx, num_classes)
        data_config = resolve_data_config(vars(args), model=model, verbose=False)
        args.lr = _lr(args, ctx.world_size)
        optimizer = create_optimizer_v2(model, **optimizer_kwargs(args))
        ema = ModelEmaV3(model, decay=args.model_ema_decay) if args.model_ema else None
        state = TrainingState(epoch=0, step=0)
        if args.resume:
            state = load_training_state(Path(args.resume), model, optimizer, ema.module if ema else None)
        train_loader, val_loader = _loaders(args, train_set, root, ctx, data_config)
        scheduler, epochs = create_scheduler_v2(optimizer, **scheduler_kwargs(args), updates_per_epoch=len(train_loader))
        if state.epoch:
            scheduler.step(state.epoch)
        ddp = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == 'cuda'
                                                         else None) if ctx.distributed else model)
        loss_fn, mixup_fn = _criterion(args, num_classes)
        amp_dtype = args.amp_dtype if args.amp else None
        scaler = grad_scaler(amp_dtype, ctx.device)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            with atomic_output(out / 'args.yaml') as tmp:
                tmp.write_text(yaml.safe_dump({k: v for k, v in vars(args).items() if not k.startswith('_')}))
        for epoch in range(state.epoch, epochs):
            # per-epoch seeds: a resumed run draws the same data order and masks as an uninterrupted one
            torch.manual_seed(_epoch_seed(args.seed, epoch, ctx.rank))
            if ctx.distributed and hasattr(train_loader.sampler, 'set_epoch'):
                train_loader.sampler.set_epoch(epoch)
            stats = train_one_epoch(
                ddp, train_loader, optimizer, scheduler, loss_fn, epoch=epoch, step=state.step, device=ctx.device,
                amp_dtype=amp_dtype, channels_last=args.channels_last, mixup_fn=mixup_fn, clip_grad=args.clip_grad,
                max_steps=args.train_batches_per_epoch, ema=ema, scaler=scaler,
                progress=ctx.is_main and not args.no_progress, desc=f'epoch {epoch + 1}/{epochs}')
            state = TrainingState(epoch=epoch + 1, step=state.step + stats.steps)
            if ctx.distributed and args.dist_bn and not args.sync_bn:
                distribute_bn(model, ctx.world_size, args.dist_bn == 'reduce')
            scheduler.step(state.epoch)
            if ctx.is_main:
                eval_top1 = validate(ema.module if ema else model, val_loader, ctx.device)['top1'] if val_loader else None
                save_training_state(out / STATE_FILE, model, optimizer, state, ema.module if ema else None)
                _log_epoch(out / 'summary.csv', state.epoch, epochs, stats, eval_top1, optimizer.param_groups[0]['lr'])
            ctx.barrier()
        if args.channels_last:
            model.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors only
        if ctx.is_main:
            _save_model(model, out, args, data_config, classes)
            if ema is not None:
                _save_weights(ema.module, out / 'model_ema.safetensors')
            print(f'wrote {out}')
        ctx.barrier()
        model.train(False)
        return model
    finally:
        cleanup_distributed()


def run(args: argparse.Namespace) -> int:
    try:
        train(args)
    except RuntimeError as error:
        # timm's ImageDataset skips an unreadable file with a warning naming it, and gives up after several in a row
        # (from a loader worker, the message is that worker's traceback, ending with the error)
        last_line = str(error).strip().splitlines()[-1] if str(error).strip() else ''
        if 'Failed to load' not in last_line:
            raise
        raise ValueError(f'{last_line.split(": ", 1)[-1]}: the data folder holds files that are not readable images '
                         '(the "Skipped sample" warnings above name them)') from None
    return 0


def reparse(parser: argparse.ArgumentParser, subparser: argparse.ArgumentParser, args: argparse.Namespace,
            argv) -> argparse.Namespace:
    """With ``-c``, make the recipe the subcommand's defaults and parse again (command-line flags win)."""
    if not args.config:
        return args
    apply_recipe(subparser, args.config)
    return parser.parse_args(argv)


__all__ = ['train', 'reparse', 'apply_recipe', 'recipe_keys']
