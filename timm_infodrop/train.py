"""A small training loop on timm's pieces (optimizer and scheduler factories), for the CPU benchmark.

The Information Dropout KL is added to the loss explicitly (``aux_loss``) with the layers' automatic
KL gradient switched off, so it is counted exactly once.
"""
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from tqdm import tqdm

from .layers import aux_loss, set_kl_to_gradient

__all__ = ['FitConfig', 'fit']


@dataclass
class FitConfig:
    epochs: int = 6
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    opt: str = 'sgd'
    sched: str = 'cosine'
    warmup_epochs: int = 0
    seed: int = 0


@dataclass
class FitResult:
    history: List[Dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def fit(model: nn.Module, loader: Iterable, config: FitConfig, device: torch.device = torch.device('cpu'),
        progress: bool = True) -> FitResult:
    """Train ``model`` with cross-entropy (+ the Information Dropout KL, once) for ``config.epochs``."""
    torch.manual_seed(config.seed)
    set_kl_to_gradient(model, False)
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay,
                                    momentum=config.momentum)
    steps_per_epoch = len(loader)
    scheduler, _ = create_scheduler_v2(optimizer, sched=config.sched, num_epochs=config.epochs,
                                       warmup_epochs=config.warmup_epochs, updates_per_epoch=steps_per_epoch)
    result = FitResult()
    start = time.perf_counter()
    model.to(device).train()
    step = 0
    for epoch in range(config.epochs):
        total = correct = count = 0.0
        bar = tqdm(loader, desc=f'epoch {epoch + 1}/{config.epochs}', unit='batch', leave=False, disable=not progress)
        for images, targets in bar:
            images, targets = images.to(device), targets.to(device)
            logits = model(images)
            loss = F.cross_entropy(logits, targets) + aux_loss(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(num_updates=step)
            total += loss.item() * targets.numel()
            correct += (logits.argmax(1) == targets).sum().item()
            count += targets.numel()
            bar.set_postfix(loss=f'{total / count:.3f}', acc=f'{correct / count:.3f}')
        scheduler.step(epoch + 1)
        result.history.append({'epoch': epoch + 1, 'loss': total / count, 'train_top1': correct / count,
                               'lr': optimizer.param_groups[0]['lr']})
    result.seconds = time.perf_counter() - start
    return result
