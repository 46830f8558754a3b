"""Names on the Hub: the organisation, the repos of every benchmark row, and the ``default_cfgs`` fields of the tags.

Every row of a benchmark (:data:`timm_infodrop.registry.BENCHMARKS`) is published twice per cell
(``hub_configs/<repo>/`` holds each one's config.json and card), named from the benchmark's tag for the cell
(:func:`~timm_infodrop.registry.cell_tag`: ``shapes64``, ``pacs64_sketch``):

* the *training* variant, ``<org>/<model>.<tag><extra>`` (e.g. ``resnet18_infodrop.shapes64``): the
  architecture as trained, loadable by name once the plugin is installed when the tag is registered;
* the *deploy* variant, ``<org>/<plain arch>.<tag>_<method><extra>_deploy`` (``method`` left out for the plain
  baseline): the converter's plain timm architecture, loadable by vanilla timm.

``extra`` is the row's name beyond its model's (``_early`` of ``resnet18_infodrop_early``), so every row has
its own repo.

The organisation is ``$TIMM_INFODROP_HUB_ORG`` (default ``timm-infodrop``), read when the models register
and checked where a Hub name is used (a repo id, pretrained weights of a tag, publishing), never at import:
an invalid value raises :class:`~timm_infodrop.errors.ConfigError` naming it, and ``import timm_infodrop``
still succeeds.

This module is the bottom floor of :mod:`timm_infodrop.hub`: it imports nothing from the package but
:mod:`timm_infodrop.errors` and the data of :mod:`timm_infodrop.registry`, so :mod:`timm_infodrop.models` can
name its tags with it.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, Optional

from ..errors import ConfigError
from ..registry import BENCHMARKS, METHODS, BenchmarkSpec, cell_tag

__all__ = ['HUB_ORG_ENV', 'DEFAULT_HUB_ORG', 'HubRepo', 'hub_org', 'check_hub_id', 'plain_architecture', 'repo_for',
           'weights_cfg', 'tagged_cfgs']

HUB_ORG_ENV = 'TIMM_INFODROP_HUB_ORG'
DEFAULT_HUB_ORG = 'timm-infodrop'
_ORG_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$')


def plain_architecture(name: str) -> str:
    """``'resnet18_infodrop'`` -> ``'resnet18'`` (a tag after ``.`` is dropped); plain names pass through."""
    name = name.split('.', 1)[0]
    for method in METHODS:
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
    """One published repository of a benchmark row.

    name: the repo's name under the organisation, e.g. ``resnet18_infodrop.shapes64``;
    row: the benchmark row it was trained as; cell: the benchmark's cell (e.g. the target domain);
    model: the timm model the row trains; deploy: True for the converter's plain architecture (loads
    without the plugin).
    """
    name: str
    row: str
    cell: str
    model: str
    deploy: bool

    @property
    def repo_id(self) -> str:
        return f'{hub_org()}/{self.name}'

    @property
    def architecture(self) -> str:
        """The timm architecture of its config.json: the model as trained, or its plain architecture."""
        return plain_architecture(self.model) if self.deploy else self.model

    @property
    def needs_plugin(self) -> bool:
        return self.architecture != plain_architecture(self.architecture)

    @property
    def method(self) -> str:
        """The regulariser of the trained model (``'infodrop'``, ``'infodropout'``), ``''`` for a plain one."""
        return self.model[len(plain_architecture(self.model)) + 1:]


def repo_for(spec: BenchmarkSpec, row: str, model: str, cell: str, deploy: bool) -> HubRepo:
    """The repo of benchmark ``spec``'s ``row`` (trained as the timm model ``model``) for ``cell``: training
    ``resnet18_infodrop.pacs64_sketch_early``, deploy ``resnet18.pacs64_sketch_infodrop_early_deploy``."""
    if not row.startswith(model):
        raise ValueError(f'row {row!r} does not extend its model {model!r}')
    extra, tag = row[len(model):], cell_tag(spec, cell)
    if not deploy:
        return HubRepo(f'{model}.{tag}{extra}', row, cell, model, deploy=False)
    plain = plain_architecture(model)
    return HubRepo(f'{plain}.{tag}{model[len(plain):]}{extra}_deploy', row, cell, model, deploy=True)


def weights_cfg(spec: BenchmarkSpec, model: str, cell: str) -> Dict:
    """``default_cfgs`` fields of ``<model>.<tag>``: its Hub repo, the benchmark's classes and input."""
    if cell not in spec.cells:
        raise ValueError(f'unknown {spec.name} cell {cell!r}; {spec.name} has {list(spec.cells)}')
    # the org unchecked: this runs when the models register (import timm_infodrop); check_hub_id checks it
    hf_hub_id = f'{hub_org(check=False)}/{repo_for(spec, model, model, cell, deploy=False).name}'
    sources = ', '.join(c for c in spec.cells if c != cell)
    return dict(hf_hub_id=hf_hub_id, num_classes=len(spec.classes), label_names=tuple(sorted(spec.classes)),
                **_input_cfg(spec.image_size), description=spec.description.format(model=model, cell=cell,
                                                                                   sources=sources))


def tagged_cfgs(model: str) -> Dict[str, Dict]:
    """``{tag: default_cfgs fields}`` of every benchmark that registers ``model`` (``registered``), for each of
    its ``registered_cells``: what ``models/`` adds to the variant's ``default_cfgs``."""
    return {cell_tag(spec, cell): weights_cfg(spec, model, cell) for spec in BENCHMARKS.values()
            if model in spec.registered for cell in spec.registered_cells}


def _input_cfg(size: int) -> Dict:
    """The input fields of a tag trained and tested at ``size`` px, centre-cropped whole (crop_pct 1)."""
    return dict(input_size=(3, size, size), test_input_size=(3, size, size), pool_size=(size // 32, size // 32),
                crop_pct=1.0, test_crop_pct=1.0)
