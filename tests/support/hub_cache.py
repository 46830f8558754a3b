"""A Hugging Face Hub cache laid out by hand, read offline: how the tests give timm's own loader ImageNet weights.

``huggingface_hub`` finds a cached file at ``<cache>/models--<org>--<name>/snapshots/<commit>/<file>``, the
commit read from ``refs/main``. :func:`cache_repo` writes that layout; :func:`offline_hub` points
``huggingface_hub`` at the cache with ``HF_HUB_OFFLINE`` on, so a ``pretrained=True`` reads the cache or fails,
and never downloads.

``huggingface_hub`` reads ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` into
``huggingface_hub.constants`` when it is imported (setting the variables later changes nothing). Its download
functions read ``constants.HF_HUB_CACHE`` and ``constants.HF_HUB_OFFLINE`` on every call, so in this process
those two are patched; the endpoint is also baked into a URL template at import, so a test that needs another
endpoint runs a subprocess with :func:`offline_env`'s or its own environment.
"""
import contextlib
import os
import shutil
from pathlib import Path
from typing import Dict, Iterator, Mapping, Union

import pytest
import torch
from safetensors.torch import save_file

COMMIT = '0123456789abcdef0123456789abcdef01234567'  # any 40 hex digits: a commit hash, as the Hub's
NOWHERE = 'http://127.0.0.1:9'  # the discard port: an attempted download fails at once


def cache_repo(cache: Path, repo_id: str, files: Mapping[str, Union[Path, Mapping[str, torch.Tensor]]]) -> Path:
    """Cache ``files`` (name -> a file to copy, or a state dict written as safetensors) as ``repo_id``'s main
    branch in the Hub cache ``cache``; returns the snapshot folder."""
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    snapshot = repo / 'snapshots' / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, snapshot / name)
        else:
            save_file({k: v.contiguous() for k, v in content.items()}, str(snapshot / name))
    (repo / 'refs').mkdir(exist_ok=True)
    (repo / 'refs' / 'main').write_text(COMMIT)
    return snapshot


@contextlib.contextmanager
def offline_hub(cache: Path) -> Iterator[Path]:
    """Within the block, ``huggingface_hub`` in this process reads ``cache`` only (offline)."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, 'HF_HUB_CACHE', str(cache))
        patch.setattr(constants, 'HF_HUB_OFFLINE', True)
        yield cache


def hub_env(cache: Path, **extra: str) -> Dict[str, str]:
    """The environment of a subprocess whose ``huggingface_hub`` uses the cache ``cache``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('HF_')}
    env.update({'HF_HUB_CACHE': str(cache), 'HF_ENDPOINT': NOWHERE, **extra})
    return env


def offline_env(cache: Path) -> Dict[str, str]:
    """The environment of a subprocess whose ``huggingface_hub`` reads ``cache`` only."""
    return hub_env(cache, HF_HUB_OFFLINE='1')
