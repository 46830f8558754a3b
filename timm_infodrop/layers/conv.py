"""Convs that carry their own regulariser, so a model can be equipped without renaming parameters.

``InfoDropConv2d`` and ``InformationDropoutConv2d`` are ``nn.Conv2d`` subclasses: ``weight`` and
``bias`` keep their keys, so plain-architecture checkpoints load into them and back. Each needs the
conv's *input* (InfoDrop measures its self-information, Information Dropout feeds it to the alpha
branch) but usually acts on a later tensor: the released ResNet masks after conv -> bn -> relu ->
max-pool. Two ways to use them:

* ``deferred=False``: the conv regularises its own output;
* ``deferred=True``: the conv computes what it needs from its input during ``forward`` and keeps it;
  a :class:`DeferredDrop` placed downstream (e.g. after the activation or the max-pool) applies it.

Both are identity under TorchScript (inference) and in eval with the default eval modes, so an
equipped model in eval computes exactly what the plain architecture computes.

timm's ``Conv2dSame`` (TensorFlow's dynamic "same" padding: ``tf_efficientnet_*``, ``tf_mobilenetv3_*``) is
wrapped with ``same_pad=True``: the input is padded as that conv pads it (more at the bottom and right where the
total is odd, and by how much depending on the input size), and the regulariser sees that padded input with the
conv's geometry and no further padding, so InfoDrop's patch windows and Information Dropout's alpha branch lie
exactly on the conv's own windows.
"""
from typing import Any, Optional, Tuple

import torch
from timm.layers import Conv2dSame
from timm.layers.padding import pad_same
from torch import nn

from ..errors import ConfigError
from ._transient import Transient
from .info_drop import InfoDrop
from .information_dropout import InformationDropout

__all__ = ['InfoDropConv2d', 'InformationDropoutConv2d', 'DeferredDrop']


def _patch_geometry(kernel_size, stride, padding, dilation, patch_size: Optional[int]):
    """(kernel, stride, padding, dilation) of InfoDrop's patches: the conv's own windows, or with ``patch_size``
    a ``patch_size`` x ``patch_size`` patch centred on each of them (same stride, so the same output grid).

    Raises:
        ConfigError: a patch smaller than the conv's (dilated) window, or one that cannot be centred on it
            (their sizes differ by an odd number of pixels).
    """
    if patch_size is None:
        return kernel_size, stride, padding, dilation
    pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v))
    if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
        raise ConfigError(f'patch_size must be an int >= 1, got {patch_size!r}')
    spans = [d * (k - 1) + 1 for k, d in zip(pair(kernel_size), pair(dilation))]
    for span in spans:
        if patch_size < span or (patch_size - span) % 2:
            raise ConfigError(f'patch_size {patch_size} cannot be centred on the conv window of {span}x{span} pixels: '
                              f'give {span}, {span + 2}, {span + 4}, ...')
    padding = tuple(p + (patch_size - span) // 2 for p, span in zip(pair(padding), spans))
    return (patch_size, patch_size), stride, padding, (1, 1)


def _check_plain_conv(conv: nn.Conv2d) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f'expected an nn.Conv2d, got {type(conv).__name__}')
    if isinstance(conv.padding, str) or conv.padding_mode != 'zeros':
        raise ValueError(
            f'only explicit zero padding is supported, got padding={conv.padding!r}, '
            f'padding_mode={conv.padding_mode!r}')


class _RegularizedConv2d(nn.Conv2d):
    """Base: a conv whose regulariser prepares a state from the input and applies it to an output.

    ``same_pad``: pad the input dynamically as timm's ``Conv2dSame`` does (TensorFlow "same"); the conv's own
    ``padding`` is then 0.
    """
    __jit_unused_properties__ = ['_pending']
    same_pad: bool = False

    def _regularizer(self) -> nn.Module:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply_state(self, state: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _init_same_pad(self, same_pad: bool) -> None:
        _check_plain_conv(self)
        if same_pad and any(self.padding):
            raise ValueError(f'same_pad pads dynamically: the conv\'s own padding must be 0, got {self.padding}')
        self.same_pad = bool(same_pad)

    def _init_deferred(self, deferred: bool) -> None:
        self.deferred = deferred
        self._pending_state = Transient()  # may hold an autograd graph (Information Dropout's alpha)

    @property
    def _pending(self) -> Optional[torch.Tensor]:
        return self._pending_state.value

    @_pending.setter
    def _pending(self, value: Optional[torch.Tensor]) -> None:
        self._pending_state.value = value

    def padded_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the conv and its regulariser see it: padded as ``Conv2dSame`` pads it with ``same_pad``."""
        return pad_same(x, self.weight.shape[-2:], self.stride, self.dilation) if self.same_pad else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.padded_input(x)
        y = self._conv_forward(x, self.weight, self.bias)
        if torch.jit.is_scripting():
            return y
        return self._regularize(x, y)

    @torch.jit.unused
    def _regularize(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._pending = None
        if not self._regularizer().is_active():
            return y
        state = self._prepare(x)
        if self.deferred:
            self._pending = state
            return y
        return self._apply_state(state, y)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', same_pad={self.same_pad}, deferred={self.deferred}'

    def apply_pending(self, y: torch.Tensor) -> torch.Tensor:
        """Apply what the last ``forward`` prepared to ``y`` (used by :class:`DeferredDrop`)."""
        state, self._pending = self._pending, None
        if state is None:
            return y
        return self._apply_state(state, y)

    @classmethod
    def _from_conv(cls, conv: nn.Conv2d, **kwargs: Any) -> '_RegularizedConv2d':
        """``conv`` (an ``nn.Conv2d`` or timm's ``Conv2dSame``) wrapped; shares its parameters."""
        _check_plain_conv(conv)
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            same_pad=isinstance(conv, Conv2dSame), device=conv.weight.device, dtype=conv.weight.dtype, **kwargs)
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def to_conv(self) -> nn.Conv2d:
        """The plain conv (``Conv2dSame`` where it pads dynamically) with the same (shared) parameters and no
        regulariser."""
        conv = (Conv2dSame if self.same_pad else nn.Conv2d)(
            self.in_channels, self.out_channels, self.kernel_size, stride=self.stride, padding=self.padding,
            dilation=self.dilation, groups=self.groups, bias=self.bias is not None, device='meta')
        conv.weight = self.weight
        conv.bias = self.bias
        conv.train(self.training)
        return conv


class InfoDropConv2d(_RegularizedConv2d):
    """``nn.Conv2d`` + :class:`InfoDrop` for its own geometry; identical state-dict keys.

    Keyword arguments after the conv's own are those of :class:`InfoDrop` (``pool_*`` when the mask
    is applied after a max-pool, ``temperature``, ``drop_rate``, ...). With ``deferred=True`` the
    self-information map of the input is computed in ``forward`` and a :class:`DeferredDrop`
    downstream masks with it. ``window=(kernel_size, stride, padding)`` replaces this conv's own
    geometry for the patch windows when further convs follow before the mask (a deep stem's
    effective receptive field). ``patch_size`` sets the patches' size, centred on those windows (e.g. 7 on a
    3x3 stem conv, the released ResNet-18 stem's 7x7 patches); ``None`` keeps the windows' own size.
    """

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size,
            stride=1,
            padding=0,
            dilation=1,
            groups: int = 1,
            bias: bool = True,
            padding_mode: str = 'zeros',
            deferred: bool = False,
            window: Optional[Tuple[Any, Any, Any]] = None,
            patch_size: Optional[int] = None,
            same_pad: bool = False,
            device=None,
            dtype=None,
            **info_drop_kwargs: Any,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_same_pad(same_pad)
        geometry = (self.kernel_size, self.stride, self.padding, self.dilation) if window is None else (*window, 1)
        self.patch_size = patch_size
        self.info_drop = InfoDrop(*_patch_geometry(*geometry, patch_size), **info_drop_kwargs)
        self._init_deferred(deferred)

    @classmethod
    def from_conv(
            cls, conv: nn.Conv2d, deferred: bool = False, window: Optional[Tuple[Any, Any, Any]] = None,
            patch_size: Optional[int] = None, **info_drop_kwargs: Any,
    ) -> 'InfoDropConv2d':
        """Wrap an existing conv; the new module shares its ``weight`` and ``bias`` Parameters."""
        return cls._from_conv(conv, deferred=deferred, window=window, patch_size=patch_size, **info_drop_kwargs)

    def _regularizer(self) -> nn.Module:
        return self.info_drop

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.info_drop.information(x)

    def _apply_state(self, state: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.info_drop.apply_information(state, y)


class InformationDropoutConv2d(_RegularizedConv2d):
    """``nn.Conv2d`` + :class:`InformationDropout` (its alpha branch under ``information_dropout.``).

    ``weight``/``bias`` keep the plain conv's keys. Keyword arguments after the conv's own are those
    of :class:`InformationDropout` (``alpha_max``, ``prior``, ``beta``, ``kl_to_gradient``). With
    ``deferred=True``, alpha is computed from the input in ``forward`` and a :class:`DeferredDrop`
    after the activation applies the noise, as the paper's ``act(BN(conv(x))) * exp(alpha * eps)``.
    """

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size,
            stride=1,
            padding=0,
            dilation=1,
            groups: int = 1,
            bias: bool = True,
            padding_mode: str = 'zeros',
            deferred: bool = False,
            same_pad: bool = False,
            device=None,
            dtype=None,
            **information_dropout_kwargs: Any,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_same_pad(same_pad)
        self.information_dropout = InformationDropout(
            in_channels, out_channels, self.kernel_size, self.stride, self.padding, self.dilation, groups,
            device=device, dtype=dtype, **information_dropout_kwargs)
        self._init_deferred(deferred)

    @classmethod
    def from_conv(
            cls, conv: nn.Conv2d, deferred: bool = False, **information_dropout_kwargs: Any,
    ) -> 'InformationDropoutConv2d':
        """Wrap an existing conv; shares its ``weight`` and ``bias``, adds a fresh alpha branch."""
        return cls._from_conv(conv, deferred=deferred, **information_dropout_kwargs)

    def _regularizer(self) -> nn.Module:
        return self.information_dropout

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.information_dropout.alpha(x)

    def _apply_state(self, state: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.information_dropout.apply_alpha(state, y)


class DeferredDrop(nn.Module):
    """Applies, to its input, what a ``deferred=True`` regularised conv prepared upstream.

    Place it where the regulariser should act (after BN/activation, or after the max-pool whose
    geometry the InfoDrop was given). The source conv is referenced, not registered as a child, so
    the state dict and the module tree are unchanged. Identity when the source prepared nothing.
    """

    def __init__(self, source: _RegularizedConv2d):
        super().__init__()
        if not isinstance(source, _RegularizedConv2d):
            raise TypeError(f'source must be an InfoDropConv2d or InformationDropoutConv2d, got {type(source).__name__}')
        if not source.deferred:
            raise ValueError('the source conv must be built with deferred=True')
        self._source: Tuple[_RegularizedConv2d] = (source,)

    @torch.jit.unused
    def source(self) -> _RegularizedConv2d:
        """The regularised conv this module applies."""
        return self._source[0]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return y
        return self._apply_pending(y)

    @torch.jit.unused
    def _apply_pending(self, y: torch.Tensor) -> torch.Tensor:
        return self.source().apply_pending(y)

    def extra_repr(self) -> str:
        return f'source={type(self._source[0]).__name__}'
