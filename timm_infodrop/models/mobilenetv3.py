"""MobileNetV3 family with InfoDrop / Information Dropout: thin builders over timm's own models.

Each ``<arch>_infodrop`` / ``<arch>_infodropout`` is timm's ``<arch>`` equipped by
:mod:`timm_infodrop.surgery`: the same state-dict keys (plus Information Dropout's branches), the
same preprocessing, and every pretrained tag of ``<arch>`` (its weights load into it).
"""
from timm.models import generate_default_cfgs, register_model
from timm.models.mobilenetv3 import MobileNetV3

from ._builder import build_regularized, variant_cfgs

__all__ = []  # filled by register_model


def _create(arch: str, method: str, pretrained: bool, **kwargs) -> MobileNetV3:
    return build_regularized(arch, method, pretrained, **kwargs)


# every tag of each architecture (its default the variants' default), then the zoo's own tags
default_cfgs = generate_default_cfgs({
    **variant_cfgs('mobilenetv3_large_100'),
})


@register_model
def mobilenetv3_large_100_infodrop(pretrained: bool = False, **kwargs) -> MobileNetV3:
    """MobileNet-V3 Large 1.0 with InfoDrop at the stem (the released placement)."""
    return _create('mobilenetv3_large_100', 'infodrop', pretrained, **kwargs)


@register_model
def mobilenetv3_large_100_infodropout(pretrained: bool = False, **kwargs) -> MobileNetV3:
    """MobileNet-V3 Large 1.0 with Information Dropout at the stage entries that downsample."""
    return _create('mobilenetv3_large_100', 'infodropout', pretrained, **kwargs)
