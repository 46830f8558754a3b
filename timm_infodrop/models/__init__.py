"""Registered timm variants: ``<arch>_infodrop`` and ``<arch>_infodropout`` for every supported arch.

Importing this package (``import timm_infodrop`` does) adds them to timm's registry, each under the
name of timm's module for its family, so ``timm.list_models(module='resnet')`` lists them too. Each variant
has every pretrained tag of its architecture (the same weights and preprocessing; the architecture's default
tag is its default, so ``pretrained=True`` loads what it loads on the plain name) and the zoo's own tags.
"""
from . import convnext, efficientnet, mobilenetv3, regnet, resnet
from ._builder import METHODS, build_regularized

ARCHS = (
    'resnet18', 'resnet26', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
    'resnet18d', 'resnet26d', 'resnet34d', 'resnet50d', 'resnet101d', 'resnext50_32x4d', 'wide_resnet50_2',
    'convnext_atto', 'convnext_nano', 'convnext_tiny', 'efficientnet_b0', 'efficientnet_lite0', 'tf_efficientnet_lite0',
    'mobilenetv3_large_100', 'regnety_016',
)
