"""ResNet family with InfoDrop / Information Dropout: thin builders over timm's own models.

Each ``<arch>_infodrop`` / ``<arch>_infodropout`` is timm's ``<arch>`` equipped by
:mod:`timm_infodrop.surgery`: the same state-dict keys (plus Information Dropout's branches), the
same preprocessing, and every pretrained tag of ``<arch>`` (its weights load into it).
"""
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import ResNet

from ._builder import build_regularized, variant_cfgs

__all__ = []  # filled by register_model


def _create(arch: str, method: str, pretrained: bool, **kwargs) -> ResNet:
    return build_regularized(arch, method, pretrained, **kwargs)


# every tag of each architecture (its default the variants' default), then the zoo's own tags
default_cfgs = generate_default_cfgs({
    **variant_cfgs('resnet18'),
    **variant_cfgs('resnet26'),
    **variant_cfgs('resnet34'),
    **variant_cfgs('resnet50'),
    **variant_cfgs('resnet101'),
    **variant_cfgs('resnet152'),
    **variant_cfgs('resnet18d'),
    **variant_cfgs('resnet26d'),
    **variant_cfgs('resnet34d'),
    **variant_cfgs('resnet50d'),
    **variant_cfgs('resnet101d'),
    **variant_cfgs('resnext50_32x4d'),
    **variant_cfgs('wide_resnet50_2'),
})


@register_model
def resnet18_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with InfoDrop at the stem (the released placement)."""
    return _create('resnet18', 'infodrop', pretrained, **kwargs)


@register_model
def resnet18_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with Information Dropout at the stage entries that downsample."""
    return _create('resnet18', 'infodropout', pretrained, **kwargs)


@register_model
def resnet26_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-26 with InfoDrop at the stem (the released placement)."""
    return _create('resnet26', 'infodrop', pretrained, **kwargs)


@register_model
def resnet26_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-26 with Information Dropout at the stage entries that downsample."""
    return _create('resnet26', 'infodropout', pretrained, **kwargs)


@register_model
def resnet34_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34 with InfoDrop at the stem (the released placement)."""
    return _create('resnet34', 'infodrop', pretrained, **kwargs)


@register_model
def resnet34_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34 with Information Dropout at the stage entries that downsample."""
    return _create('resnet34', 'infodropout', pretrained, **kwargs)


@register_model
def resnet50_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 with InfoDrop at the stem (the released placement)."""
    return _create('resnet50', 'infodrop', pretrained, **kwargs)


@register_model
def resnet50_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 with Information Dropout at the stage entries that downsample."""
    return _create('resnet50', 'infodropout', pretrained, **kwargs)


@register_model
def resnet101_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-101 with InfoDrop at the stem (the released placement)."""
    return _create('resnet101', 'infodrop', pretrained, **kwargs)


@register_model
def resnet101_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-101 with Information Dropout at the stage entries that downsample."""
    return _create('resnet101', 'infodropout', pretrained, **kwargs)


@register_model
def resnet152_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-152 with InfoDrop at the stem (the released placement)."""
    return _create('resnet152', 'infodrop', pretrained, **kwargs)


@register_model
def resnet152_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-152 with Information Dropout at the stage entries that downsample."""
    return _create('resnet152', 'infodropout', pretrained, **kwargs)


@register_model
def resnet18d_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18-D with InfoDrop at the stem (the released placement)."""
    return _create('resnet18d', 'infodrop', pretrained, **kwargs)


@register_model
def resnet18d_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18-D with Information Dropout at the stage entries that downsample."""
    return _create('resnet18d', 'infodropout', pretrained, **kwargs)


@register_model
def resnet26d_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-26-D with InfoDrop at the stem (the released placement)."""
    return _create('resnet26d', 'infodrop', pretrained, **kwargs)


@register_model
def resnet26d_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-26-D with Information Dropout at the stage entries that downsample."""
    return _create('resnet26d', 'infodropout', pretrained, **kwargs)


@register_model
def resnet34d_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34-D with InfoDrop at the stem (the released placement)."""
    return _create('resnet34d', 'infodrop', pretrained, **kwargs)


@register_model
def resnet34d_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-34-D with Information Dropout at the stage entries that downsample."""
    return _create('resnet34d', 'infodropout', pretrained, **kwargs)


@register_model
def resnet50d_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50-D with InfoDrop at the stem (the released placement)."""
    return _create('resnet50d', 'infodrop', pretrained, **kwargs)


@register_model
def resnet50d_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50-D with Information Dropout at the stage entries that downsample."""
    return _create('resnet50d', 'infodropout', pretrained, **kwargs)


@register_model
def resnet101d_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-101-D with InfoDrop at the stem (the released placement)."""
    return _create('resnet101d', 'infodrop', pretrained, **kwargs)


@register_model
def resnet101d_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-101-D with Information Dropout at the stage entries that downsample."""
    return _create('resnet101d', 'infodropout', pretrained, **kwargs)


@register_model
def resnext50_32x4d_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d with InfoDrop at the stem (the released placement)."""
    return _create('resnext50_32x4d', 'infodrop', pretrained, **kwargs)


@register_model
def resnext50_32x4d_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d with Information Dropout at the stage entries that downsample."""
    return _create('resnext50_32x4d', 'infodropout', pretrained, **kwargs)


@register_model
def wide_resnet50_2_infodrop(pretrained: bool = False, **kwargs) -> ResNet:
    """Wide ResNet-50-2 with InfoDrop at the stem (the released placement)."""
    return _create('wide_resnet50_2', 'infodrop', pretrained, **kwargs)


@register_model
def wide_resnet50_2_infodropout(pretrained: bool = False, **kwargs) -> ResNet:
    """Wide ResNet-50-2 with Information Dropout at the stage entries that downsample."""
    return _create('wide_resnet50_2', 'infodropout', pretrained, **kwargs)
