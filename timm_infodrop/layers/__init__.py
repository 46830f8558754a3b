"""Training-time layers that push a CNN toward shape: InfoDrop and Information Dropout."""
from timm.layers import register_notrace_module

from .info_drop import (
    EVAL_MODES, SAMPLING_MODES, InfoDrop, apply_information, drop_distribution, finite_check, info_drop,
    keep_probability, sample_info_drop_mask, self_information,
)
from .information_dropout import (
    ALPHA_FLOOR, PRIORS, InformationDropout, aux_loss, beta_from_paper, information_dropout, information_dropout_kl,
    set_kl_to_gradient,
)
from .conv import DeferredDrop, InfoDropConv2d, InformationDropoutConv2d

# random masks, Python-side offsets and cross-module state: FX treats these as leaves
for _module in (InfoDrop, InformationDropout, InfoDropConv2d, InformationDropoutConv2d, DeferredDrop):
    register_notrace_module(_module)
del _module
