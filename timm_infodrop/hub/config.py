"""Reading a timm model folder's ``config.json`` (as ``train``/``convert`` write and the Hub serves it)."""
import json
from pathlib import Path
from typing import Dict

from ..errors import CheckpointError

__all__ = ['read_model_config']


def read_model_config(folder: Path) -> Dict:
    """A timm model folder's ``config.json`` as a dict; errors name the file and what is wrong with it."""
    path = folder / 'config.json'
    if not path.is_file():
        raise FileNotFoundError(f'{str(folder)!r} has no config.json: give a model folder written by '
                                '`timm-infodrop train` or `timm-infodrop convert`')
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f'{str(path)!r} is not valid JSON ({error})') from None
    if not isinstance(config, dict) or not isinstance(config.get('architecture'), str):
        raise CheckpointError(f'{str(path)!r} has no "architecture": it is not a timm config.json')
    return config
