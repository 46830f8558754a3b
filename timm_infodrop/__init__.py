"""timm-infodrop: a timm plugin for shape-biased CNNs (InfoDrop and Information Dropout).

``import timm_infodrop`` registers ``<arch>_infodrop`` / ``<arch>_infodropout`` with timm.
"""
from .layers import (
    DeferredDrop, InfoDrop, InfoDropConv2d, InformationDropout, InformationDropoutConv2d, aux_loss,
    info_drop, self_information, set_kl_to_gradient,
)
from .surgery import add_info_drop, add_information_dropout, remove_dropout
from . import models

__version__ = '0.1.0'
