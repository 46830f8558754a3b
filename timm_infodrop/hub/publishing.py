"""Publishing to the Hub: stage a model folder (safetensors, config.json, card, nothing else) and upload it.

The only part of :mod:`timm_infodrop.hub` that writes or uploads; :mod:`timm_infodrop.hub` loads it on
first use of its names, so ``import timm_infodrop`` does not.
"""
import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from ..errors import CheckpointError, ConfigError, DataError
from ..io import atomic_directory, check_output_path
from .config import read_model_config
from .errors import hub_errors
from .naming import plain_architecture

__all__ = ['PUBLISHED_FILES', 'minimal_card', 'stage_folder', 'stage_for_repo', 'check_repo_id', 'publish']

PUBLISHED_FILES = ('model.safetensors', 'config.json', 'README.md')


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
        raise CheckpointError(f'{str(weights)!r} is not a readable safetensors file ({error})') from None
    try:  # built the way timm will build it from the Hub: from config.json
        model = timm.create_model(f'local-dir:{folder}', pretrained=False)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f'{str(folder / "config.json")!r} does not build a timm model ({error})') from None
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(f'{str(weights)!r} does not fit {config["architecture"]} of config.json: '
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
    check_output_path(out, overwrite, directory=True, inputs=[model_dir, card])
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


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub id of the form ORG/NAME; ConfigError (naming it) otherwise."""
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except Exception as error:  # huggingface_hub's HFValidationError
        raise ConfigError(f'--repo-id {repo_id!r}: {error}') from None
    if '/' not in repo_id:
        raise ConfigError(f'--repo-id {repo_id!r} needs an organisation or user: ORG/NAME')
    return repo_id


def stage_for_repo(model_dir: Union[str, Path], repo_id: str, card: Optional[Union[str, Path]] = None,
                   staging: Optional[Union[str, Path]] = None, hub_configs: Union[str, Path] = 'hub_configs'
                   ) -> Tuple[Path, Optional[str]]:
    """Check ``repo_id`` (:func:`check_repo_id`) and stage ``model_dir`` for it (:func:`stage_folder`, replacing
    an earlier staging); returns the staged folder and the card used (None: the minimal card).

    ``card`` defaults to ``hub_configs/NAME/README.md`` (NAME: the repo's name) when that file exists;
    ``staging`` to ``out/publish/NAME``.
    """
    check_repo_id(repo_id)
    name = repo_id.split('/')[-1]
    if card is None and (Path(hub_configs) / name / 'README.md').is_file():
        card = Path(hub_configs) / name / 'README.md'
    card = None if card is None else str(card)
    folder = stage_folder(model_dir, Path(staging or Path('out/publish') / name), repo_id, card=card, overwrite=True)
    return folder, card


def _checked_card(path: Path) -> str:
    from huggingface_hub import ModelCard

    if not path.is_file():
        raise FileNotFoundError(f'--card {str(path)!r}: no such file')
    text = path.read_text()
    try:
        ModelCard(text, ignore_metadata_errors=False)
    except Exception as error:  # huggingface_hub raises ValueError or yaml errors
        raise DataError(f'--card {str(path)!r} has invalid model-card metadata ({error})') from None
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
        raise DataError(f'{str(folder)!r} must hold exactly {list(PUBLISHED_FILES)}; '
                         f'found {sorted(p.name for p in folder.iterdir())}')
    api = HfApi()
    with hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                 commit_message=commit_message or f'Publish {repo_id} with timm-infodrop')
