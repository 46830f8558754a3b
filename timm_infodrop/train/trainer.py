"""The trainer: one :func:`train` call runs what a :class:`TrainConfig` describes, on one process or many.

Data: an ImageFolder (``train/`` and ``val/``), a timm dataset, or a domain tree with
``target_domain`` (leave-one-domain-out: train and validate on the other domains, decoded once into
the cache, :mod:`timm_infodrop.data.domains`). Distributed: under ``torchrun`` (gloo on CPU, nccl on
CUDA). The run folder ``OUTPUT/EXPERIMENT`` holds ``args.yaml``, ``summary.csv`` (one row per epoch),
``last.safetensors`` (the full training state, for ``resume``) and, at the end, ``model.safetensors`` +
``config.json``: a timm model folder that ``timm.create_model('local-dir:RUN', pretrained=True)`` reads.

One run holds its folder at a time (a lock beside it, ``OUTPUT/.EXPERIMENT.lock``); a new run with ``overwrite``
replaces an old run's folder whole. A resumed run continues in its folder with the settings of its ``args.yaml``
(:func:`timm_infodrop.train.config.check_resume`) and the random generators' states of its training state; every
epoch reseeds them (:mod:`timm_infodrop.train.generators`), so a run resumed after an interruption equals the
uninterrupted one.
"""
import contextlib
import csv
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..checkpoint import MODEL_FOLDER_PREFIXES, STATE_FILE, _listing, check_checkpoint_file
from ..data.domains import DataError, DomainSplit, CachedImages, leave_one_domain_out, scan_domains
from ..data.folders import UNREADABLE_FILE, unreadable_note, write_unreadable  # noqa: F401  (UNREADABLE_FILE: the name)
from ..errors import OutputError
from ..io import atomic_files, atomic_output, check_output_path
from .config import RecipeError, TrainConfig, check_resume, run_settings
from .distributed import cleanup_distributed, setup_distributed, world_size
from .generators import GeneratorStates, seed_generators
from .loop import grad_scaler, prepare_for_training, train_one_epoch, validate
from .precision import autocast_dtype
from .state import TrainingState, load_training_state, save_training_state

__all__ = ['train', 'TrainResult', 'STATE_FILE', 'LOG_COLUMNS', 'domain_split', 'save_model_folder']

LOG_COLUMNS = ('epoch', 'train_loss', 'train_kl_loss', 'train_top1', 'eval_top1', 'lr', 'seconds')


@dataclass
class TrainResult:
    """What a run made: the trained model (unwrapped, eval), its folder (None on ranks > 0) and the
    per-epoch log rows (as in ``summary.csv``)."""
    model: nn.Module
    run_dir: Optional[Path]
    classes: List[str]
    history: List[Dict] = field(default_factory=list)
    minutes: float = 0.0
    unreadable: List[Path] = field(default_factory=list)  # images of the data that were skipped


def domain_split(config: TrainConfig) -> DomainSplit:
    """The leave-one-domain-out split of ``config.data_dir`` for ``config.target_domain``."""
    tree = scan_domains(config.data_dir)
    return leave_one_domain_out(tree, config.target_domain, config.val_fraction, config.seed)


def _check_data(config: TrainConfig) -> Tuple[Path, List[Path]]:
    """The data root, checked before any work, and the unreadable images of an ImageFolder's splits (timm's
    dataset skips them; the run names and counts them). Too many unreadable images is a DataError."""
    if not config.data_dir:
        raise DataError('no dataset: give --data-dir DIR (an ImageFolder with train/, or a domain tree with '
                        '--target-domain)')
    root = Path(config.data_dir)
    if config.target_domain or config.dataset:
        return root, []
    from ..data.folders import check_image_folders, verify_images

    if not (root / config.train_split).is_dir():
        raise FileNotFoundError(f'--data-dir {str(root)!r} has no {config.train_split}/ folder')
    splits = [config.train_split] + ([config.val_split] if config.val_split and (root / config.val_split).is_dir()
                                     else [])
    check_image_folders(root, splits)
    return root, [path for split in splits for path in verify_images(root / split)]


def _single_image_classes(config: TrainConfig, root: Path) -> List[Path]:
    """The training split's class folders that hold one image (an ImageFolder's; none for a domain tree or a
    timm dataset)."""
    if config.target_domain or config.dataset:
        return []
    from ..data.folders import single_image_classes
    return single_image_classes(root / config.train_split)


def _inputs(config: TrainConfig) -> List[Optional[str]]:
    return [config.data_dir or None, config.initial_checkpoint or None, config.pretrained_path or None]


def _run_dir(config: TrainConfig) -> Path:
    if config.resume:  # a resumed run continues in its own folder (check_resume refused any other)
        return Path(os.path.abspath(config.resume)).parent
    name = config.experiment or f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model}"
    return check_output_path(Path(config.output) / name, config.overwrite, directory=True, inputs=_inputs(config))


def _hold_run_dir(out: Path, config: TrainConfig):
    """Take the run folder ``out`` for this run; returns the held lock, which the caller releases when the run
    ends. The lock lies beside the folder (``OUTPUT/.EXPERIMENT.lock``), so it outlives the folder's replacement.
    A folder another run holds is refused, and so is one that appeared, without ``overwrite``, since this run
    checked its output. A new run (not a resumed one) into an existing folder then replaces it whole: the old run's
    folder is moved aside and removed, so no file or log row of it is left among the new run's.

    Raises:
        OutputError: naming the folder and the lock.
    """
    from filelock import FileLock, Timeout

    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out.parent / f'.{out.name}.lock'))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputError(f'{str(out)!r} is in use by another training run (it holds {lock.lock_file}): wait for it '
                          'to end, or give another --experiment') from None
    try:
        if not config.resume and out.exists():
            check_output_path(out, config.overwrite, directory=True, inputs=_inputs(config))
            aside = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.old', dir=out.parent))
            os.replace(out, aside / out.name)
            shutil.rmtree(aside)
    except BaseException:
        lock.release()
        raise
    return lock


def _lr(config: TrainConfig, world_size: int) -> float:
    if config.lr is not None:
        return config.lr
    ratio = config.batch_size * world_size / config.lr_base_size
    scale = 'sqrt' if any(name in config.opt.lower() for name in ('ada', 'lamb')) else 'linear'
    return config.lr_base * (math.sqrt(ratio) if scale == 'sqrt' else ratio)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    import numpy as np
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class _Data:
    """The training and validation sets of a run, and the class names."""

    def __init__(self, config: TrainConfig, root: Path):
        self.config, self.root = config, root
        self.split = domain_split(config) if config.target_domain else None
        if self.split is not None:
            self.classes = list(self.split.classes)
            self.train_size = len(self.split.train)
        else:
            from timm.data import create_dataset

            self.train_set = create_dataset(config.dataset, root=str(root), split=config.train_split,
                                            is_training=True, batch_size=config.batch_size, seed=config.seed)
            self.classes = list(getattr(self.train_set.reader, 'class_to_idx', None) or [])
            self.train_size = len(self.train_set)

    def datasets(self, image_size: int, progress: bool):
        """(train set, val set or None) at ``image_size`` (domain images are decoded then, once)."""
        config = self.config
        if self.split is not None:
            train_set = CachedImages.from_samples(self.split.train, self.classes, image_size, progress=progress)
            val_set = CachedImages.from_samples(self.split.val, self.classes, image_size, progress=progress)
            return train_set, val_set
        val_set = None
        if config.val_split and (config.dataset or (self.root / config.val_split).is_dir()):
            from timm.data import create_dataset
            val_set = create_dataset(config.dataset, root=str(self.root), split=config.val_split, is_training=False,
                                     batch_size=config.batch_size)
        return self.train_set, val_set


def _loaders(config: TrainConfig, data: _Data, ctx, data_config, progress: bool):
    from timm.data import create_loader

    if data.train_size < config.batch_size * ctx.world_size:
        raise DataError(f'the training split has {data.train_size} images, fewer than one global batch '
                        f'({config.batch_size} x {ctx.world_size} processes)')
    train_set, val_set = data.datasets(data_config['input_size'][-1], progress)
    common = dict(input_size=data_config['input_size'], mean=data_config['mean'], std=data_config['std'],
                  num_workers=config.workers, device=ctx.device, use_prefetcher=False,
                  persistent_workers=False, crop_pct=data_config['crop_pct'])
    train_loader = create_loader(
        train_set, batch_size=config.batch_size, is_training=True, no_aug=config.no_aug, re_prob=config.reprob,
        scale=config.scale, ratio=config.ratio, hflip=config.hflip, vflip=config.vflip,
        color_jitter=config.color_jitter, grayscale_prob=config.grayscale_prob, auto_augment=config.aa,
        interpolation=config.train_interpolation, distributed=ctx.distributed, **common)
    if config.texture_suppression:
        from torchvision import transforms

        from ..data.texture import TextureSuppression

        train_set.transform = transforms.Compose([
            TextureSuppression(config.texture_suppression, config.texture_suppression_prob), train_set.transform])
    val_loader = None
    if val_set is not None and ctx.is_main:
        val_loader = create_loader(val_set, batch_size=config.validation_batch_size or config.batch_size,
                                   is_training=False, interpolation=data_config['interpolation'], **common)
    return train_loader, val_loader


def _num_classes(config: TrainConfig, classes) -> int:
    if config.num_classes is not None:
        return config.num_classes
    if not classes:
        raise DataError('cannot infer the class count from the dataset: give --num-classes')
    return len(classes)


def _write_log(path: Path, row: Dict) -> None:
    new = not path.exists()
    with path.open('a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: ('' if row.get(k) is None else row[k]) for k in LOG_COLUMNS})


def save_model_folder(model: nn.Module, folder: Path, data_config: Dict, classes, model_args=None) -> None:
    """``model.safetensors`` + ``config.json`` (timm's ``save_for_hf``) in ``folder``, each written
    atomically, with the data config of the run as the ``pretrained_cfg`` (input and test size, crop,
    mean/std, interpolation), so timm's ``validate.py`` defaults reproduce the run's evaluation."""
    from timm.models import save_for_hf

    from ..models._builder import trained_cfg

    size = tuple(data_config['input_size'])
    model.pretrained_cfg = dict(trained_cfg(model.pretrained_cfg, size), input_size=size, test_input_size=size,
                                crop_pct=data_config['crop_pct'], test_crop_pct=data_config['crop_pct'],
                                mean=tuple(data_config['mean']), std=tuple(data_config['std']),
                                interpolation=data_config['interpolation'])
    with atomic_files(folder) as tmp:
        save_for_hf(model, str(tmp), model_config={'label_names': list(classes)} if classes else None,
                    model_args=dict(model_args or {}) or None, safe_serialization=True)


def _load_initial_checkpoint(model: nn.Module, config: TrainConfig) -> None:
    """timm train.py's ``--initial-checkpoint``: its (non-EMA) weights loaded strictly, read as convert and eval
    read a checkpoint (:func:`timm_infodrop.checkpoint.read_state_dict`: weights only, a pickle's code never runs;
    a train.py checkpoint's pickled arguments allowed).

    Raises:
        FileNotFoundError, CheckpointError: naming the flag and the file, and what is wrong with it.
    """
    from ..checkpoint import load_strictly, read_state_dict
    from ..deploy import safe_globals
    from ..errors import CheckpointError

    try:
        with safe_globals():
            state_dict = read_state_dict(config.initial_checkpoint, use_ema=False)
        load_strictly(model, state_dict, config.initial_checkpoint, config.model)
    except (CheckpointError, FileNotFoundError) as error:
        raise type(error)(f'--initial-checkpoint {error}') from None


def _build_model(config: TrainConfig, ctx, num_classes: int) -> nn.Module:
    """The timm model on the run's device, its automatic KL gradient off (the loop adds the KL)."""
    import timm

    import timm_infodrop  # noqa: F401  registers the variants

    if not config.model.startswith(MODEL_FOLDER_PREFIXES) and not timm.is_model(config.model):
        raise RecipeError(f'--model {config.model!r} is not a registered timm model (timm.list_models() names them)')
    kwargs = dict(config.model_kwargs)
    if config.drop_path is not None:
        kwargs['drop_path_rate'] = config.drop_path
    if config.pretrained_path:  # timm train.py's --pretrained-path: these weights as the pretrained ones
        weights = Path(config.pretrained_path)
        weights = weights / 'model.safetensors' if weights.is_dir() else weights
        if not weights.is_file():
            raise FileNotFoundError(f'--pretrained-path {config.pretrained_path!r}: no such weights file (a file, or '
                                    'a timm model folder holding model.safetensors)')
        # num_classes -1 differs from any model's, so timm drops the file's classifier (head adaptation)
        kwargs['pretrained_cfg_overlay'] = dict(file=str(weights), num_classes=-1)
    try:
        model = timm.create_model(config.model, pretrained=config.pretrained or bool(config.pretrained_path),
                                  num_classes=num_classes, drop_rate=config.drop, **kwargs)
    except TypeError as error:  # a keyword the architecture does not take
        raise RecipeError(f'--model {config.model}: {error} (from --model-kwargs, --drop or --drop-path)') from None
    if config.initial_checkpoint:  # after the pretrained weights, as timm's create_model(checkpoint_path=...)
        _load_initial_checkpoint(model, config)
    _init_head(model, config)
    prepare_for_training(model).to(ctx.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.distributed:
        if ctx.device.type != 'cuda':
            raise RecipeError('--sync-bn needs CUDA (torch SyncBatchNorm does not run on CPU)')
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.linear_probe_epochs and ctx.distributed:
        raise RecipeError('--linear-probe-epochs runs on one process (DistributedDataParallel needs every '
                          'parameter to take a gradient)')
    return model


def _init_head(model: nn.Module, config: TrainConfig) -> None:
    """timm train.py's ``--head-init-scale`` (the classifier's weight and bias multiplied by it) and
    ``--head-init-bias`` (its bias set to it)."""
    if config.head_init_scale is None and config.head_init_bias is None:
        return
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise RecipeError(f'--head-init-scale/--head-init-bias: {config.model}\'s classifier is a '
                          f'{type(classifier).__name__}, not a Linear layer')
    with torch.no_grad():
        if config.head_init_scale is not None:
            classifier.weight.mul_(config.head_init_scale)
            if classifier.bias is not None:
                classifier.bias.mul_(config.head_init_scale)
        if config.head_init_bias is not None and classifier.bias is not None:
            classifier.bias.fill_(config.head_init_bias)


def _criterion(config: TrainConfig, num_classes: int):
    """timm's loss for the run (soft targets with mixup/cutmix, label smoothing) and its Mixup, if any."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if config.mixup or config.cutmix:
        mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, prob=config.mixup_prob,
                      switch_prob=config.mixup_switch_prob, label_smoothing=config.smoothing,
                      num_classes=num_classes)
        return SoftTargetCrossEntropy(), mixup
    if config.smoothing:
        return LabelSmoothingCrossEntropy(config.smoothing), None
    return torch.nn.CrossEntropyLoss(), None


def _epoch_row(epoch: int, stats, eval_top1, lr: float) -> Dict:
    return {'epoch': epoch, 'train_loss': round(stats.loss, 6), 'train_kl_loss': round(stats.kl_loss, 6),
            'train_top1': None if stats.top1 is None else round(stats.top1, 6),
            'eval_top1': None if eval_top1 is None else round(eval_top1, 6), 'lr': lr,
            'seconds': round(stats.seconds, 2)}


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={'format': 'pt'})


def _unreadable_images(error: RuntimeError) -> Optional[DataError]:
    """timm's ImageDataset skips an unreadable file with a warning naming it, and gives up after several in a
    row (from a loader worker, the message is that worker's traceback, ending with the error)."""
    last_line = str(error).strip().splitlines()[-1] if str(error).strip() else ''
    if 'Failed to load' not in last_line:
        return None
    return DataError(f'{last_line.split(": ", 1)[-1]}: the data folder holds files that are not readable images '
                     '(the "Skipped sample" warnings above name them)')


def train(config: TrainConfig) -> TrainResult:
    """Run the training that ``config`` describes; returns the trained model (unwrapped) on every rank.

    Raises:
        DataError, RecipeError, OutputError, FileNotFoundError: for input a user can fix, before any work.
        FloatingPointError: the loss became non-finite (before that update).
    """
    try:
        return _train(config)
    except RuntimeError as error:
        user_error = _unreadable_images(error)
        if user_error is None:
            raise
        raise user_error from None


def _train(config: TrainConfig) -> TrainResult:
    import yaml
    from timm.data import resolve_data_config
    from timm.optim import create_optimizer_v2, optimizer_kwargs
    from timm.scheduler import create_scheduler_v2, scheduler_kwargs
    from timm.utils import ModelEmaV3, distribute_bn

    start = time.perf_counter()
    config = config.replace().check()  # a copy: the resolved lr is written into it
    if config.resume:  # the run's own settings, before any work
        check_resume(config.replace(lr=_lr(config, world_size())), run_settings(config.resume))
    if config.initial_checkpoint:  # the file's own problem (missing, unknown suffix, not safetensors) first
        try:
            check_checkpoint_file(config.initial_checkpoint)
        except FileNotFoundError as error:
            raise FileNotFoundError(f'--initial-checkpoint {error}') from None
    root, unreadable = _check_data(config)
    ctx = setup_distributed(config.device)
    held = contextlib.ExitStack()
    try:
        out = _run_dir(config) if ctx.is_main else None
        progress = ctx.is_main and not config.no_progress
        seed_generators(config.seed + ctx.rank)
        data = _Data(config, root)
        num_classes = _num_classes(config, data.classes)
        model = _build_model(config, ctx, num_classes)
        data_config = resolve_data_config(config.as_dict(), model=model, verbose=False)
        config.lr = _lr(config, ctx.world_size)
        optimizer = create_optimizer_v2(model, **optimizer_kwargs(config))
        ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
        state = TrainingState(epoch=0, step=0)
        if config.resume:
            state = load_training_state(Path(config.resume), model, optimizer, ema.module if ema else None)
        train_loader, val_loader = _loaders(config, data, ctx, data_config, progress)
        scheduler, epochs = create_scheduler_v2(optimizer, **scheduler_kwargs(config),
                                                updates_per_epoch=len(train_loader))
        if state.epoch:
            scheduler.step(state.epoch)
        ddp = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == 'cuda'
                                                         else None) if ctx.distributed else model)
        loss_fn, mixup_fn = _criterion(config, num_classes)
        amp_dtype = autocast_dtype(config.amp, config.amp_dtype, ctx.device,
                                   say=print if ctx.is_main else (lambda line: None))
        scaler = grad_scaler(amp_dtype, ctx.device)
        history: List[Dict] = []
        if ctx.is_main:
            held.callback(_hold_run_dir(out, config).release)
            out.mkdir(parents=True, exist_ok=True)
            listed = write_unreadable(out, unreadable)
            if listed is not None:
                print(unreadable_note(unreadable, listed), flush=True)
            single = _single_image_classes(config, root)
            if single:
                print(f'warning: class folders with one image (each class learnt from a single picture): '
                      f'{_listing(str(folder) for folder in single)}', file=sys.stderr, flush=True)
            if state.epoch:
                print(f'resuming {out} after epoch {state.epoch} of {epochs}', flush=True)
            with atomic_output(out / 'args.yaml') as tmp:
                tmp.write_text(yaml.safe_dump(dict(config.as_dict(), input_size=list(data_config['input_size']))))
        if state.generators is not None and not ctx.distributed:  # the state holds this process's generators
            state.generators.restore()
        for epoch in range(state.epoch, epochs):
            # per-epoch seeds of every generator: a resumed run draws the same data order, augmentation and masks
            # as an uninterrupted one, with loader workers or without
            seed_generators(_epoch_seed(config.seed, epoch, ctx.rank))
            if ctx.distributed and hasattr(train_loader.sampler, 'set_epoch'):
                train_loader.sampler.set_epoch(epoch)
            stats = train_one_epoch(
                ddp, train_loader, optimizer, scheduler, loss_fn, epoch=epoch, step=state.step, device=ctx.device,
                amp_dtype=amp_dtype, channels_last=config.channels_last, mixup_fn=mixup_fn,
                clip_grad=config.clip_grad, max_steps=config.train_batches_per_epoch, ema=ema, scaler=scaler,
                progress=progress, desc=f'epoch {epoch + 1}/{epochs}', freeze_bn_stats=config.freeze_bn_stats,
                head_only=epoch < config.linear_probe_epochs)
            state = TrainingState(epoch=epoch + 1, step=state.step + stats.steps)
            if ctx.distributed and config.dist_bn and not config.sync_bn:
                distribute_bn(model, ctx.world_size, config.dist_bn == 'reduce')
            scheduler.step(state.epoch)
            if ctx.is_main:
                eval_top1 = (validate(ema.module if ema else model, val_loader, ctx.device, progress=progress)['top1']
                             if val_loader else None)
                state.generators = GeneratorStates.capture()
                save_training_state(out / STATE_FILE, model, optimizer, state, ema.module if ema else None)
                row = _epoch_row(state.epoch, stats, eval_top1, optimizer.param_groups[0]['lr'])
                _write_log(out / 'summary.csv', row)
                history.append(row)
                print(f'epoch {state.epoch}/{epochs}: loss {stats.loss:.4f}'
                      + ('' if eval_top1 is None else f', val top-1 {eval_top1:.4f}')
                      + f' ({stats.seconds:.0f} s)'
                      + (f', {len(unreadable)} unreadable image(s) skipped' if unreadable else ''), flush=True)
            ctx.barrier()
        if config.channels_last:
            model.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors only
        if ctx.is_main:
            save_model_folder(model, out, data_config, data.classes, config.model_kwargs)
            if ema is not None:
                _save_weights(ema.module, out / 'model_ema.safetensors')
            print(f'wrote {out}')
        ctx.barrier()
        model.train(False)
        return TrainResult(model, out, data.classes, history, (time.perf_counter() - start) / 60, unreadable)
    finally:
        held.close()
        cleanup_distributed()
