"""The trainer's loops (:func:`timm_infodrop.train.train` builds timm's optimizer, scheduler, loss and mixup around them).

The Information Dropout KL is added to the loss explicitly (``aux_loss``) with the layers' automatic
KL gradient switched off (:func:`prepare_for_training`), so it is counted exactly once.
"""
import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import DataError, TrainingDiverged
from ..layers import aux_loss, set_kl_to_gradient

__all__ = ['prepare_for_training', 'set_training_mode', 'classifier_only', 'train_one_epoch', 'EpochStats', 'validate', 'grad_scaler']

AMP_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}


def prepare_for_training(model: nn.Module) -> nn.Module:
    """Switch the automatic KL gradient off: :func:`train_one_epoch` adds the KL to the loss itself."""
    set_kl_to_gradient(model, False)
    return model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def set_training_mode(model: nn.Module, freeze_bn_stats: bool = False, head_only: bool = False) -> None:
    """``model.train()``, then, where asked, in eval: every BatchNorm (``freeze_bn_stats``: it normalises with its
    running statistics and does not update them; its affine weights still learn), or everything but the classifier
    (``head_only``: a linear-probe epoch, see :func:`classifier_only`)."""
    model.train()
    net = _unwrap(model)
    if head_only:
        net.eval()
        net.get_classifier().train()
    elif freeze_bn_stats:
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


@contextlib.contextmanager
def classifier_only(model: nn.Module):
    """Within: only the classifier's parameters take gradients (autograd records no graph through the frozen
    features, so a step costs about a forward); on exit every parameter's ``requires_grad`` is as it was."""
    net = _unwrap(model)
    keep = set(map(id, net.get_classifier().parameters()))
    frozen = [p for p in net.parameters() if p.requires_grad and id(p) not in keep]
    for param in frozen:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for param in frozen:
            param.requires_grad_(True)


@dataclass
class EpochStats:
    loss: float  # mean total loss (task + KL) over the epoch's samples
    kl_loss: float  # mean of the added Information Dropout term (beta * KL)
    top1: Optional[float]  # training top-1 (None with mixup/cutmix targets)
    steps: int
    seconds: float


def train_one_epoch(
        model: nn.Module,
        loader: Iterable,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        loss_fn: Callable = F.cross_entropy,
        epoch: int = 0,
        step: int = 0,
        device: torch.device = torch.device('cpu'),
        amp_dtype: Optional[str] = None,
        channels_last: bool = False,
        mixup_fn: Optional[Callable] = None,
        clip_grad: Optional[float] = None,
        max_steps: Optional[int] = None,
        ema=None,
        scaler: Optional[torch.amp.GradScaler] = None,
        progress: bool = True,
        desc: str = '',
        freeze_bn_stats: bool = False,
        head_only: bool = False,
) -> EpochStats:
    """One pass over ``loader`` (at most ``max_steps`` batches); ``step`` counts updates before it.

    ``amp_dtype`` (``'bfloat16'``/``'float16'``) turns autocast on for the forward and loss; with
    float16 pass a ``scaler`` (:func:`grad_scaler`) that lives for the whole run. ``freeze_bn_stats`` and
    ``head_only``: :func:`set_training_mode`.
    """
    set_training_mode(model, freeze_bn_stats, head_only)
    with classifier_only(model) if head_only else contextlib.nullcontext():
        autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[amp_dtype]) if amp_dtype
                    else contextlib.nullcontext())
        total_loss = total_kl = correct = count = 0.0
        steps = 0
        start = time.perf_counter()
        limit = len(loader) if max_steps is None else min(max_steps, len(loader))
        bar = tqdm(loader, total=limit, desc=desc, unit='batch', leave=False, disable=not progress)
        for images, targets in bar:
            if steps >= limit:
                break
            images, targets = images.to(device), targets.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            hard_targets = targets
            if mixup_fn is not None:
                images, targets = mixup_fn(images, targets)
            with autocast:
                logits = model(images)
                task = loss_fn(logits, targets)
            kl = aux_loss(_unwrap(model)).float()
            loss = task.float() + kl
            if not torch.isfinite(loss):
                raise TrainingDiverged(f'non-finite loss {loss.item()} at epoch {epoch + 1}, update {step + 1}')
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            step += 1
            steps += 1
            if ema is not None:
                ema.update(_unwrap(model), step=step)
            if scheduler is not None:
                scheduler.step_update(num_updates=step)
            n = hard_targets.shape[0]
            total_loss += loss.item() * n
            total_kl += kl.item() * n
            if mixup_fn is None:
                correct += (logits.argmax(1) == hard_targets).sum().item()
            count += n
            bar.set_postfix(loss=f'{total_loss / count:.3f}', lr=f"{optimizer.param_groups[0]['lr']:.3g}")
        if count == 0:
            raise DataError('the training loader gave no batch: the dataset is smaller than one batch')
        return EpochStats(loss=total_loss / count, kl_loss=total_kl / count,
                          top1=None if mixup_fn is not None else correct / count, steps=steps,
                          seconds=time.perf_counter() - start)


def grad_scaler(amp_dtype: Optional[str], device: torch.device) -> Optional[torch.amp.GradScaler]:
    """A loss scaler for float16 autocast (against gradient underflow); None otherwise (bfloat16 has float32's range)."""
    return torch.amp.GradScaler(device.type) if amp_dtype == 'float16' else None


def validate(model: nn.Module, loader: Iterable, device: torch.device = torch.device('cpu'),
             progress: bool = True) -> Dict[str, float]:
    """``{'top1': ...}`` of ``model`` in eval on ``loader`` (``progress``: a progress bar)."""
    from ..convert import evaluate
    return {'top1': evaluate(_unwrap(model), loader, device, progress=progress)}
