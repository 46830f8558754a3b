"""Load a trained variant from a checkpoint, refusing anything that does not fit it exactly.

A file that does not decode (safetensors, pickle or zip errors), a state dict that lacks keys or whose
shapes differ, is a :class:`~timm_infodrop.errors.CheckpointError` naming the file; any other exception
propagates (a bug, not a bad file).
"""
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import timm
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .errors import CheckpointError, ConfigError
from .hub import HubWeightsError, hub_errors, read_model_config

__all__ = ['read_args_yaml', 'load_variant', 'load_strictly', 'read_state_dict', 'check_checkpoint_file',
           'unreadable_checkpoint',
           'model_folder',
           'checkpoint_inputs', 'CHECKPOINT_SUFFIXES', 'SAFETENSORS_SUFFIX', 'PICKLE_SUFFIXES', 'MODEL_FOLDER_PREFIXES',
           'BAD_CHECKPOINT_ERRORS', 'STATE_FILE', 'STATE_FORMAT', 'RUN_ARGS']

# the checkpoint files we read, listed once: safetensors, and the pickles of timm's train.py and torch.save
SAFETENSORS_SUFFIX = '.safetensors'
PICKLE_SUFFIXES = ('.pth.tar', '.pth', '.pt', '.bin')
CHECKPOINT_SUFFIXES = (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES)
STATE_FILE = 'last.safetensors'  # the trainer's resume state in its run folder, rewritten every epoch
STATE_FORMAT = 'timm-infodrop-training-state/1'  # its format (safetensors metadata); the model's keys are model.*
RUN_ARGS = 'args.yaml'  # timm train.py and timm-infodrop train write it into the run folder
MODEL_FOLDER_PREFIXES = ('hf-hub:', 'local-dir:')  # timm model folders: config.json + weights
_LISTED = 10
# what loading a bad file raises: safetensors header errors; pickle, zip and end-of-file errors of torch.load
# (which also raises RuntimeError for a broken zip archive or a payload weights_only refuses); KeyError for a
# missing key; RuntimeError from load_state_dict for a size mismatch
BAD_CHECKPOINT_ERRORS = (SafetensorError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError,
                         RuntimeError)



def read_args_yaml(path: Path, role: str, error: type = ConfigError) -> Dict[str, Any]:
    """A run's ``args.yaml`` (:data:`RUN_ARGS`) as a mapping; ``error`` (a ConfigError) naming ``path`` and its
    ``role`` (e.g. "the checkpoint's run arguments") when it is not valid YAML or not a mapping."""
    import yaml

    try:
        settings = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as problem:
        raise error(f'{str(path)!r} ({role}) is not valid YAML: {" ".join(str(problem).split())}') from None
    if not isinstance(settings, dict):
        raise error(f'{str(path)!r} ({role}) is not a YAML mapping')
    return settings

def check_checkpoint_file(path: str) -> None:
    """Refuse what is not a checkpoint file before anything else is asked of it: a missing file, an unknown
    suffix, a ``.safetensors`` whose header does not decode (a text file renamed, a truncated download).
    Pickles are read by :func:`read_state_dict` (weights-only).

    Raises:
        FileNotFoundError, CheckpointError: naming the file and the cause.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f'{path!r}: no such checkpoint file')
    if not file.name.endswith(CHECKPOINT_SUFFIXES):
        raise CheckpointError(f'{path!r}: unsupported checkpoint format; use one of {", ".join(CHECKPOINT_SUFFIXES)}')
    if file.name.endswith(SAFETENSORS_SUFFIX):
        _safetensors_metadata(file)


def _safetensors_metadata(file: Path) -> Dict[str, str]:
    try:
        with safe_open(str(file), framework='pt') as f:
            return f.metadata() or {}
    except SafetensorError as error:
        raise CheckpointError(f'{str(file)!r} is not a readable weights-only checkpoint: not a safetensors file '
                              f'({type(error).__name__}: {error})') from None


def read_state_dict(path: str, use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """Tensors of a safetensors file, of a timm ``train.py`` checkpoint (its EMA weights with ``use_ema``, as
    convert and eval prefer; its raw weights without, as train.py's ``--initial-checkpoint`` takes them), or the
    model weights (``model.*``) of a ``timm-infodrop train`` resume state (``RUN/last.safetensors``).

    Pickle files load with ``weights_only=True`` only.
    """
    check_checkpoint_file(path)
    file = Path(path)
    try:
        if file.name.endswith(SAFETENSORS_SUFFIX) and _safetensors_metadata(file).get('format') == STATE_FORMAT:
            with safe_open(str(file), framework='pt') as f:
                return {key[len('model.'):]: f.get_tensor(key) for key in f.keys() if key.startswith('model.')}
        return timm.models.load_state_dict(str(file), use_ema=use_ema, weights_only=True)
    except BAD_CHECKPOINT_ERRORS as error:  # safetensors, pickle and zip errors have no common base
        raise unreadable_checkpoint(path, error) from None


def unreadable_checkpoint(path: str, error: BaseException) -> CheckpointError:
    """The error for a checkpoint file that does not decode (weights-only), naming the file and the cause."""
    return CheckpointError(f'{path!r} is not a readable weights-only checkpoint ({type(error).__name__}: {error})')


def _num_classes(name: str, state_dict: Dict[str, torch.Tensor]) -> int:
    classifier = timm.get_pretrained_cfg(name).classifier
    key = f'{classifier if isinstance(classifier, str) else classifier[0]}.weight'
    if key not in state_dict:
        raise CheckpointError(f'the checkpoint has no {key!r}: it is not a {name} classifier checkpoint')
    return state_dict[key].shape[0]


def _listing(keys) -> str:
    keys = sorted(keys)
    more = f' (+{len(keys) - _LISTED} more)' if len(keys) > _LISTED else ''
    return ', '.join(keys[:_LISTED]) + more


def model_folder(checkpoint: str) -> Optional[Path]:
    """The folder of a ``local-dir:`` checkpoint (FileNotFoundError without config.json); else None."""
    if not checkpoint.startswith('local-dir:'):
        return None
    folder = Path(checkpoint[len('local-dir:'):])
    if not (folder / 'config.json').is_file():
        state = folder / STATE_FILE
        hint = (f'; an unfinished timm-infodrop train run: give its resume state, --checkpoint {state}'
                if state.is_file() else '')
        raise FileNotFoundError(f'{checkpoint!r}: {str(folder)!r} has no config.json (a timm model folder has '
                                f'config.json and model.safetensors){hint}')
    read_model_config(folder)
    return folder


def checkpoint_inputs(checkpoint: Optional[str]) -> List[Path]:
    """The local files a ``--checkpoint`` value reads, for :func:`timm_infodrop.io.check_output_path`'s inputs:
    the file and the run's ``args.yaml`` beside it; for ``local-dir:RUN`` the files of RUN (config.json, the
    weights, args.yaml...), not the folder, so a new folder inside it (``--out RUN/deploy``, timm's layout)
    overwrites no input; none for ``hf-hub:`` ids and no checkpoint."""
    if not checkpoint or checkpoint.startswith('hf-hub:'):
        return []
    if checkpoint.startswith('local-dir:'):
        folder = Path(checkpoint[len('local-dir:'):])
        return sorted(path for path in folder.iterdir() if not path.is_dir()) if folder.is_dir() else [folder]
    file = Path(checkpoint)
    return [file] + [path for path in [file.parent / RUN_ARGS] if path.is_file()]


def load_variant(checkpoint: str, model_name: Optional[str] = None, model_kwargs: Optional[Dict] = None) -> nn.Module:
    """Build ``model_name`` and load ``checkpoint`` into it strictly.

    ``hf-hub:org/name`` and ``local-dir:FOLDER`` (a folder with timm's config.json, as ``timm-infodrop
    train`` writes) build the model their config describes; ``model_name`` then only checks it. For a
    checkpoint file, ``model_kwargs`` are the run's ``timm.create_model`` keywords (e.g. ``infodrop_stages``
    from a train.py run's ``--model-kwargs``), so a non-default placement loads.

    Raises:
        CheckpointError: naming the file and the missing and unexpected keys, or the mismatched shapes, when
            the checkpoint is of another architecture, or what does not decode.
        ConfigError: no or an unknown ``model_name``.
        FileNotFoundError: no such file, or a model folder without config.json.
    """
    import timm_infodrop  # noqa: F401  the variants must be registered

    if checkpoint.startswith(MODEL_FOLDER_PREFIXES):
        model_folder(checkpoint)
        hub_id = checkpoint[len('hf-hub:'):] if checkpoint.startswith('hf-hub:') else None
        try:
            with hub_errors(hub_id):  # Hub errors become HubWeightsError, explained
                model = timm.create_model(checkpoint, pretrained=True)
        except HubWeightsError:
            raise
        except BAD_CHECKPOINT_ERRORS as error:  # a broken weights file, an unknown architecture, a size mismatch
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
            raise CheckpointError(f'{checkpoint!r} does not load as a timm model folder '
                                  f'({type(error).__name__}: {first_line})') from None
        if model_name and model.pretrained_cfg.get('architecture') != model_name.split('.')[0]:
            raise CheckpointError(f'{checkpoint} holds a {model.pretrained_cfg.get("architecture")}, '
                                  f'not a {model_name}')
        return model
    check_checkpoint_file(checkpoint)  # the file's own problem first, whatever else is missing
    if not model_name:
        raise ConfigError('--model is needed with a checkpoint file')
    if model_name not in timm.list_models():
        raise ConfigError(f'{model_name!r} is not a registered timm model')
    state_dict = read_state_dict(checkpoint)
    try:
        model = timm.create_model(model_name, num_classes=_num_classes(model_name, state_dict), **(model_kwargs or {}))
    except TypeError as error:  # a keyword the architecture does not take
        raise ConfigError(f'{model_name}: {error} (from the run\'s model keywords {model_kwargs})') from None
    return load_strictly(model, state_dict, checkpoint, model_name).eval()


def load_strictly(model: nn.Module, state_dict: Dict[str, torch.Tensor], checkpoint: str, model_name: str) -> nn.Module:
    """Load ``state_dict`` (read from the file ``checkpoint``) into ``model`` (a ``model_name``) strictly; returns it.

    Raises:
        CheckpointError: naming the file and the missing and unexpected keys, or the mismatched shapes, when the
            weights are of another architecture or class count.
    """
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f'{checkpoint!r} does not fit {model_name}: missing keys [{_listing(missing)}]; '
            f'unexpected keys [{_listing(unexpected)}]')
    shapes = [f'{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
              if state_dict[k].shape != v.shape]
    if shapes:
        raise CheckpointError(f'{checkpoint!r} does not fit {model_name}: shape mismatches [{_listing(shapes)}]')
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:  # what the checks above do not foresee, e.g. a tensor that is not one
        raise CheckpointError(f'{checkpoint!r} does not load into {model_name} ({error})') from None
    return model
