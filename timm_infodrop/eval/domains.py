"""Domain generalisation scores: top-1 on a held-out domain and on the sources' validation split."""
from typing import Dict, Sequence

import numpy as np
import torch
from timm.data import resolve_data_config
from torch import nn

from ..data.domains import DomainSplit, Sample, sample_loader
from .metrics import predict_with_labels, top1

__all__ = ['domain_scores', 'samples_scores']


def samples_scores(model: nn.Module, samples: Sequence[Sample], classes: Sequence[str], batch_size: int = 128,
                   device: torch.device = torch.device('cpu'), progress: bool = True) -> Dict[str, float]:
    """``top1`` and ``mean_class_top1`` (the mean of per-class top-1: PACS's sketch is unbalanced) of
    ``model`` in eval on ``samples``, preprocessed as its ``pretrained_cfg`` says."""
    config = resolve_data_config(model=model)
    loader = sample_loader(samples, classes, config, batch_size, progress=progress)
    predictions, labels = predict_with_labels(model, loader, device, 'evaluating', progress=progress)
    per_class = [float(np.mean(predictions[labels == c] == c)) for c in np.unique(labels)]
    return {'top1': top1(predictions, labels), 'mean_class_top1': float(np.mean(per_class)), 'images': len(labels)}


def domain_scores(model: nn.Module, split: DomainSplit, batch_size: int = 128,
                  device: torch.device = torch.device('cpu'), progress: bool = True) -> Dict[str, float]:
    """``top1``/``mean_class_top1`` on the target domain and ``source_val_top1`` on the sources' val split."""
    target = samples_scores(model, split.test, split.classes, batch_size, device, progress)
    source = samples_scores(model, split.val, split.classes, batch_size, device, progress)
    return {'target_domain': split.target, 'top1': target['top1'], 'mean_class_top1': target['mean_class_top1'],
            'target_images': target['images'], 'source_val_top1': source['top1'], 'source_val_images': source['images']}
