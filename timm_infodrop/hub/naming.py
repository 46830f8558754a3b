"""Names on the Hub: the organisation, the repos of every zoo model, and the ``default_cfgs`` fields of the tags.

Every zoo model is published twice (``hub_configs/<repo>/`` holds each one's config.json and card):

* the *training* variant, ``<org>/<zoo model>.shapes64`` (e.g. ``resnet18_infodrop.shapes64``): the
  architecture as trained, loadable by name once the plugin is installed,
  ``timm.create_model('resnet18_infodrop.shapes64', pretrained=True)``;
* the *deploy* variant, ``<org>/<plain arch>.shapes64_<method>_deploy`` (``method`` left out for the plain
  baseline): the converter's plain timm architecture, loadable by vanilla timm with
  ``timm.create_model('hf-hub:<org>/resnet18.shapes64_infodrop_deploy', pretrained=True)``.

The PACS zoo's rows, trained on three PACS domains for one target domain, are published the same way under
the tag ``pacs64_<target>`` (:func:`pacs_repo_for`): ``resnet18_infodrop.pacs64_sketch`` and
``resnet18.pacs64_sketch_infodrop_deploy``; a row that is a registered model with other settings or other
training images adds its difference to the tag (``resnet18_infodrop.pacs64_sketch_early``,
``resnet18.pacs64_sketch_anisotropic``).

The organisation is ``$TIMM_INFODROP_HUB_ORG`` (default ``timm-infodrop``), read when the models register
and checked where a Hub name is used (a repo id, pretrained weights of a tag, publishing), never at import:
an invalid value raises :class:`~timm_infodrop.errors.ConfigError` naming it, and ``import timm_infodrop``
still succeeds.

This module is the bottom floor of :mod:`timm_infodrop.hub`: it imports nothing from the package but
:mod:`timm_infodrop.errors`, so :mod:`timm_infodrop.models` can name its tags with it.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from ..errors import ConfigError

__all__ = ['HUB_ORG_ENV', 'DEFAULT_HUB_ORG', 'ZOO_TAG', 'METHOD_NAMES', 'ZOO_CLASSES', 'ZOO_IMAGE_SIZE',
           'HubRepo', 'hub_org', 'check_hub_id', 'plain_architecture', 'repo_for', 'zoo_repos', 'zoo_weights_cfg',
           'PACS_TAG', 'PACS_DOMAINS', 'PACS_CLASSES', 'pacs_tag', 'pacs_repo_for', 'pacs_weights_cfg']

HUB_ORG_ENV = 'TIMM_INFODROP_HUB_ORG'
DEFAULT_HUB_ORG = 'timm-infodrop'
ZOO_TAG = 'shapes64'  # the synthetic shape-vs-texture benchmark at 64 px
METHOD_NAMES = ('infodrop', 'infodropout')  # the regularisers: the keys of models._builder.METHODS
# the zoo's benchmark: data.shapes.ShapesConfig() (its shapes are the classes of every split but texture_only)
ZOO_CLASSES = ('circle', 'square', 'triangle', 'star', 'cross', 'hexagon', 'heart', 'crescent', 'arrow', 'ring')
ZOO_IMAGE_SIZE = 64
PACS_TAG = 'pacs64'  # the PACS zoo: 64 px, from scratch, three source domains (the tag adds the target)
PACS_DOMAINS = ('art_painting', 'cartoon', 'photo', 'sketch')  # data.domains.PACS_DOMAINS (a test checks)
PACS_CLASSES = ('dog', 'elephant', 'giraffe', 'guitar', 'horse', 'house', 'person')  # sorted, as the loaders index them
_ORG_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$')


def plain_architecture(name: str) -> str:
    """``'resnet18_infodrop'`` -> ``'resnet18'`` (a tag after ``.`` is dropped); plain names pass through."""
    name = name.split('.', 1)[0]
    for method in METHOD_NAMES:
        if name.endswith(f'_{method}'):
            return name[: -len(method) - 1]
    return name


def hub_org(check: bool = True) -> str:
    """The Hub organisation of our repos: ``$TIMM_INFODROP_HUB_ORG``, else ``timm-infodrop``.

    Raises:
        ConfigError: naming the variable and its value when it is not a valid organisation name
            (with ``check=False`` the value is returned as it is, e.g. to register the tags).
    """
    org = os.environ.get(HUB_ORG_ENV, '') or DEFAULT_HUB_ORG
    if check and (not _ORG_PATTERN.match(org) or '--' in org or '..' in org):
        raise ConfigError(f"{HUB_ORG_ENV}={org!r} is not a valid Hugging Face organisation name (letters, digits, "
                          f"'-', '_', '.', at most 96, no '--' or '..'): set it to your organisation or unset it "
                          f"for {DEFAULT_HUB_ORG!r}")
    return org


def check_hub_id(hub_id: Optional[str]) -> Optional[str]:
    """``hub_id`` (a pretrained cfg's ``hf_hub_id``), once its organisation is checked if it is ours.

    The tags register with ``$TIMM_INFODROP_HUB_ORG`` unchecked, so that importing the plugin never fails
    on the variable; this is called before their weights are fetched, and raises :func:`hub_org`'s
    ConfigError there. Ids of other organisations pass unchanged (the Hub judges them).
    """
    if hub_id and hub_id.split('/', 1)[0] == hub_org(check=False):
        hub_org()
    return hub_id


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


def zoo_weights_cfg(variant: str) -> Dict:
    """``default_cfgs`` fields of ``<variant>.shapes64``: the Hub repo and the benchmark's classes and input.

    The classes and size are :data:`ZOO_CLASSES` and :data:`ZOO_IMAGE_SIZE`, not read from
    :mod:`timm_infodrop.data`, so registering the tags does not import the benchmark generator
    (a test checks they are the benchmark's).
    """
    size = ZOO_IMAGE_SIZE
    # the org unchecked: this runs when the models register (import timm_infodrop); check_hub_id checks it
    hf_hub_id = f'{hub_org(check=False)}/{repo_for(variant, deploy=False).name}'
    return dict(hf_hub_id=hf_hub_id, num_classes=len(ZOO_CLASSES),
                label_names=tuple(sorted(ZOO_CLASSES)), **_input_cfg(size),
                description=f'{variant} trained on the synthetic shape-vs-texture benchmark (timm-infodrop zoo)')


def pacs_tag(target: str) -> str:
    """``'pacs64_sketch'``: the tag of the PACS zoo's models trained for ``target`` (the held-out domain)."""
    return f'{PACS_TAG}_{target}'


def pacs_repo_for(row: str, model: str, target: str, deploy: bool) -> HubRepo:
    """The repo of PACS zoo row ``row`` (trained as the timm model ``model``) for ``target``.

    The row's name beyond its model's (``'_early'`` of ``resnet18_infodrop_early``) is added to the tag,
    so every row has its own repo: training ``resnet18_infodrop.pacs64_sketch_early``, deploy
    ``resnet18.pacs64_sketch_infodrop_early_deploy``.
    """
    if not row.startswith(model):
        raise ValueError(f'row {row!r} does not extend its model {model!r}')
    variant = row[len(model):]
    if not deploy:
        return HubRepo(f'{model}.{pacs_tag(target)}{variant}', row, model, deploy=False)
    plain = plain_architecture(model)
    method = model[len(plain):]
    return HubRepo(f'{plain}.{pacs_tag(target)}{method}{variant}_deploy', row, plain, deploy=True)


def pacs_weights_cfg(model: str, target: str, image_size: int = ZOO_IMAGE_SIZE) -> Dict:
    """``default_cfgs`` fields of ``<model>.pacs64_<target>``: its Hub repo, PACS's 7 classes, the input."""
    if target not in PACS_DOMAINS:
        raise ValueError(f'unknown PACS target domain {target!r}; PACS has {list(PACS_DOMAINS)}')
    hf_hub_id = f'{hub_org(check=False)}/{pacs_repo_for(model, model, target, deploy=False).name}'
    sources = ', '.join(d for d in PACS_DOMAINS if d != target)
    return dict(hf_hub_id=hf_hub_id, num_classes=len(PACS_CLASSES), label_names=PACS_CLASSES, **_input_cfg(image_size),
                description=f'{model} trained from scratch on PACS {sources} for the unseen {target} domain '
                            '(timm-infodrop PACS zoo)')


def _input_cfg(size: int) -> Dict:
    """The input fields of a tag trained and tested at ``size`` px, centre-cropped whole (crop_pct 1)."""
    return dict(input_size=(3, size, size), test_input_size=(3, size, size), pool_size=(size // 32, size // 32),
                crop_pct=1.0, test_crop_pct=1.0)
