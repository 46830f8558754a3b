"""ResNet family with InfoDrop / Information Dropout: thin builders over timm's own models.

Each ``<arch>_infodrop`` / ``<arch>_infodropout`` is timm's ``<arch>`` equipped by
:mod:`timm_infodrop.surgery`: the same state-dict keys (plus Information Dropout's branches), the
same preprocessing, and plain ``<arch>`` weights load into it.
"""
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import ResNet

from ..hub.naming import tagged_cfgs
from ._builder import build_regularized, derived_cfg, untagged_default

__all__ = []  # filled by register_model


def _create(arch: str, method: str, pretrained: bool, **kwargs) -> ResNet:
    return build_regularized(arch, method, pretrained, **kwargs)


default_cfgs = untagged_default(generate_default_cfgs({
    'resnet18_infodrop': derived_cfg('resnet18', 'infodrop'),
    'resnet18_infodropout': derived_cfg('resnet18', 'infodropout'),
    # the zoo's weights: a tag per benchmark that registers the variant (timm_infodrop.registry)
    **{f'resnet18_{method}.{tag}': derived_cfg('resnet18', method, **cfg)
       for method in ('infodrop', 'infodropout') for tag, cfg in tagged_cfgs(f'resnet18_{method}').items()},
    'resnet26_infodrop': derived_cfg('resnet26', 'infodrop'),
    'resnet26_infodropout': derived_cfg('resnet26', 'infodropout'),
    'resnet34_infodrop': derived_cfg('resnet34', 'infodrop'),
    'resnet34_infodropout': derived_cfg('resnet34', 'infodropout'),
    'resnet50_infodrop': derived_cfg('resnet50', 'infodrop'),
    'resnet50_infodropout': derived_cfg('resnet50', 'infodropout'),
    'resnet101_infodrop': derived_cfg('resnet101', 'infodrop'),
    'resnet101_infodropout': derived_cfg('resnet101', 'infodropout'),
    'resnet152_infodrop': derived_cfg('resnet152', 'infodrop'),
    'resnet152_infodropout': derived_cfg('resnet152', 'infodropout'),
    'resnet18d_infodrop': derived_cfg('resnet18d', 'infodrop'),
    'resnet18d_infodropout': derived_cfg('resnet18d', 'infodropout'),
    'resnet26d_infodrop': derived_cfg('resnet26d', 'infodrop'),
    'resnet26d_infodropout': derived_cfg('resnet26d', 'infodropout'),
    'resnet34d_infodrop': derived_cfg('resnet34d', 'infodrop'),
    'resnet34d_infodropout': derived_cfg('resnet34d', 'infodropout'),
    'resnet50d_infodrop': derived_cfg('resnet50d', 'infodrop'),
    'resnet50d_infodropout': derived_cfg('resnet50d', 'infodropout'),
    'resnet101d_infodrop': derived_cfg('resnet101d', 'infodrop'),
    'resnet101d_infodropout': derived_cfg('resnet101d', 'infodropout'),
    'resnext50_32x4d_infodrop': derived_cfg('resnext50_32x4d', 'infodrop'),
    'resnext50_32x4d_infodropout': derived_cfg('resnext50_32x4d', 'infodropout'),
    'wide_resnet50_2_infodrop': derived_cfg('wide_resnet50_2', 'infodrop'),
    'wide_resnet50_2_infodropout': derived_cfg('wide_resnet50_2', 'infodropout'),
}))


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
