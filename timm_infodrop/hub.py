"""Hugging Face Hub: the repositories the zoo publishes, clear loading errors, and publishing.

Every zoo model is published twice (``hub_configs/<repo>/`` holds each one's config.json and card):

* the *training* variant, ``<org>/<zoo model>.shapes64`` (e.g. ``resnet18_infodrop.shapes64``): the
  architecture as trained, loadable by name once the plugin is installed,
  ``timm.create_model('resnet18_infodrop.shapes64', pretrained=True)``;
* the *deploy* variant, ``<org>/<plain arch>.shapes64_<method>_deploy`` (``method`` left out for the plain
  baseline): the converter's plain timm architecture, loadable by vanilla timm with
  ``timm.create_model('hf-hub:<org>/resnet18.shapes64_infodrop_deploy', pretrained=True)``.

The organisation is ``$TIMM_INFODROP_HUB_ORG`` (default ``timm-infodrop``), read when the models register.
Downloads go through timm and ``huggingface_hub``, so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache
(``HF_HUB_CACHE``) apply.
"""
import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

from .io import atomic_directory, check_output_path
from .models._builder import plain_architecture

__all__ = ['HUB_ORG_ENV', 'DEFAULT_HUB_ORG', 'ZOO_TAG', 'HubRepo', 'HubWeightsError', 'hub_org', 'zoo_repos',
           'repo_for', 'explain_hub_error', 'hub_errors', 'read_model_config', 'stage_folder', 'publish',
           'PUBLISHED_FILES']

HUB_ORG_ENV = 'TIMM_INFODROP_HUB_ORG'
DEFAULT_HUB_ORG = 'timm-infodrop'
ZOO_TAG = 'shapes64'  # the synthetic shape-vs-texture benchmark at 64 px
PUBLISHED_FILES = ('model.safetensors', 'config.json', 'README.md')
_ORG_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$')


class HubWeightsError(RuntimeError):
    """Weights of a registered tag or an ``hf-hub:`` model could not be fetched; says which repo and what to do."""


def hub_org() -> str:
    """The Hub organisation of our repos: ``$TIMM_INFODROP_HUB_ORG``, else ``timm-infodrop``."""
    org = os.environ.get(HUB_ORG_ENV, '') or DEFAULT_HUB_ORG
    if not _ORG_PATTERN.match(org) or '--' in org or '..' in org:
        raise ValueError(f'{HUB_ORG_ENV}={org!r} is not a valid Hugging Face organisation name')
    return org


@dataclass(frozen=True)
class HubRepo:
    """One published repository of a zoo model.

    name: the repo's name under the organisation, e.g. ``resnet18_infodrop.shapes64``;
    zoo_model: the zoo model it was trained as; architecture: the timm architecture of its config.json;
    deploy: True for the converter's plain architecture (loads without the plugin).
    """
    name: str
    zoo_model: str
    architecture: str
    deploy: bool

    @property
    def repo_id(self) -> str:
        return f'{hub_org()}/{self.name}'

    @property
    def needs_plugin(self) -> bool:
        return self.architecture != plain_architecture(self.architecture)

    @property
    def method(self) -> str:
        """The zoo model's regulariser (``'infodrop'``, ``'infodropout'``), ``''`` for the plain baseline."""
        return self.zoo_model[len(plain_architecture(self.zoo_model)) + 1:]


def repo_for(zoo_model: str, deploy: bool) -> HubRepo:
    """The repo a zoo model's training (``deploy=False``) or deploy variant is published to."""
    if not deploy:
        return HubRepo(f'{zoo_model}.{ZOO_TAG}', zoo_model, zoo_model, deploy=False)
    plain = plain_architecture(zoo_model)
    method = zoo_model[len(plain) + 1:]
    suffix = f'_{method}' if method else ''
    return HubRepo(f'{plain}.{ZOO_TAG}{suffix}_deploy', zoo_model, plain, deploy=True)


def zoo_repos(zoo_models: Sequence[str]) -> List[HubRepo]:
    """Both repos of every zoo model, training variant first."""
    return [repo_for(model, deploy) for model in zoo_models for deploy in (False, True)]


def explain_hub_error(repo_id: str, error: Exception) -> Exception:
    """A :class:`HubWeightsError` naming ``repo_id``, the endpoint and the fix for a huggingface_hub error;
    ``error`` itself when it is not one."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    where = f'{repo_id!r} on {constants.ENDPOINT}'
    if isinstance(error, RepositoryNotFoundError):
        advice = (f'the repo does not exist or is private: check the name and the organisation '
                  f'(${HUB_ORG_ENV}, now {hub_org()!r}); for a private repo log in (`hf auth login` or HF_TOKEN)')
        what = 'no such repository'
    elif isinstance(error, RevisionNotFoundError):
        what, advice = 'no such revision', 'check the revision (branch, tag or commit) in the model id'
    elif isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        what = 'not in the local cache and the Hub cannot be reached'
        advice = (f'HF_HUB_OFFLINE={os.environ.get("HF_HUB_OFFLINE", "0")}, cache {constants.HF_HUB_CACHE}: '
                  f'download it once online (`hf download {repo_id}`), or point HF_HUB_CACHE at a cache that holds it')
    elif isinstance(error, EntryNotFoundError):
        what, advice = 'the repo has no weights file', 'a timm repo holds model.safetensors and config.json'
    elif isinstance(error, HfHubHTTPError):
        what, advice = f'the Hub answered {error}', 'retry later, or check HF_ENDPOINT'
    else:
        return error
    return HubWeightsError(f'cannot fetch {where}: {what}; {advice}')


@contextlib.contextmanager
def hub_errors(repo_id: Optional[str]) -> Iterator[None]:
    """Re-raise huggingface_hub errors inside the block as :func:`explain_hub_error`'s
    :class:`HubWeightsError` for ``repo_id``; other errors (or any, when ``repo_id`` is None) pass."""
    try:
        yield
    except Exception as error:
        explained = explain_hub_error(repo_id, error) if repo_id else error
        if explained is error:
            raise
        raise explained from None


def read_model_config(folder: Path) -> Dict:
    """A timm model folder's ``config.json`` as a dict; errors name the file and what is wrong with it."""
    path = folder / 'config.json'
    if not path.is_file():
        raise FileNotFoundError(f'{str(folder)!r} has no config.json: give a model folder written by '
                                '`timm-infodrop train` or `timm-infodrop convert`')
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f'{str(path)!r} is not valid JSON ({error})') from None
    if not isinstance(config, dict) or not isinstance(config.get('architecture'), str):
        raise ValueError(f'{str(path)!r} has no "architecture": it is not a timm config.json')
    return config


def _check_weights(folder: Path, config: Dict) -> None:
    """The folder's weights load strictly into the model its config.json describes."""
    import timm
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    import timm_infodrop  # noqa: F401  training variants need the registry

    weights = folder / 'model.safetensors'
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in ('.bin', '.pth', '.pt', '.tar', '.pkl'))
        hint = f' (it has {pickles}; only safetensors is published)' if pickles else ''
        raise FileNotFoundError(f'{str(folder)!r} has no model.safetensors{hint}')
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise ValueError(f'{str(weights)!r} is not a readable safetensors file ({error})') from None
    try:  # built the way timm will build it from the Hub: from config.json
        model = timm.create_model(f'local-dir:{folder}', pretrained=False)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(f'{str(folder / "config.json")!r} does not build a timm model ({error})') from None
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f'{str(weights)!r} does not fit {config["architecture"]} of config.json: '
                         f'missing {sorted(missing)[:10]}, unexpected {sorted(unexpected)[:10]}')


def minimal_card(repo_id: str, config: Dict) -> str:
    """A short model card for a folder published without a rendered one."""
    arch = config['architecture']
    plain = plain_architecture(arch)
    plugin = '' if plain == arch else '\nNeeds the plugin: `pip install timm-infodrop` (and `import timm_infodrop`).\n'
    return (f'---\nlibrary_name: timm\nlicense: apache-2.0\ntags:\n- image-classification\n- timm\n- shape-bias\n---\n'
            f'# {repo_id.split("/")[-1]}\n\nA `{arch}` ({config.get("num_classes", "?")} classes) published with '
            f'`timm-infodrop publish`.\n{plugin}\n```python\nimport timm\n'
            f"model = timm.create_model('hf-hub:{repo_id}', pretrained=True)\n```\n")


def stage_folder(model_dir: Union[str, Path], out: Union[str, Path], repo_id: str,
                 card: Optional[Union[str, Path]] = None, overwrite: bool = False) -> Path:
    """Write the folder that gets uploaded: model.safetensors, config.json and README.md, nothing else.

    The weights are checked to load strictly into the model config.json describes; the card is ``card``
    (a rendered ``hub_configs/<repo>/README.md``) or a minimal one. ``out`` is written whole or not at all.
    """
    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise FileNotFoundError(f'--model-dir {str(model_dir)!r} is not a folder')
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise ValueError(f'the staging folder {str(out)!r} must not be the model folder or inside it')
    check_output_path(out, overwrite, directory=True)
    config = read_model_config(model_dir)
    _check_weights(model_dir, config)
    if card is not None:
        card_text = _checked_card(Path(card))
    else:
        card_text = minimal_card(repo_id, config)
    with atomic_directory(out) as staging:
        shutil.copyfile(model_dir / 'model.safetensors', staging / 'model.safetensors')
        shutil.copyfile(model_dir / 'config.json', staging / 'config.json')
        (staging / 'README.md').write_text(card_text)
    return out


def _checked_card(path: Path) -> str:
    from huggingface_hub import ModelCard

    if not path.is_file():
        raise FileNotFoundError(f'--card {str(path)!r}: no such file')
    text = path.read_text()
    try:
        ModelCard(text, ignore_metadata_errors=False)
    except Exception as error:  # huggingface_hub raises ValueError or yaml errors
        raise ValueError(f'--card {str(path)!r} has invalid model-card metadata ({error})') from None
    return text


def publish(folder: Union[str, Path], repo_id: str, private: bool = False, revision: Optional[str] = None,
            commit_message: Optional[str] = None):
    """Create ``repo_id`` if needed and upload ``folder`` (a :func:`stage_folder` result) as one commit.

    Files equal to the repo's are skipped by huggingface_hub, so publishing the same folder twice makes no
    new commit. Hub errors are raised as :class:`HubWeightsError`, naming the repo. The token comes from huggingface_hub's usual sources (``HF_TOKEN``, ``hf auth login``).
    Returns huggingface_hub's ``CommitInfo``.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    unexpected = sorted(p.name for p in folder.iterdir() if p.name not in PUBLISHED_FILES)
    if unexpected or not all((folder / name).is_file() for name in PUBLISHED_FILES):
        raise ValueError(f'{str(folder)!r} must hold exactly {list(PUBLISHED_FILES)}; '
                         f'found {sorted(p.name for p in folder.iterdir())}')
    api = HfApi()
    with hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                 commit_message=commit_message or f'Publish {repo_id} with timm-infodrop')


def zoo_weights_cfg(variant: str) -> Dict:
    """``default_cfgs`` fields of ``<variant>.shapes64``: the Hub repo and the benchmark's classes and input."""
    from .data.benchmark import class_names
    from .data.shapes import ShapesConfig

    config = ShapesConfig()
    return dict(hf_hub_id=repo_for(variant, deploy=False).repo_id, num_classes=config.num_classes,
                label_names=tuple(sorted(class_names(config, 'train'))), input_size=(3, config.size, config.size),
                pool_size=(config.size // 32, config.size // 32), crop_pct=1.0,
                description=f'{variant} trained on the synthetic shape-vs-texture benchmark (timm-infodrop zoo)')
