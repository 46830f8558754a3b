"""EfficientNet family with InfoDrop / Information Dropout: thin builders over timm's own models.

Each ``<arch>_infodrop`` / ``<arch>_infodropout`` is timm's ``<arch>`` equipped by
:mod:`timm_infodrop.surgery`: the same state-dict keys (plus Information Dropout's branches), the
same preprocessing, and every pretrained tag of ``<arch>`` (its weights load into it).
"""
from timm.models import generate_default_cfgs, register_model
from timm.models.efficientnet import EfficientNet

from ._builder import build_regularized, variant_cfgs

__all__ = []  # filled by register_model


def _create(arch: str, method: str, pretrained: bool, **kwargs) -> EfficientNet:
    return build_regularized(arch, method, pretrained, **kwargs)


# every tag of each architecture (its default the variants' default), then the zoo's own tags
default_cfgs = generate_default_cfgs({
    **variant_cfgs('efficientnet_b0'),
    **variant_cfgs('efficientnet_lite0'),
    **variant_cfgs('tf_efficientnet_lite0'),
})


@register_model
def efficientnet_b0_infodrop(pretrained: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-B0 with InfoDrop at the stem (the released placement)."""
    return _create('efficientnet_b0', 'infodrop', pretrained, **kwargs)


@register_model
def efficientnet_b0_infodropout(pretrained: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-B0 with Information Dropout at the stage entries that downsample."""
    return _create('efficientnet_b0', 'infodropout', pretrained, **kwargs)


@register_model
def efficientnet_lite0_infodrop(pretrained: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-Lite0 with InfoDrop at the stem (the released placement)."""
    return _create('efficientnet_lite0', 'infodrop', pretrained, **kwargs)


@register_model
def efficientnet_lite0_infodropout(pretrained: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-Lite0 with Information Dropout at the stage entries that downsample."""
    return _create('efficientnet_lite0', 'infodropout', pretrained, **kwargs)


@register_model
def tf_efficientnet_lite0_infodrop(pretrained: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-Lite0 (TensorFlow port: "same" padding, TF BatchNorm eps) with InfoDrop at the stem."""
    return _create('tf_efficientnet_lite0', 'infodrop', pretrained, **kwargs)


@register_model
def tf_efficientnet_lite0_infodropout(pretrained: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-Lite0 (TensorFlow port) with Information Dropout at the stage entries that downsample."""
    return _create('tf_efficientnet_lite0', 'infodropout', pretrained, **kwargs)
