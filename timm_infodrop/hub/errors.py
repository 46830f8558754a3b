"""Hub errors a user can act on: huggingface_hub's exceptions re-raised as :class:`HubWeightsError`,
naming the repo, the endpoint and the fix.

Downloads go through timm and ``huggingface_hub``, so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache
(``HF_HUB_CACHE``) apply.
"""
import contextlib
import os
from typing import Iterator, Optional

from .naming import HUB_ORG_ENV, hub_org

__all__ = ['HubWeightsError', 'explain_hub_error', 'hub_errors']


class HubWeightsError(RuntimeError):
    """Weights of a registered tag or an ``hf-hub:`` model could not be fetched; says which repo and what to do."""


def explain_hub_error(repo_id: str, error: Exception) -> Exception:
    """A :class:`HubWeightsError` naming ``repo_id``, the endpoint and the fix for a huggingface_hub error;
    ``error`` itself when it is not one."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    where = f'{repo_id!r} on {constants.ENDPOINT}'
    if isinstance(error, RepositoryNotFoundError):
        # the organisation variable names our repos only (a variant's architecture tags are timm's own)
        org = (f' and the organisation (${HUB_ORG_ENV}, now {hub_org(check=False)!r})'
               if repo_id.split('/', 1)[0] == hub_org(check=False) else '')
        advice = (f'the repo does not exist or is private: check the name{org}; for a private repo log in '
                  f'(`hf auth login` or HF_TOKEN)')
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
