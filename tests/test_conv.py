"""Regularised convs: state-dict compatibility, deferred application, TorchScript, FX, copies."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from timm_infodrop.layers import (
    DeferredDrop, InfoDropConv2d, InformationDropoutConv2d, info_drop,
)


def plain_conv(**kwargs):
    torch.manual_seed(0)
    return nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False, **kwargs)


@pytest.mark.parametrize('cls', [InfoDropConv2d, InformationDropoutConv2d])
def test_from_conv_shares_parameters_and_keeps_keys(cls):
    conv = plain_conv()
    wrapped = cls.from_conv(conv)
    assert wrapped.weight is conv.weight and wrapped.bias is None
    plain_keys = set(conv.state_dict())
    keys = set(wrapped.state_dict())
    assert plain_keys <= keys
    extra = keys - plain_keys
    if cls is InfoDropConv2d:
        assert not extra
    else:
        assert extra and all(k.startswith('information_dropout.') for k in extra)
    back = wrapped.to_conv()
    assert type(back) is nn.Conv2d and back.weight is conv.weight
    assert set(back.state_dict()) == plain_keys


def test_info_drop_conv_loads_plain_weights_strictly_and_back():
    conv = plain_conv()
    wrapped = InfoDropConv2d(3, 8, 7, stride=2, padding=3, bias=False)
    wrapped.load_state_dict(conv.state_dict(), strict=True)
    other = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
    other.load_state_dict(wrapped.state_dict(), strict=True)
    assert torch.equal(other.weight, conv.weight)


@pytest.mark.parametrize('cls', [InfoDropConv2d, InformationDropoutConv2d])
def test_eval_equals_the_plain_conv(cls):
    conv = plain_conv()
    x = torch.randn(2, 3, 32, 32)
    wrapped = cls.from_conv(conv).eval()
    assert torch.equal(wrapped(x), conv(x))


def test_undeferred_info_drop_conv_masks_its_own_output():
    conv = plain_conv()
    wrapped = InfoDropConv2d.from_conv(conv, temperature=0.1).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(5)
    got = wrapped(x)
    torch.manual_seed(5)
    expected = info_drop(x, conv(x), 7, 2, 3, temperature=0.1, training=True)
    assert torch.equal(got, expected)


class Stem(nn.Module):
    """The released placement: conv -> bn -> relu -> max-pool, then the InfoDrop mask."""

    def __init__(self):
        super().__init__()
        self.conv1 = InfoDropConv2d.from_conv(plain_conv(), deferred=True, pool_kernel_size=3, pool_stride=2,
                                              pool_padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU()
        self.maxpool = nn.Sequential(nn.MaxPool2d(3, 2, 1), DeferredDrop(self.conv1))

    def forward(self, x):
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))


def test_deferred_mask_after_the_max_pool_equals_the_functional_form():
    stem = Stem().train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(9)
    got = stem(x)
    stem.eval()
    torch.manual_seed(9)  # same offsets and uniforms, drawn in the same order
    pooled = F.max_pool2d(stem.act1(F.batch_norm(
        stem.conv1(x), None, None, stem.bn1.weight, stem.bn1.bias, training=True)), 3, 2, 1)
    expected = info_drop(x, pooled, 7, 2, 3, pool_kernel_size=3, pool_stride=2, pool_padding=1, training=True)
    torch.testing.assert_close(got, expected)
    assert (got == 0).any()


def test_deferred_state_is_consumed_once():
    stem = Stem().train()
    x = torch.randn(1, 3, 32, 32)
    y = stem.act1(stem.bn1(stem.conv1(x)))
    assert stem.conv1._pending is not None
    stem.maxpool(y)
    assert stem.conv1._pending is None
    pooled = F.max_pool2d(y, 3, 2, 1)
    assert torch.equal(stem.maxpool[1](pooled), pooled)  # nothing pending: identity


def test_state_dict_of_an_equipped_module_is_the_plain_one():
    stem = Stem()
    plain = nn.ModuleDict(dict(conv1=plain_conv(), bn1=nn.BatchNorm2d(8)))
    assert set(stem.state_dict()) == set(plain.state_dict())


def test_deepcopy_keeps_the_deferred_link_inside_the_copy():
    stem = Stem()
    clone = copy.deepcopy(stem)
    assert clone.maxpool[1].source() is clone.conv1
    assert stem.maxpool[1].source() is stem.conv1


def test_torchscript_eval_matches_eager():
    stem = Stem().eval()
    x = torch.randn(2, 3, 32, 32)
    scripted = torch.jit.script(stem)
    torch.testing.assert_close(scripted(x), stem(x))

    class WithInformationDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = InformationDropoutConv2d(3, 4, 3, padding=1, deferred=True)
            self.noise = DeferredDrop(self.conv)

        def forward(self, x):
            return self.noise(torch.relu(self.conv(x)))

    model = WithInformationDropout().eval()
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))


def test_fx_trace_keeps_the_layers_as_leaves():
    from timm.layers import get_notrace_modules
    from torch.fx import Tracer

    class LeafTracer(Tracer):
        def is_leaf_module(self, m, name):
            return type(m) in get_notrace_modules() or super().is_leaf_module(m, name)

    stem = Stem()
    graph = LeafTracer().trace(stem)
    traced = torch.fx.GraphModule(stem, graph)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(traced.eval()(x), stem.eval()(x))
    traced.train()
    out = traced(x)
    assert (out == 0).any()  # the leaf still masks in training


def test_deferred_drop_needs_a_deferred_regularised_conv():
    with pytest.raises(TypeError):
        DeferredDrop(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match='deferred=True'):
        DeferredDrop(InfoDropConv2d(3, 3, 3))


def test_string_padding_is_refused():
    with pytest.raises(ValueError, match='explicit zero padding'):
        InfoDropConv2d.from_conv(nn.Conv2d(3, 3, 3, padding='same'))
    with pytest.raises(ValueError, match='explicit zero padding'):
        InformationDropoutConv2d(3, 3, 3, padding=1, padding_mode='reflect')


def test_information_dropout_conv_gradients_and_kl():
    conv = InformationDropoutConv2d(3, 4, 3, stride=2, padding=1).train()
    out = conv(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    assert conv.information_dropout.kl is not None
    assert all(p.grad is not None for p in conv.parameters())


def test_meta_device_construction():
    with torch.device('meta'):
        conv = InformationDropoutConv2d(3, 4, 3)
        wrapped = InfoDropConv2d.from_conv(nn.Conv2d(3, 4, 3))
    assert conv.weight.is_meta and conv.information_dropout.alpha_conv.weight.is_meta
    assert wrapped.weight.is_meta


@pytest.mark.parametrize('cls', [InfoDropConv2d, InformationDropoutConv2d])
def test_module_conversions_reach_every_tensor(cls):
    """``.to``/``.double()``/``.to_empty`` go through ``nn.Module._apply``: nothing may shadow it."""
    conv = cls.from_conv(plain_conv(), deferred=False).train()
    conv.double()
    assert all(t.dtype == torch.float64 for t in conv.state_dict().values())
    assert conv(torch.randn(2, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64
    conv.to_empty(device='cpu')
    assert conv.weight.dtype == torch.float64


def test_deepcopy_after_a_training_forward():
    """timm's EMA and our converter deepcopy trained models: the kept KL/alpha graphs must not block it."""
    conv = InformationDropoutConv2d.from_conv(plain_conv(), deferred=True).train()
    drop = DeferredDrop(conv)
    model = nn.Sequential(conv, nn.ReLU(), drop)
    model(torch.randn(2, 3, 16, 16)).sum()
    copied = copy.deepcopy(model)
    assert copied[0]._pending is None and copied[2].source() is copied[0]
    assert model[0].information_dropout.kl is not None and copied[0].information_dropout.kl is None
