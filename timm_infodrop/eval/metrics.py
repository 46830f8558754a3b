"""Benchmark metrics: top-1 and shape bias (Geirhos et al., ICLR 2019)."""
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

__all__ = ['shape_bias', 'predict', 'top1']


def shape_bias(predictions: Sequence[int], shape_labels: Sequence[int], texture_labels: Sequence[int]) -> float:
    """``#(pred == shape) / (#(pred == shape) + #(pred == texture))`` over cue-conflict images.

    Images whose shape and texture labels agree are dropped; predictions that are neither are
    ignored. NaN when no prediction matches either cue.
    """
    pred, shape, tex = (np.asarray(a) for a in (predictions, shape_labels, texture_labels))
    if not pred.shape == shape.shape == tex.shape:
        raise ValueError(f'predictions {pred.shape}, shape labels {shape.shape} and texture labels {tex.shape} '
                         'must have the same length')
    keep = shape != tex
    shape_hits = int(np.sum((pred == shape) & keep))
    texture_hits = int(np.sum((pred == tex) & keep))
    total = shape_hits + texture_hits
    return shape_hits / total if total else float('nan')


def predict(model: nn.Module, loader: Iterable, device: torch.device = torch.device('cpu'),
            desc: Optional[str] = None) -> np.ndarray:
    """Arg-max class of every sample, in eval, in the loader's order."""
    model.eval()
    out = []
    with torch.no_grad():
        for images, _ in tqdm(loader, desc=desc or 'predicting', unit='batch', leave=False):
            out.append(model(images.to(device)).argmax(1).cpu())
    return torch.cat(out).numpy()


def top1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    pred, labels = np.asarray(predictions), np.asarray(labels)
    if pred.shape != labels.shape or pred.size == 0:
        raise ValueError(f'need equal, non-empty predictions and labels, got {pred.shape} and {labels.shape}')
    return float(np.mean(pred == labels))
