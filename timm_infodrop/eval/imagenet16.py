"""Shape bias of ImageNet-1k models on cue-conflict stimuli (Geirhos et al., ICLR 2019).

The stimuli (1,280 PNGs of the texture-vs-shape repository, CC-BY-4.0) are not shipped: pass their
folder. File names carry both labels, ``<shape><k>-<texture><j>.png`` (e.g. ``cat3-elephant1.png``).
A model's 1000 ImageNet probabilities are mapped to the 16 categories by averaging the softmax over
each category's ImageNet indices (``imagenet16.json``, shipped); images whose shape and texture
categories agree are dropped.
"""
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import DataError
from .metrics import shape_bias

__all__ = ['categories', 'category_indices', 'category_probabilities', 'parse_stimulus_name',
           'find_stimuli', 'evaluate_cue_conflict', 'cue_conflict_to_file']

_NAME = re.compile(r'^([a-z]+)\d+-([a-z]+)\d+$')


@lru_cache(maxsize=1)
def _mapping() -> Dict:
    return json.loads(resources.files(__package__).joinpath('imagenet16.json').read_text())


def categories() -> List[str]:
    """The 16 entry-level categories, in their fixed order."""
    return list(_mapping()['categories'])


def category_indices() -> Dict[str, List[int]]:
    """ImageNet-1k class indices of every category."""
    return {k: list(v) for k, v in _mapping()['indices'].items()}


def category_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1000) ImageNet logits -> (N, 16) mean softmax probability over each category's indices."""
    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise ValueError(f'expected ImageNet-1k logits of shape (N, 1000), got {tuple(logits.shape)}')
    probs = logits.float().softmax(dim=1)
    indices = category_indices()
    return torch.stack([probs[:, indices[c]].mean(dim=1) for c in categories()], dim=1)


def parse_stimulus_name(path: Path) -> Tuple[str, str]:
    """``.../cat3-elephant1.png`` -> ``('cat', 'elephant')``: shape and texture category."""
    match = _NAME.match(Path(path).stem)
    known = set(categories())
    if not match or not {match.group(1), match.group(2)} <= known:
        raise DataError(f'{str(path)!r} is not a cue-conflict stimulus name <shape><k>-<texture><j> '
                         f'with categories among {sorted(known)}')
    return match.group(1), match.group(2)


def find_stimuli(folder: Path) -> List[Path]:
    """Every PNG under ``folder`` (sorted); FileNotFoundError without the folder, DataError without a PNG."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'{str(folder)!r}: no such stimuli folder')
    files = sorted(p for p in folder.rglob('*') if p.suffix.lower() == '.png')
    if not files:
        raise DataError(f'{str(folder)!r} holds no .png stimuli')
    return files


def evaluate_cue_conflict(model: nn.Module, folder: Path, batch_size: int = 32,
                          device: torch.device = torch.device('cpu')) -> Dict:
    """Shape bias of an ImageNet-1k ``model`` (eval, its own preprocessing) on the stimuli in ``folder``.

    Returns ``shape_bias``, ``images`` (found), ``used`` (shape != texture), ``shape_hits``,
    ``texture_hits`` and ``per_shape`` {category: shape bias of the stimuli with that shape}.
    """
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    files = find_stimuli(folder)
    labels = [parse_stimulus_name(f) for f in files]
    transform = create_transform(**resolve_data_config({}, model=model), is_training=False)
    names = categories()
    model.eval()
    predictions = []
    with torch.no_grad():
        for start in tqdm(range(0, len(files), batch_size), desc='cue-conflict', unit='batch', leave=False):
            batch = torch.stack([transform(Image.open(f).convert('RGB')) for f in files[start:start + batch_size]])
            predictions.append(category_probabilities(model(batch.to(device))).argmax(1).cpu())
    pred = torch.cat(predictions).numpy()
    shape = np.array([names.index(s) for s, _ in labels])
    texture = np.array([names.index(t) for _, t in labels])
    keep = shape != texture
    per_shape = {c: shape_bias(pred[shape == i], shape[shape == i], texture[shape == i])
                 for i, c in enumerate(names) if np.any((shape == i) & keep)}
    return {'shape_bias': shape_bias(pred, shape, texture), 'images': len(files), 'used': int(keep.sum()),
            'shape_hits': int(np.sum((pred == shape) & keep)), 'texture_hits': int(np.sum((pred == texture) & keep)),
            'per_shape': per_shape}


def cue_conflict_to_file(out, stimuli, model: Optional[str] = None, checkpoint: Optional[str] = None,
                         pretrained: bool = False, batch_size: int = 32, overwrite: bool = False) -> Dict:
    """:func:`evaluate_cue_conflict` of a model, written with what was run (``model``, ``checkpoint``,
    ``stimuli``) to the JSON file ``out``, atomically; returns the results.

    The model: ``checkpoint`` loaded (:func:`timm_infodrop.checkpoint.load_variant`; ``model`` names or checks
    its architecture), else timm's ``model`` (with its pretrained weights if ``pretrained``). It must have the
    1000 ImageNet-1k classes.

    Raises:
        OutputError, FileNotFoundError, DataError, ConfigError, CheckpointError: input a user can fix, before
            the evaluation.
    """
    import timm

    from ..checkpoint import checkpoint_inputs, load_variant
    from ..errors import ConfigError, check_range
    from ..io import atomic_output, check_output_path

    check_range('--batch-size', batch_size, 1)
    out = check_output_path(out, overwrite, inputs=[*checkpoint_inputs(checkpoint), stimuli], suffixes=('.json',))
    find_stimuli(stimuli)
    if checkpoint:
        network = load_variant(checkpoint, model)
    elif model:
        network = timm.create_model(model, pretrained=pretrained)
    else:
        raise ConfigError('give --model (and --pretrained or --checkpoint)')
    if network.num_classes != 1000:
        raise ConfigError(f'the model has {network.num_classes} classes; the 16-category protocol needs ImageNet-1k (1000)')
    results = evaluate_cue_conflict(network, stimuli, batch_size)
    results.update(model=model or network.pretrained_cfg['architecture'], checkpoint=checkpoint, stimuli=str(stimuli))
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + '\n')
    return results
