"""Build ``<arch>_infodrop`` / ``<arch>_infodropout``: timm's plain model, equipped by :mod:`timm_infodrop.surgery`.

Keyword arguments of the regulariser carry a method prefix so they cannot collide with timm's and
survive timm's ``config.json`` export (which drops every key ending in ``_drop_rate``):

* InfoDrop: ``infodrop_stages``, ``infodrop_temperature``, ``infodrop_rate`` (the paper's drop rate
  r), ``infodrop_radius``, ``infodrop_num_offsets``, ``infodrop_bandwidth``, ``infodrop_sampling``,
  ``infodrop_eval_mode``;
* Information Dropout: ``infodropout_stages``, ``infodropout_alpha_max``, ``infodropout_prior``,
  ``infodropout_beta``, ``infodropout_kl_to_gradient``; or, instead of ``infodropout_beta``, the paper's
  beta and the training-set size, ``infodropout_beta_paper`` with ``infodropout_num_train``
  (``beta = beta_paper / num_train``, :func:`timm_infodrop.layers.beta_from_paper`).

Everything else goes to timm's builder of the plain architecture.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

from torch import nn
import timm
from timm.models import (get_arch_pretrained_cfgs, get_pretrained_cfg, load_pretrained, resolve_pretrained_cfg,
                         split_model_name_tag)

from ..hub.errors import hub_errors
from .. import surgery as _surgery
from ..hub.naming import check_hub_id, plain_architecture, tagged_cfgs
from ..layers import beta_from_paper
from ..registry import METHODS as _METHODS

__all__ = ['METHODS', 'METHOD_PREFIXES', 'PAPER_BETA', 'build_regularized', 'derived_cfg', 'inherited_cfgs',
           'trained_cfg', 'plain_architecture', 'split_method_kwargs', 'variant_cfgs']

# method -> (surgery, {prefixed keyword: the surgery's keyword}): the registry's table (timm_infodrop.registry.METHODS)
# with each surgery function resolved
METHODS: Dict[str, Any] = {name: (getattr(_surgery, m.surgery), dict(m.keywords)) for name, m in _METHODS.items()}

# Information Dropout's weight as the paper writes it: beta_paper and N_train give beta = beta_paper / N_train
PAPER_BETA = ('infodropout_beta_paper', 'infodropout_num_train')

# every model keyword of a method starts with one of these
METHOD_PREFIXES = tuple(f'{method}_' for method in METHODS)

# fields of the plain architecture's default pretrained cfg that describe the model, not its weights
_ARCH_FIELDS = (
    'input_size', 'test_input_size', 'min_input_size', 'fixed_input_size', 'interpolation', 'crop_pct',
    'test_crop_pct', 'crop_mode', 'mean', 'std', 'num_classes', 'pool_size', 'test_pool_size',
    'first_conv', 'classifier', 'license',
)


def trained_cfg(pretrained_cfg: Dict[str, Any], input_size: Sequence[int]) -> Dict[str, Any]:
    """``pretrained_cfg`` for weights we trained at ``input_size`` (C, H, W): the architecture's fields
    without the provenance of its published weights (resnet18's ``tag`` ``a1_in1k``, its paper and urls:
    not these weights), and without its ``pool_size`` when that was for another input size."""
    cfg = {k: v for k, v in pretrained_cfg.items() if k in _ARCH_FIELDS or k in ('architecture', 'description')}
    if tuple(cfg.get('input_size') or ())[1:] != tuple(input_size)[1:]:
        cfg.pop('pool_size', None)
        cfg.pop('test_pool_size', None)
    return cfg


def _description(arch: str, method: str) -> str:
    return f'{arch} with {"InfoDrop" if method == "infodrop" else "Information Dropout"} (timm-infodrop)'


def derived_cfg(arch: str, method: str, **overrides: Any) -> Dict[str, Any]:
    """A ``default_cfgs`` entry for a tag of our own (the zoo's weights): the plain arch's preprocessing, input
    size, first conv, classifier and license, then ``overrides`` (the tag's Hub repo, classes and input)."""
    plain = get_pretrained_cfg(arch)
    if plain is None:
        raise ValueError(f'timm has no pretrained cfg for {arch!r}')
    cfg = {k: v for k, v in dataclasses.asdict(plain).items() if k in _ARCH_FIELDS and v is not None}
    cfg['description'] = _description(arch, method)
    cfg.update(overrides)
    return cfg


def inherited_cfgs(arch: str, method: str) -> Dict[str, Dict[str, Any]]:
    """``default_cfgs`` entries giving ``<arch>_<method>`` every pretrained tag of timm's ``arch``.

    Each ``<arch>_<method>.<tag>`` is ``<arch>.<tag>``'s cfg as timm registered it: the same weight source
    (``hf_hub_id`` already completed to ``timm/<arch>.<tag>``, since timm completes a bare ``'timm/'`` only
    with the name it registers, here the variant's; ``url``, ``file``), preprocessing, classes and license;
    only the description names the variant. The architecture's default tag is marked with ``*``, the
    registry's way (:func:`timm.models.generate_default_cfgs`) to make it the variant's default whatever
    tags follow, so ``pretrained=True`` on the variant loads what it loads on ``arch``.

    Raises:
        ValueError: timm has no pretrained cfg for ``arch``.
    """
    plain = get_arch_pretrained_cfgs(arch)
    if not plain:
        raise ValueError(f'timm has no pretrained cfg for {arch!r}')
    default = get_pretrained_cfg(arch).tag or ''
    variant = f'{arch}_{method}'
    cfgs = {}
    for name, cfg in plain.items():
        _, tag = split_model_name_tag(name)
        fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ('architecture', 'tag')}
        key = f'{variant}.{tag}*' if tag == default else f'{variant}.{tag}' if tag else variant
        cfgs[key] = dict(fields, description=_description(arch, method))
    return cfgs


def variant_cfgs(arch: str) -> Dict[str, Dict[str, Any]]:
    """Every ``default_cfgs`` entry of ``arch``'s variants, both methods: timm's tags of ``arch``
    (:func:`inherited_cfgs`, its default first), then the zoo's tags of each variant
    (:func:`~timm_infodrop.hub.naming.tagged_cfgs`: ``shapes64``, ``pacs64_sketch``, ...), extra tags."""
    cfgs = {}
    for method in METHODS:
        cfgs.update(inherited_cfgs(arch, method))
        cfgs.update({f'{arch}_{method}.{tag}': derived_cfg(arch, method, **fields)
                     for tag, fields in tagged_cfgs(f'{arch}_{method}').items()})
    return cfgs


def split_method_kwargs(method: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Pop the method's prefixed keywords from ``kwargs``; return them under the surgery's names.

    ``infodropout_beta_paper`` with ``infodropout_num_train`` become ``beta`` (their quotient).

    Raises:
        TypeError: for a prefixed keyword the method does not know (a typo would otherwise reach timm),
            one of the paper-beta pair without the other, or the pair with ``infodropout_beta``.
    """
    _, names = METHODS[method]
    known = set(names) | (set(PAPER_BETA) if method == 'infodropout' else set())
    unknown = [k for k in kwargs if k.startswith(METHOD_PREFIXES) and k not in known]
    if unknown:
        raise TypeError(f'unknown keyword(s) {unknown} for a *_{method} model; known: {sorted(known)}')
    derived = {}
    given = [k for k in PAPER_BETA if k in kwargs]
    if given:
        if len(given) < len(PAPER_BETA):
            raise TypeError(f'{given[0]} needs {" and ".join(k for k in PAPER_BETA if k not in given)}: '
                            'beta = infodropout_beta_paper / infodropout_num_train')
        if 'infodropout_beta' in kwargs:
            raise TypeError('give infodropout_beta (the per-sample weight) or infodropout_beta_paper with '
                            'infodropout_num_train, not both')
        derived['beta'] = beta_from_paper(kwargs.pop(PAPER_BETA[0]), kwargs.pop(PAPER_BETA[1]))
    return {**{names[k]: kwargs.pop(k) for k in list(kwargs) if k in names}, **derived}


def _features_only(kwargs: Dict[str, Any]) -> bool:
    return bool(kwargs.get('features_only', False))


def build_regularized(
        arch: str,
        method: str,
        pretrained: bool = False,
        filter_fn: Optional[Callable] = None,
        **kwargs: Any,
) -> nn.Module:
    """Build timm's ``arch``, equip it with ``method`` and load this variant's pretrained weights.

    Args:
        arch: the plain timm architecture, e.g. ``'resnet18'``.
        method: ``'infodrop'`` or ``'infodropout'``; the variant is ``f'{arch}_{method}'``.
        pretrained: load the weights named by the variant's pretrained cfg (or the
            ``pretrained_cfg``/``pretrained_cfg_overlay`` given): by default the architecture's default tag's
            (``resnet50_infodrop`` loads ``timm/resnet50.a1_in1k`` as ``resnet50`` does), any tag of the
            architecture, a zoo tag of ours, or a local file.
        filter_fn: the family's checkpoint filter (as timm's builder of ``arch`` uses).
        kwargs: the method's prefixed keywords, then anything timm's ``create_model`` takes.

    Weights are loaded by timm's ``load_pretrained`` after the surgery, with the family's checkpoint filter
    and strictly (``pretrained_strict``, True unless given), so a checkpoint of the variant restores its
    Information Dropout branches too; a plain checkpoint has none of them, and they keep their
    initialisation while every other key loads strictly. For another ``num_classes`` than the weights',
    timm drops their classifier and the new one keeps its initialisation. With ``features_only`` timm's own
    builder loads the weights before the surgery, without the classifier and so non-strictly, as it loads
    them into the plain architecture (Information Dropout's branches then keep their initialisation).
    """
    surgery, _ = METHODS[method]
    method_kwargs = split_method_kwargs(method, kwargs)
    variant = f'{arch}_{method}'
    cfg = resolve_pretrained_cfg(
        variant, pretrained_cfg=kwargs.pop('pretrained_cfg', None),
        pretrained_cfg_overlay=kwargs.pop('pretrained_cfg_overlay', None))
    if pretrained:  # a tag's Hub id carries $TIMM_INFODROP_HUB_ORG unchecked: check it before any download
        check_hub_id(getattr(cfg, 'hf_hub_id', None))
    if _features_only(kwargs):
        if pretrained and method == 'infodropout':
            kwargs.setdefault('pretrained_strict', False)
        model = timm.create_model(arch, pretrained=pretrained, pretrained_cfg=cfg, **kwargs)
        return surgery(model, **method_kwargs)
    model = timm.create_model(arch, pretrained=False, pretrained_cfg=cfg, **kwargs)
    surgery(model, **method_kwargs)
    if pretrained:
        # as timm's build_model_with_cfg calls it; its cache_dir only where timm's create_model passed one
        cache_dir = {'cache_dir': kwargs['cache_dir']} if kwargs.get('cache_dir') is not None else {}
        with hub_errors(model.pretrained_cfg.get('hf_hub_id')):
            load_pretrained(
                model, pretrained_cfg=model.pretrained_cfg, num_classes=model.num_classes,
                in_chans=kwargs.get('in_chans', 3), filter_fn=filter_fn, strict=kwargs.get('pretrained_strict', True),
                **cache_dir)
    return model
