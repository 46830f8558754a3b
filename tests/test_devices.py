"""Every layer, the surgery, training, conversion and torch.compile on each available device (the CPU
always, CUDA when present), with the same statistical checks on all of them."""
import math

import pytest
import timm
import torch

import timm_infodrop  # noqa: F401
from timm_infodrop.convert import strip
from timm_infodrop.layers import InformationDropout, drop_distribution, keep_probability

from support.devices import on_every_device


def _stem_drop_fraction(model, x):
    """The fraction of zeros in what the stem's InfoDrop masks (after the max-pool), from one training forward."""
    masked = {}
    hook = model.maxpool.register_forward_hook(lambda m, a, out: masked.__setitem__('y', out))
    try:
        model(x)
    finally:
        hook.remove()
    return (masked['y'] == 0).float().mean().item()


@on_every_device
def test_information_dropout_noise_is_log_normal_on_the_device(device):
    torch.manual_seed(0)
    layer = InformationDropout(3, 8, 3, stride=2, padding=1, alpha_max=0.7).to(device).train()
    x = torch.randn(8, 3, 16, 16, device=device)
    f = torch.rand(8, 8, 8, 8, device=device) + 0.5
    eps = torch.log(layer(x, f) / f) / layer.alpha(x)
    n = eps.numel()
    assert eps.device.type == device
    assert abs(eps.mean().item()) < 5 / math.sqrt(n) and abs(eps.std().item() - 1) < 5 * math.sqrt(2 / n)


@on_every_device
@pytest.mark.usefixtures('cpu_path')
def test_surgery_trains_and_converts_on_the_device(device):
    """A resnet18_infodrop train step on the device drops the expected share of the stem's units, the
    gradients are finite, and the stripped plain model computes the eval output there."""
    torch.manual_seed(0)
    model = timm.create_model('resnet18_infodrop', num_classes=3).to(device).train()
    x = torch.randn(16, 3, 64, 64, device=device)
    info = model.conv1.info_drop
    baseline = timm.create_model('resnet18', num_classes=3).to(device).train()
    baseline.load_state_dict(model.state_dict())
    plain_zeros = _stem_drop_fraction(baseline, x)  # zeros of the ReLU + max-pool alone
    torch.manual_seed(1)  # the offsets are the call's first draw: the same below
    zeros = _stem_drop_fraction(model, x)
    with torch.no_grad():
        torch.manual_seed(1)
        p = drop_distribution(info.information(x), info.temperature, info.pool_kernel_size, info.pool_stride,
                              info.pool_padding)
        expected_drop = 1 - keep_probability(p, info.drop_rate).mean().item()
    assert zeros - plain_zeros == pytest.approx(expected_drop * (1 - plain_zeros), abs=0.02)
    loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 3, (16,), device=device))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    plain = strip(model)
    assert next(plain.parameters()).device.type == device
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x))


@on_every_device
@pytest.mark.slow
def test_torch_compile_trains_a_variant_on_the_device(device):
    """torch.compile (inductor) of resnet18_infodrop in training mode: forward and backward run, and the
    compiled model drops the stem's units at the eager model's rate."""
    torch.manual_seed(0)
    # all 49 offsets: the drop distribution is the same in both calls, only the mask is random
    model = timm.create_model('resnet18_infodrop', num_classes=3).to(device).train()
    model.conv1.info_drop.num_offsets = None
    x = torch.randn(8, 3, 32, 32, device=device)
    masked = []
    model.maxpool.register_forward_hook(lambda m, a, out: masked.append((out == 0).float().mean().item()))
    model(x)  # eager
    compiled = torch.compile(model)  # the hook is there before compiling: dynamo traces it
    compiled(x).sum().backward()
    assert model.conv1.weight.grad is not None and torch.isfinite(model.conv1.weight.grad).all()
    assert len(masked) == 2 and masked[1] == pytest.approx(masked[0], abs=0.01)
