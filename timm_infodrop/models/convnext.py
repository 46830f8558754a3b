"""ConvNeXt family with InfoDrop / Information Dropout: thin builders over timm's own models.

Each ``<arch>_infodrop`` / ``<arch>_infodropout`` is timm's ``<arch>`` equipped by
:mod:`timm_infodrop.surgery`: the same state-dict keys (plus Information Dropout's branches), the
same preprocessing, and every pretrained tag of ``<arch>`` (its weights load into it).
"""
from timm.models import generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt, checkpoint_filter_fn

from ._builder import build_regularized, variant_cfgs

__all__ = []  # filled by register_model


def _create(arch: str, method: str, pretrained: bool, **kwargs) -> ConvNeXt:
    return build_regularized(arch, method, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


# every tag of each architecture (its default the variants' default), then the zoo's own tags
default_cfgs = generate_default_cfgs({
    **variant_cfgs('convnext_atto'),
    **variant_cfgs('convnext_nano'),
    **variant_cfgs('convnext_tiny'),
})


@register_model
def convnext_atto_infodrop(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt-Atto with InfoDrop at the stem (the released placement)."""
    return _create('convnext_atto', 'infodrop', pretrained, **kwargs)


@register_model
def convnext_atto_infodropout(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt-Atto with Information Dropout at the stage entries that downsample."""
    return _create('convnext_atto', 'infodropout', pretrained, **kwargs)


@register_model
def convnext_nano_infodrop(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt-Nano with InfoDrop at the stem (the released placement)."""
    return _create('convnext_nano', 'infodrop', pretrained, **kwargs)


@register_model
def convnext_nano_infodropout(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt-Nano with Information Dropout at the stage entries that downsample."""
    return _create('convnext_nano', 'infodropout', pretrained, **kwargs)


@register_model
def convnext_tiny_infodrop(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt-Tiny with InfoDrop at the stem (the released placement)."""
    return _create('convnext_tiny', 'infodrop', pretrained, **kwargs)


@register_model
def convnext_tiny_infodropout(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt-Tiny with Information Dropout at the stage entries that downsample."""
    return _create('convnext_tiny', 'infodropout', pretrained, **kwargs)
