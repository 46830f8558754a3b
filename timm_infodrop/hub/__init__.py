"""Hugging Face Hub: the repositories the zoo publishes, clear loading errors, and publishing.

One job per module, bottom up:

* :mod:`~timm_infodrop.hub.naming`: the organisation (``$TIMM_INFODROP_HUB_ORG``, checked where a Hub name
  is used, not at import), the repos of every benchmark row and the ``default_cfgs`` fields of their tags;
  imports nothing from the package but :mod:`timm_infodrop.errors` and :mod:`timm_infodrop.registry`, so
  :mod:`timm_infodrop.models` names its tags with it;
* :mod:`~timm_infodrop.hub.errors`: huggingface_hub's errors re-raised as :class:`HubWeightsError`;
* :mod:`~timm_infodrop.hub.config`: reading a model folder's ``config.json``;
* :mod:`~timm_infodrop.hub.publishing`: staging a folder and uploading it. Loaded on first use of its
  names (``from timm_infodrop.hub import publish``), so importing the plugin does not load it.

Every name is importable from here, as before the split.
"""
import importlib
from typing import Any, List

from .config import read_model_config
from .errors import HubWeightsError, explain_hub_error, hub_errors
from .naming import (DEFAULT_HUB_ORG, HUB_ORG_ENV, HubRepo, check_hub_id, hub_org, plain_architecture, repo_for,
                     tagged_cfgs, weights_cfg)

__all__ = ['HUB_ORG_ENV', 'DEFAULT_HUB_ORG', 'HubRepo', 'HubWeightsError', 'hub_org', 'repo_for', 'weights_cfg',
           'tagged_cfgs', 'explain_hub_error', 'hub_errors', 'read_model_config', 'stage_folder', 'stage_for_repo',
           'check_repo_id', 'publish', 'PUBLISHED_FILES']

# name -> its module under timm_infodrop.hub, imported on first access
_LAZY = {name: 'publishing' for name in ('PUBLISHED_FILES', 'minimal_card', 'stage_folder', 'stage_for_repo',
                                         'check_repo_id', 'publish')}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
