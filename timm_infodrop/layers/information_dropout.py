"""Information Dropout (Achille & Soatto, TPAMI 2018).

Learned, input-dependent multiplicative log-normal noise: a branch with the geometry of the conv it
accompanies predicts ``alpha(x) = 0.001 + alpha_max * sigmoid(conv_alpha(x))`` and the layer
outputs ``z = f(x) * exp(alpha(x) * eps)``, ``eps ~ N(0, 1)``, where ``f(x) = act(BN(conv(x)))`` is
the main branch. An information-bottleneck penalty, the KL divergence of the noisy unit from a prior,
is added to the loss:

* ReLU units, log-uniform prior: ``KL = -log(alpha / (alpha_max + 0.001))`` (0 at maximal noise);
* softplus units, log-normal prior with learned ``mu`` and ``sigma``:
  ``KL = log(sigma / alpha) + (alpha^2 + (log f - mu)^2) / (2 sigma^2) - 1/2``, f clamped >= 1e-4.

Eval uses no noise (``z = f``, the median of the log-normal). Non-finite values in ``f`` or ``x_in``
propagate to the output, as through any elementwise layer (timm_infodrop's trainer stops at the first
non-finite loss); InfoDrop raises instead, since its mask would be undefined.

How the KL reaches the gradient
-------------------------------
Every layer keeps its last KL (``.kl``: sum over units, mean over the batch). A custom loop adds
:func:`aux_loss` (``sum of beta * kl``) to its loss. A loop that knows nothing of the KL (timm's
``train.py``) still optimises it: with ``kl_to_gradient=True`` (the default) the layer's backward
adds ``beta * d kl / d theta`` to the gradients, exactly as if ``beta * kl`` had been added to the
loss. Use one or the other, never both (``set_kl_to_gradient(model, False)`` before adding
``aux_loss``).

* bf16 autocast: exact; the KL is computed in float32.
* fp16 with a GradScaler, gradient accumulation, or any loss scaling: the injected gradient is not
  multiplied by the scale, so the effective weight becomes ``beta / scale``. Switch the mechanism off
  there and add ``aux_loss(model)`` to the loss before scaling (timm_infodrop's trainer does). A layer
  that injects the gradient under float16 autocast warns once (:data:`FP16_KL_WARNING`).

``beta`` is the weight of the per-sample KL next to a batch-mean loss. The paper writes the loss as
``CE + beta_paper * KL / N_train``, so ``beta = beta_paper / N_train`` (CIFAR-10: 3.0 / 50,000 = 6e-5,
the default here); :func:`beta_from_paper` converts.

Loading plain-architecture weights
----------------------------------
A checkpoint of the plain architecture has none of this layer's keys (``alpha_conv.*``,
``prior_*``). When *all* of them are absent, loading keeps the layer's initialisation instead of
failing a strict load, so plain timm weights start training (``--initial-checkpoint``,
``pretrained_cfg_overlay``). A checkpoint that has some of them but not all still fails.
"""
from typing import Optional, Tuple, Union

import logging
import math
import warnings

import torch
from torch import nn

from ..errors import ConfigError
from ._transient import Transient
from ._checks import _check_feature_map

__all__ = [
    'InformationDropout', 'information_dropout', 'PRIORS', 'ALPHA_FLOOR', 'information_dropout_kl', 'aux_loss',
    'set_kl_to_gradient', 'beta_from_paper', 'FP16_KL_WARNING',
]

PRIORS = ('log-uniform', 'log-normal')
ALPHA_FLOOR = 0.001
_F_FLOOR = 1e-4

_IntPair = Union[int, Tuple[int, int]]

_logger = logging.getLogger(__name__)

FP16_KL_WARNING = (
    'InformationDropout: kl_to_gradient=True under float16 autocast: a GradScaler scales the loss\'s gradients '
    '(by 65,536 at start) but not the injected KL gradient, so the KL weight beta is divided by the scale and '
    'the bottleneck is in effect off. Fix: train with bfloat16 (timm train.py --amp-dtype bfloat16), or '
    'set_kl_to_gradient(model, False) and add aux_loss(model) to the loss before scaling')
_fp16_warned = False


def _warn_if_fp16(device_type: str) -> None:
    """Warn once per process when the injected KL gradient runs under float16 autocast."""
    global _fp16_warned
    if (not _fp16_warned and torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == torch.float16):
        _fp16_warned = True
        warnings.warn(FP16_KL_WARNING, RuntimeWarning, stacklevel=4)


def beta_from_paper(paper_beta: float, num_train: int) -> float:
    """Per-sample KL weight for a paper value ``beta`` and a training set of ``num_train`` samples."""
    if num_train < 1:
        raise ConfigError(f'num_train must be >= 1, got {num_train}')
    return paper_beta / num_train


def information_dropout_kl(
        alpha: torch.Tensor,
        prior: str,
        alpha_max: float,
        f: Optional[torch.Tensor] = None,
        mu: Optional[torch.Tensor] = None,
        sigma: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """KL divergence per unit, same shape as ``alpha``.

    ``'log-uniform'`` needs only ``alpha``; ``'log-normal'`` also needs the activations ``f`` and
    the prior's ``mu`` and ``sigma`` (scalars or broadcastable tensors).
    """
    if prior == 'log-uniform':
        return math.log(alpha_max + ALPHA_FLOOR) - torch.log(alpha)
    if prior == 'log-normal':
        if f is None or mu is None or sigma is None:
            raise ValueError("the 'log-normal' prior needs f, mu and sigma")
        log_f = torch.log(f.clamp_min(_F_FLOOR))
        return (torch.log(sigma) - torch.log(alpha)
                + (alpha.square() + (log_f - mu).square()) / (2 * sigma.square()) - 0.5)
    raise ConfigError(f'prior must be one of {PRIORS}, got {prior!r}')


class _ScaleWithAuxGradient(torch.autograd.Function):
    """``z = f * noise``; backward also sends ``weight`` as the gradient of ``aux`` (a scalar).

    The effect on every parameter is that of adding ``weight * aux`` to the loss, without the
    training loop knowing of it.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor, noise: torch.Tensor, aux: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.save_for_backward(f, noise)
        ctx.weight = weight
        return f * noise

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor):
        f, noise = ctx.saved_tensors
        grad_f = grad_z * noise if ctx.needs_input_grad[0] else None
        grad_noise = grad_z * f if ctx.needs_input_grad[1] else None
        grad_aux = None
        if ctx.needs_input_grad[2]:
            grad_aux = torch.full((), ctx.weight, dtype=torch.float32, device=grad_z.device)
        return grad_f, grad_noise, grad_aux, None


def _check_alpha(alpha: torch.Tensor, f: torch.Tensor) -> None:
    if alpha.shape != f.shape:
        raise ValueError(
            f'alpha has shape {tuple(alpha.shape)} but the activations have shape {tuple(f.shape)}: '
            f'the alpha branch must have the geometry of the accompanied conv')


def information_dropout(
        f: torch.Tensor,
        alpha: torch.Tensor,
        training: bool = False,
        kl: Optional[torch.Tensor] = None,
        beta: float = 0.0,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Information Dropout, functional form: ``z = f * exp(alpha * eps)``, ``eps ~ N(0, 1)`` per unit.

    What :class:`InformationDropout` computes from the noise std its alpha branch predicts (the module
    calls this function); as ``drop_path`` is to ``DropPath``.

    Args:
        f: the activations, any shape.
        alpha: the noise std per unit, ``f``'s shape (float32 from the module).
        training: draw the noise; otherwise return ``f`` itself (the median of the log-normal).
        kl: the layer's KL (a scalar with its graph). With ``beta > 0`` and grad enabled, backward also
            adds ``beta * d kl / d theta`` to the gradients, as if ``beta * kl`` had been added to the loss
            (the module's ``kl_to_gradient``); None: no such gradient.
        beta: the KL's weight.
        generator: draws ``eps`` (default: torch's global generator, as the module).

    Returns:
        ``z`` of ``f``'s shape and dtype. ``eps`` is drawn without gradient; ``z`` has gradients with
        respect to ``f`` and ``alpha``.
    """
    if not training:
        return f
    _check_alpha(alpha, f)
    with torch.no_grad():
        eps = torch.randn_like(alpha) if generator is None else torch.empty_like(alpha).normal_(generator=generator)
    noise = torch.exp(alpha * eps).to(f.dtype)
    if kl is not None and beta > 0 and torch.is_grad_enabled():
        return _ScaleWithAuxGradient.apply(f, noise, kl, beta)
    return f * noise


class InformationDropout(nn.Module):
    """Information Dropout for the output of a conv, given that conv's input.

    ``forward(x_in, f)``: ``x_in`` is the input of the accompanied conv (B, C_in, H, W), ``f`` its
    activated output (B, C_out, Ho, Wo). The alpha branch is a conv with the same geometry (with
    bias, no BN); its output is per unit.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: the geometry of the
            accompanied conv.
        alpha_max: maximal noise std of the log-normal (0.7 CIFAR, 1.0 Cluttered MNIST).
        prior: ``'log-uniform'`` for ReLU activations, ``'log-normal'`` for Softplus ones (the authors' pairing)
            (adds learned ``prior_mu`` and ``prior_log_sigma``, sigma = exp(prior_log_sigma)).
        beta: weight of the per-sample KL (see the module docstring).
        kl_to_gradient: let backward add ``beta * dKL`` to the gradients automatically.
    """
    __jit_unused_properties__ = ['kl']

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size: _IntPair,
            stride: _IntPair = 1,
            padding: _IntPair = 0,
            dilation: _IntPair = 1,
            groups: int = 1,
            alpha_max: float = 0.7,
            prior: str = 'log-uniform',
            beta: float = 6e-5,
            kl_to_gradient: bool = True,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if prior not in PRIORS:
            raise ConfigError(f'prior must be one of {PRIORS}, got {prior!r}')
        if not (alpha_max > 0 and math.isfinite(alpha_max)):
            raise ConfigError(f'alpha_max must be a finite number > 0, got {alpha_max!r}')
        if not (beta >= 0 and math.isfinite(beta)):
            raise ConfigError(f'beta must be a finite number >= 0, got {beta!r}')
        factory = dict(device=device, dtype=dtype)
        self.alpha_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=True, **factory)
        if prior == 'log-normal':
            self.prior_mu = nn.Parameter(torch.zeros((), **factory))
            self.prior_log_sigma = nn.Parameter(torch.zeros((), **factory))
        else:
            self.register_parameter('prior_mu', None)
            self.register_parameter('prior_log_sigma', None)
        self.alpha_max = float(alpha_max)
        self.prior = prior
        self.beta = float(beta)
        self.kl_to_gradient = kl_to_gradient
        self.enabled = True
        self._kl = Transient()  # the last KL with its graph: never copied (deepcopy, EMA) nor scripted
        self._register_load_state_dict_pre_hook(self._keep_initialisation_if_absent)

    def _keep_initialisation_if_absent(
            self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        own = {prefix + name: tensor for name, tensor in self.state_dict().items()}
        if any(key in state_dict for key in own):
            return
        _logger.info('%s not in the checkpoint (plain-architecture weights): keeping their initialisation',
                     prefix + '*')
        # load_state_dict works on its own copy of the dict: adding keys here leaves the caller's intact
        state_dict.update(own)

    @property
    def kl(self) -> Optional[torch.Tensor]:
        """The last training forward's KL (sum over units, mean over the batch), with its graph; None
        before the first one and in a copy."""
        return self._kl.value

    @kl.setter
    def kl(self, value: Optional[torch.Tensor]) -> None:
        self._kl.value = value

    def is_active(self) -> bool:
        """Noise is applied in training only (eval returns the median, ``f``)."""
        return self.enabled and self.training

    def alpha(self, x_in: torch.Tensor) -> torch.Tensor:
        """Noise std per unit, (B, C_out, Ho, Wo), float32, in ``[0.001, 0.001 + alpha_max]``."""
        return ALPHA_FLOOR + self.alpha_max * torch.sigmoid(self.alpha_conv(x_in).float())

    def kl_divergence(self, alpha: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """KL per unit (float32) for noise std ``alpha`` on activations ``f``."""
        sigma = mu = None
        if self.prior == 'log-normal':
            mu, sigma = self.prior_mu.float(), self.prior_log_sigma.float().exp()
        return information_dropout_kl(alpha, self.prior, self.alpha_max, f.float(), mu, sigma)

    def apply_alpha(self, alpha: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Multiply ``f`` by log-normal noise of std ``alpha`` (:func:`information_dropout`); record the KL in
        ``self.kl``."""
        _check_alpha(alpha, f)
        kl = self.kl_divergence(alpha, f).flatten(1).sum(1).mean()
        self.kl = kl
        if self.kl_to_gradient and self.beta > 0:
            _warn_if_fp16(f.device.type)
        return information_dropout(f, alpha, training=True, kl=kl if self.kl_to_gradient else None, beta=self.beta)

    def forward(self, x_in: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or not self.is_active():
            return f
        return self._forward_active(x_in, f)

    @torch.jit.unused
    def _forward_active(self, x_in: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        _check_feature_map(x_in, 'x_in')
        _check_feature_map(f, 'f')
        return self.apply_alpha(self.alpha(x_in), f)

    def extra_repr(self) -> str:
        return (f'alpha_max={self.alpha_max}, prior={self.prior!r}, beta={self.beta}, '
                f'kl_to_gradient={self.kl_to_gradient}')


def _information_dropout_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, InformationDropout)]


def aux_loss(model: nn.Module) -> torch.Tensor:
    """``sum over InformationDropout layers of beta * kl`` from the last training forward.

    For custom training loops: add it to the loss after switching the automatic mechanism off with
    :func:`set_kl_to_gradient` (else the KL is counted twice). A scalar tensor; 0 when no layer ran.
    """
    terms = [m.beta * m.kl for m in _information_dropout_layers(model) if m.kl is not None]
    if not terms:
        device = next((p.device for p in model.parameters()), torch.device('cpu'))
        return torch.zeros((), device=device)
    return torch.stack(terms).sum()


def set_kl_to_gradient(model: nn.Module, enabled: bool) -> int:
    """Switch the automatic KL gradient of every InformationDropout layer; returns how many."""
    layers = _information_dropout_layers(model)
    for m in layers:
        m.kl_to_gradient = bool(enabled)
    return len(layers)
