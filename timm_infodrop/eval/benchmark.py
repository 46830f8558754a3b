"""Scores on the synthetic benchmark: val top-1, silhouette and texture-only top-1, shape bias."""
from typing import Dict, Optional

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ..data.benchmark import ShapesDataset
from ..data.shapes import ShapesConfig, sample_labels
from .metrics import predict_with_labels, shape_bias, top1

__all__ = ['normalizer', 'benchmark_loader', 'evaluate_benchmark', 'EVAL_SIZES']

EVAL_SIZES = {'val': 1000, 'cue_conflict': 1000, 'silhouette': 1000, 'texture_only': 1000}


class _Normalize:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def normalizer(model: nn.Module) -> _Normalize:
    """Normalisation with the model's pretrained_cfg mean/std (ImageNet's by default)."""
    cfg = getattr(model, 'pretrained_cfg', {}) or {}
    return _Normalize(cfg.get('mean', IMAGENET_DEFAULT_MEAN), cfg.get('std', IMAGENET_DEFAULT_STD))


class _Mapped(torch.utils.data.Dataset):
    def __init__(self, dataset, fn):
        self.dataset, self.fn = dataset, fn

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, label = self.dataset[index]
        return self.fn(image), label


def benchmark_loader(split: str, length: int, config: ShapesConfig, model: nn.Module, batch_size: int = 128,
                     shuffle: bool = False, seed: int = 0, workers: int = 0) -> torch.utils.data.DataLoader:
    dataset = _Mapped(ShapesDataset(split, length, config), normalizer(model))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       generator=torch.Generator().manual_seed(seed), drop_last=shuffle)


def evaluate_benchmark(model: nn.Module, config: ShapesConfig, sizes: Optional[Dict[str, int]] = None,
                       batch_size: int = 128) -> Dict[str, float]:
    """``top1`` (val), ``silhouette_top1``, ``texture_only_top1`` and ``shape_bias`` (cue_conflict)."""
    sizes = dict(EVAL_SIZES, **(sizes or {}))
    results = {}
    for split, key in (('val', 'top1'), ('silhouette', 'silhouette_top1'), ('texture_only', 'texture_only_top1')):
        loader = benchmark_loader(split, sizes[split], config, model, batch_size)
        results[key] = top1(*predict_with_labels(model, loader, desc=split))
    loader = benchmark_loader('cue_conflict', sizes['cue_conflict'], config, model, batch_size)
    predictions, shapes = predict_with_labels(model, loader, desc='cue_conflict')
    textures = [sample_labels(config, 'cue_conflict', i)[1] for i in range(sizes['cue_conflict'])]
    results['shape_bias'] = shape_bias(predictions, shapes, textures)
    return results
