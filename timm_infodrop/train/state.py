"""Training state in one safetensors file: weights, EMA weights, optimizer state, progress and the random
generators' states.

No pickle anywhere: tensors go in the file, everything else (epoch, step, the optimizer's param
groups and its non-tensor state, the generators' scalars) in the safetensors metadata as JSON. Schedulers are not
stored: timm's schedulers are functions of the epoch and update count, set again on resume.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..checkpoint import STATE_FORMAT
from ..errors import CheckpointError
from ..io import atomic_output
from .generators import GeneratorStates

__all__ = ['TrainingState', 'save_training_state', 'load_training_state', 'STATE_FORMAT']


@dataclass
class TrainingState:
    epoch: int  # epochs completed
    step: int  # optimizer updates completed
    generators: Optional[GeneratorStates] = None  # the random generators when it was saved (None: not recorded)


def _tensors(prefix: str, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {f'{prefix}.{k}': v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}


def save_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState,
                        ema: Optional[nn.Module] = None) -> None:
    """Write ``path`` atomically (a killed run leaves the previous file)."""
    tensors = _tensors('model', model.state_dict())
    if ema is not None:
        tensors.update(_tensors('ema', ema.state_dict()))
    saved = optimizer.state_dict()
    scalars: Dict[str, Dict] = {}
    for index, entry in saved['state'].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f'optimizer.{index}.{key}'] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {'format': STATE_FORMAT, 'epoch': str(state.epoch), 'step': str(state.step),
                'param_groups': json.dumps(saved['param_groups']), 'optimizer_scalars': json.dumps(scalars)}
    if state.generators is not None:
        tensors.update({f'rng.{k}': v.detach().cpu().contiguous().clone() for k, v in state.generators.tensors.items()})
        metadata['rng'] = json.dumps(state.generators.scalars)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_training_state(path: Path, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                        ema: Optional[nn.Module] = None) -> TrainingState:
    """Restore what :func:`save_training_state` wrote into ``model`` (strictly), ``optimizer`` and ``ema``; the
    generators' states come back in the returned state (:meth:`GeneratorStates.restore` sets them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'--resume {str(path)!r}: no such file')
    try:
        with safe_open(str(path), framework='pt') as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except SafetensorError as error:
        raise CheckpointError(f'--resume {str(path)!r} is not a readable safetensors file ({error})') from None
    if metadata.get('format') != STATE_FORMAT:
        raise CheckpointError(f'--resume {str(path)!r} is not a training state ({STATE_FORMAT}); '
                         'use --initial-checkpoint for weights only')
    groups: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, rest = key.partition('.')
        groups.setdefault(prefix, {})[rest] = value
    try:
        model.load_state_dict(groups.get('model', {}), strict=True)
    except RuntimeError as error:  # missing, unexpected or mis-shaped keys: another model's state
        raise CheckpointError(f'--resume {str(path)!r} does not fit the model ({error})') from None
    if ema is not None:
        if 'ema' not in groups:
            raise CheckpointError(f'--resume {str(path)!r} has no EMA weights but --model-ema is on')
        ema.load_state_dict(groups['ema'], strict=True)
    if optimizer is not None:
        entries: Dict[int, Dict] = {int(k): dict(v) for k, v in json.loads(metadata['optimizer_scalars']).items()}
        for key, value in groups.get('optimizer', {}).items():
            index, _, name = key.partition('.')
            entries.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({'state': entries, 'param_groups': json.loads(metadata['param_groups'])})
    generators = GeneratorStates(groups['rng'], json.loads(metadata['rng'])) if 'rng' in metadata else None
    return TrainingState(epoch=int(metadata['epoch']), step=int(metadata['step']), generators=generators)
