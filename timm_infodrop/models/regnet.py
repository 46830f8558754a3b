"""RegNet family with InfoDrop / Information Dropout: thin builders over timm's own models.

Each ``<arch>_infodrop`` / ``<arch>_infodropout`` is timm's ``<arch>`` equipped by
:mod:`timm_infodrop.surgery`: the same state-dict keys (plus Information Dropout's branches), the
same preprocessing, and every pretrained tag of ``<arch>`` (its weights load into it).
"""
from timm.models import generate_default_cfgs, register_model
from timm.models.regnet import RegNet, _filter_fn as checkpoint_filter_fn

from ._builder import build_regularized, variant_cfgs

__all__ = []  # filled by register_model


def _create(arch: str, method: str, pretrained: bool, **kwargs) -> RegNet:
    return build_regularized(arch, method, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


# every tag of each architecture (its default the variants' default), then the zoo's own tags
default_cfgs = generate_default_cfgs({
    **variant_cfgs('regnety_016'),
})


@register_model
def regnety_016_infodrop(pretrained: bool = False, **kwargs) -> RegNet:
    """RegNetY-1.6GF with InfoDrop at the stem (the released placement)."""
    return _create('regnety_016', 'infodrop', pretrained, **kwargs)


@register_model
def regnety_016_infodropout(pretrained: bool = False, **kwargs) -> RegNet:
    """RegNetY-1.6GF with Information Dropout at the stage entries that downsample."""
    return _create('regnety_016', 'infodropout', pretrained, **kwargs)
