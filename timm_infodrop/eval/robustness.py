"""Robustness: common corruptions (Hendrycks & Dietterich, ICLR 2019) and PGD-Linf.

Corruptions come from PyPI ``imagecorruptions-imaug`` (it draws from the global ``np.random``: every
(corruption, severity) is seeded). PGD is written here: the maintained library for it on PyPI,
torchattacks, pins ``requests~=2.25`` and downgrades what huggingface-hub needs.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import DataError, require
from .metrics import predict_images, top1

__all__ = ['corrupt_images', 'evaluate_corruptions', 'corruption_errors', 'pgd_attack', 'pgd_top1', 'SEVERITIES']

SEVERITIES = (1, 2, 3, 4, 5)


def corrupt_images(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt uint8 images (N, H, W, 3) with one corruption at one severity, seeded; uint8 out."""
    import inspect

    require('imagecorruptions', 'eval')  # else a one-line error naming the extra
    from imagecorruptions import corrupt, corruption_dict, get_corruption_names
    if name not in get_corruption_names('all'):
        raise ValueError(f'unknown corruption {name!r}; known: {get_corruption_names("all")}')
    if severity not in SEVERITIES:
        raise ValueError(f'severity must be one of {SEVERITIES}, got {severity}')
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}')
    if min(images.shape[1:3]) < 32:
        raise DataError(f'corruptions need images of at least 32x32, got {images.shape[1]}x{images.shape[2]}')
    base = (seed * 1000 + get_corruption_names('all').index(name) * 10 + severity) % 2 ** 31
    # most corruptions draw from the global np.random; some (impulse noise, glass blur) from their own
    # generators, seeded only through a ``seed`` keyword
    own_seed = 'seed' in inspect.signature(corruption_dict[name]).parameters
    state = np.random.get_state()
    np.random.seed(base)
    try:
        out = [np.clip(np.asarray(corrupt(image, severity=severity, corruption_name=name,
                                          **({'seed': base + i} if own_seed else {}))), 0, 255)
               for i, image in enumerate(images)]
    finally:
        np.random.set_state(state)
    return np.stack([o.astype(np.uint8)[:images.shape[1], :images.shape[2]] for o in out])


def _top1_on(model: nn.Module, images: np.ndarray, labels: np.ndarray, normalize, batch_size: int) -> float:
    return top1(predict_images(model, images, normalize, batch_size), labels)


def evaluate_corruptions(model: nn.Module, images: np.ndarray, labels: Sequence[int], normalize,
                         names: Optional[Sequence[str]] = None, severities: Sequence[int] = SEVERITIES,
                         seed: int = 0, batch_size: int = 128) -> Dict:
    """Top-1 under every (corruption, severity): ``{'per_corruption': {name: {severity: top1}},
    'mean_top1': mean over all of them, 'clean_top1': ...}``."""
    require('imagecorruptions', 'eval')  # else a one-line error naming the extra
    from imagecorruptions import get_corruption_names
    names = list(names or get_corruption_names('common'))
    labels = np.asarray(labels)
    per = {}
    bar = tqdm(total=len(names) * len(severities), desc='corruptions', unit='cond', leave=False)
    for name in names:
        per[name] = {}
        for severity in severities:
            corrupted = corrupt_images(images, name, severity, seed)
            per[name][str(severity)] = _top1_on(model, corrupted, labels, normalize, batch_size)
            bar.update(1)
    bar.close()
    values = [v for row in per.values() for v in row.values()]
    return {'per_corruption': per, 'mean_top1': float(np.mean(values)),
            'clean_top1': _top1_on(model, images, labels, normalize, batch_size)}


def corruption_errors(results: Dict, baseline: Dict) -> Dict:
    """``CE_c = sum_s err(c, s) / sum_s err_base(c, s)`` per corruption and ``mCE`` = their mean."""
    ce = {}
    for name, row in results['per_corruption'].items():
        if name not in baseline['per_corruption']:
            raise DataError(f'the baseline has no {name!r} results')
        base = baseline['per_corruption'][name]
        err = sum(1 - row[s] for s in row)
        base_err = sum(1 - base[s] for s in row)
        ce[name] = err / base_err if base_err > 0 else float('nan')
    return {'ce': ce, 'mce': float(np.mean(list(ce.values())))}


def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, normalize, eps: float = 8 / 255,
               step: float = 2 / 255, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """PGD-Linf with a random start (Madry et al.) on images ``x`` in [0, 1]; returns the adversarial images."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=generator)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(normalize(adv)), y)
        grad, = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + step * grad.sign()
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv.detach()


def pgd_top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize, eps: float = 8 / 255,
             step: float = 2 / 255, steps: int = 20, seed: int = 0, batch_size: int = 64) -> float:
    """Top-1 under PGD-Linf (default eps 8/255, step 2/255, 20 steps, random start)."""
    correct = 0
    for start in tqdm(range(0, len(images), batch_size), desc='PGD', unit='batch', leave=False):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        adv = pgd_attack(model, x, y, normalize, eps, step, steps, seed + start)
        with torch.no_grad():
            correct += int((model(normalize(adv)).argmax(1) == y).sum())
    return correct / len(images)
