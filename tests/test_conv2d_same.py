"""timm's Conv2dSame (TensorFlow "same" padding, asymmetric where the total is odd) under both regularisers:
InfoDrop's patch windows and Information Dropout's alpha branch lie exactly on the conv's own windows."""
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn

from timm_infodrop.errors import ConfigError
from timm_infodrop.layers import InfoDropConv2d, InformationDropoutConv2d, self_information
from timm_infodrop.layers.information_dropout import ALPHA_FLOOR
from timm_infodrop.surgery import add_info_drop, add_information_dropout, remove_dropout

# (H, W) with odd and even sides: at k3 s2 an even side pads 0 before and 1 after, an odd side 1 and 1
SIZES = [(128, 128), (127, 127), (128, 127), (127, 130)]


def tf_same_total(size, kernel=3, stride=2):
    """TensorFlow's total "same" padding of one side: the output has ceil(size / stride) positions."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def same_conv(kernel=3, stride=2, in_channels=3, out_channels=8, groups=1):
    torch.manual_seed(0)
    return Conv2dSame(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)


def prepared(wrapped, x, seed=3):
    """What a deferred regulariser computed from ``x`` in a training forward (offsets drawn after ``seed``)."""
    wrapped.train()
    torch.manual_seed(seed)
    y = wrapped(x)
    return y, wrapped._pending


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('kernel,stride', [(3, 2), (5, 2), (3, 1)])
def test_self_information_grid_is_the_conv_output_grid(size, kernel, stride):
    conv = same_conv(kernel, stride)
    x = torch.randn(2, 3, *size)
    y, information = prepared(InfoDropConv2d.from_conv(conv, deferred=True), x)
    assert y.shape == conv(x).shape
    assert information.shape == (2, 1, *y.shape[-2:])


@pytest.mark.parametrize('size', SIZES)
def test_info_drop_windows_are_the_padding_the_conv_applies(size):
    """Against self-information on the input padded by hand as TensorFlow pads it (the extra row and column
    after), and not before: the comparison can tell the two sides apart."""
    conv = same_conv()
    x = torch.randn(2, 3, *size)
    _, information = prepared(InfoDropConv2d.from_conv(conv, deferred=True), x)
    pad_h, pad_w = (tf_same_total(side) for side in size)
    before, after = (pad_w // 2, pad_h // 2), (pad_w - pad_w // 2, pad_h - pad_h // 2)
    torch.manual_seed(3)
    expected = self_information(F.pad(x, (before[0], after[0], before[1], after[1])), 3, 2, 0)
    torch.testing.assert_close(information, expected)
    if before != after:  # asymmetric: padding on the wrong side gives another map
        torch.manual_seed(3)
        mirrored = self_information(F.pad(x, (after[0], before[0], after[1], before[1])), 3, 2, 0)
        assert not torch.allclose(information, mirrored)


def test_symmetric_same_padding_equals_the_plain_padded_conv():
    """Where the total padding is even, Conv2dSame is nn.Conv2d(padding=1): InfoDrop computes the same map."""
    conv = same_conv()
    plain = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    plain.weight = conv.weight
    x = torch.randn(2, 3, 127, 127)
    y_same, same = prepared(InfoDropConv2d.from_conv(conv, deferred=True), x)
    y_plain, padded = prepared(InfoDropConv2d.from_conv(plain, deferred=True), x)
    torch.testing.assert_close(y_same, y_plain)
    torch.testing.assert_close(same, padded)


@pytest.mark.parametrize('size', SIZES)
def test_information_dropout_alpha_branch_pads_as_the_conv(size):
    conv = same_conv(3, 2, 16, 16, groups=16)  # a depthwise stride-2 conv, as in EfficientNet's blocks
    wrapped = InformationDropoutConv2d.from_conv(conv, deferred=True)
    x = torch.randn(2, 16, *size)
    y, alpha = prepared(wrapped, x)
    branch = wrapped.information_dropout
    reference = Conv2dSame(16, 16, 3, stride=2, groups=16)
    reference.load_state_dict(branch.alpha_conv.state_dict())
    expected = ALPHA_FLOOR + branch.alpha_max * torch.sigmoid(reference(x))
    assert alpha.shape == y.shape
    torch.testing.assert_close(alpha, expected)


@pytest.mark.parametrize('cls', [InfoDropConv2d, InformationDropoutConv2d])
def test_wrapped_same_conv_is_the_conv_in_eval_and_strips_back(cls):
    conv = same_conv()
    wrapped = cls.from_conv(conv).eval()
    assert wrapped.same_pad and 'same_pad=True' in repr(wrapped)
    x = torch.randn(2, 3, 128, 127)
    assert torch.equal(wrapped(x), conv(x))
    back = wrapped.to_conv()
    assert type(back) is Conv2dSame and back.weight is conv.weight
    assert torch.equal(back(x), conv(x))


def test_same_pad_refuses_an_explicit_padding():
    with pytest.raises(ValueError, match='padding must be 0'):
        InfoDropConv2d(3, 8, 3, stride=2, padding=1, same_pad=True)


@pytest.mark.parametrize('size', SIZES)
def test_patch_size_centres_larger_patches_on_the_same_grid(size):
    conv = same_conv()
    wrapped = InfoDropConv2d.from_conv(conv, deferred=True, patch_size=7)
    assert wrapped.info_drop.kernel_size == (7, 7) and wrapped.info_drop.padding == (2, 2)
    x = torch.randn(2, 3, *size)
    y, information = prepared(wrapped, x)
    assert information.shape == (2, 1, *y.shape[-2:])


def test_patch_size_centred_on_an_explicitly_padded_conv():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    info_drop = InfoDropConv2d.from_conv(conv, patch_size=7).info_drop
    assert (info_drop.kernel_size, info_drop.stride, info_drop.padding) == ((7, 7), (2, 2), (3, 3))


@pytest.mark.parametrize('patch_size', [2, 4, 1, 0, -7])
def test_patch_size_that_cannot_be_centred_is_refused(patch_size):
    with pytest.raises(ConfigError, match='patch_size'):
        InfoDropConv2d.from_conv(same_conv(), patch_size=patch_size)


@pytest.mark.parametrize('equip', [add_info_drop, add_information_dropout])
def test_tf_efficientnet_lite0_equips_trains_and_strips_to_the_plain_architecture(equip):
    model = timm.create_model('tf_efficientnet_lite0', num_classes=7)
    plain_state = {k: v.clone() for k, v in model.state_dict().items()}
    equip(model, stages=('stem', 'stages'))
    wrapped = [m for m in model.modules() if isinstance(m, (InfoDropConv2d, InformationDropoutConv2d))]
    assert wrapped and any(m.same_pad for m in wrapped)
    model.train()
    model(torch.randn(2, 3, 64, 63)).sum().backward()
    assert model.conv_stem.weight.grad is not None
    remove_dropout(model)
    assert type(model.conv_stem) is Conv2dSame
    fresh = timm.create_model('tf_efficientnet_lite0', num_classes=7)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert set(fresh.state_dict()) == set(plain_state)
