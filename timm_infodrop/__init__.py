"""timm-infodrop: a timm plugin for shape-biased CNNs (InfoDrop and Information Dropout)."""
from .layers import (
    DeferredDrop, InfoDrop, InfoDropConv2d, InformationDropout, InformationDropoutConv2d, aux_loss,
    info_drop, self_information, set_kl_to_gradient,
)

__version__ = '0.1.0'
