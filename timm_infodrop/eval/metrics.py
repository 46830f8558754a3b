"""Benchmark metrics: top-1 and shape bias (Geirhos et al., ICLR 2019)."""
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

__all__ = ['shape_bias', 'predict', 'predict_with_labels', 'predict_images', 'images_to_tensor', 'top1']


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


def predict_with_labels(model: nn.Module, loader: Iterable, device: torch.device = torch.device('cpu'),
                        desc: Optional[str] = None, progress: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Arg-max class of every sample (in eval) and the loader's labels, in the loader's order (``progress``: a
    progress bar named ``desc``).

    Raises:
        ValueError: for an empty loader.
    """
    model.eval()
    predictions, labels = [], []
    with torch.no_grad():
        for images, targets in tqdm(loader, desc=desc or 'predicting', unit='batch', leave=False, disable=not progress):
            predictions.append(model(images.to(device)).argmax(1).cpu())
            labels.append(torch.as_tensor(targets).cpu())
    if not predictions:
        raise ValueError('no sample to predict: the loader is empty')
    return torch.cat(predictions).numpy(), torch.cat(labels).numpy()


def predict(model: nn.Module, loader: Iterable, device: torch.device = torch.device('cpu'),
            desc: Optional[str] = None) -> np.ndarray:
    """Arg-max class of every sample, in eval, in the loader's order."""
    return predict_with_labels(model, loader, device, desc)[0]


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def predict_images(model: nn.Module, images: np.ndarray, normalize, batch_size: int = 128) -> np.ndarray:
    """Arg-max class (in eval) of uint8 images (N, H, W, 3), normalised by ``normalize``."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model(normalize(images_to_tensor(images[start:start + batch_size]))).argmax(1))
    return torch.cat(out).numpy()


def top1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    pred, labels = np.asarray(predictions), np.asarray(labels)
    if pred.shape != labels.shape or pred.size == 0:
        raise ValueError(f'need equal, non-empty predictions and labels, got {pred.shape} and {labels.shape}')
    return float(np.mean(pred == labels))
