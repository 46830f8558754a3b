"""Information Dropout: KL closed forms, noise law, eval, gradients and the automatic KL gradient."""
import importlib
import math
import warnings

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from timm_infodrop.layers import (
    ALPHA_FLOOR, DeferredDrop, InformationDropout, InformationDropoutConv2d, aux_loss, beta_from_paper,
    information_dropout, information_dropout_kl, set_kl_to_gradient,
)


def test_log_normal_kl_is_the_gaussian_kl_in_log_space():
    torch.manual_seed(0)
    alpha = 0.05 + torch.rand(100)
    f = torch.rand(100) * 3 + 1e-3
    mu, sigma = torch.tensor(0.3), torch.tensor(1.7)
    ours = information_dropout_kl(alpha, 'log-normal', 0.7, f, mu, sigma)
    reference = kl_divergence(Normal(torch.log(f), alpha), Normal(mu, sigma))
    torch.testing.assert_close(ours, reference)


def test_log_normal_kl_clamps_dead_units():
    alpha = torch.full((2,), 0.5)
    kl = information_dropout_kl(alpha, 'log-normal', 0.7, torch.tensor([0.0, -1.0]), torch.tensor(0.0), torch.tensor(1.0))
    expected = kl_divergence(Normal(torch.log(torch.tensor(1e-4)), torch.tensor(0.5)), Normal(0.0, 1.0))
    torch.testing.assert_close(kl, expected.expand(2))


def test_log_uniform_kl():
    alpha_max = 0.7
    alpha = torch.tensor([ALPHA_FLOOR, 0.1, alpha_max + ALPHA_FLOOR])
    kl = information_dropout_kl(alpha, 'log-uniform', alpha_max)
    torch.testing.assert_close(kl, -torch.log(alpha / (alpha_max + ALPHA_FLOOR)))
    assert kl[-1].abs() < 1e-6 and (kl[:-1] > 0).all()  # 0 at maximal noise, positive below


def layer_and_inputs(prior='log-uniform', seed=0):
    torch.manual_seed(seed)
    layer = InformationDropout(3, 8, 3, stride=2, padding=1, prior=prior, alpha_max=0.7)
    x = torch.randn(4, 3, 16, 16)
    f = torch.relu(torch.randn(4, 8, 8, 8)) if prior == 'log-uniform' else nn.functional.softplus(torch.randn(4, 8, 8, 8))
    return layer, x, f


@pytest.mark.parametrize('prior', ['log-uniform', 'log-normal'])
def test_layer_kl_is_sum_over_units_mean_over_batch(prior):
    layer, x, f = layer_and_inputs(prior)
    layer.train()(x, f)
    alpha = layer.alpha(x)
    assert alpha.shape == f.shape
    assert alpha.min() >= ALPHA_FLOOR and alpha.max() <= ALPHA_FLOOR + 0.7
    mu = sigma = None
    if prior == 'log-normal':
        mu, sigma = layer.prior_mu, layer.prior_log_sigma.exp()
    per_unit = information_dropout_kl(alpha, prior, 0.7, f, mu, sigma)
    torch.testing.assert_close(layer.kl, per_unit.sum(dim=(1, 2, 3)).mean())


def test_noise_is_log_normal_with_std_alpha():
    layer, x, f = layer_and_inputs()
    f = torch.rand_like(f) + 0.5  # strictly positive so that log(z / f) is defined
    torch.manual_seed(1)
    z = layer.train()(x, f)
    eps = torch.log(z / f) / layer.alpha(x)
    n = eps.numel()
    assert abs(eps.mean().item()) < 5 / math.sqrt(n)
    assert abs(eps.std().item() - 1) < 5 * math.sqrt(2 / n)


def test_eval_is_the_median_and_deterministic():
    layer, x, f = layer_and_inputs()
    layer.eval()
    assert layer(x, f) is f
    layer.train()
    assert not torch.equal(layer(x, f), f)


@pytest.mark.parametrize('prior', ['log-uniform', 'log-normal'])
def test_gradients_reach_alpha_branch_and_prior(prior):
    layer, x, f = layer_and_inputs(prior)
    f.requires_grad_(True)
    z = layer.train()(x, f)
    (z.sum() + layer.kl).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert f.grad is not None


class TinyNet(nn.Module):
    """conv(+Information Dropout, deferred) -> BN -> ReLU -> noise -> pool -> linear."""

    def __init__(self, prior='log-uniform'):
        super().__init__()
        self.conv = InformationDropoutConv2d(3, 6, 3, stride=2, padding=1, bias=False, deferred=True,
                                             prior=prior, beta=0.01)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU() if prior == 'log-uniform' else nn.Softplus()
        self.noise = DeferredDrop(self.conv)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.noise(self.act(self.bn(self.conv(x))))
        return self.head(x.mean(dim=(2, 3)))


def grads_of(model, loss_fn):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    loss_fn().backward()
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize('prior', ['log-uniform', 'log-normal'])
def test_automatic_kl_gradient_equals_adding_aux_loss(prior):
    torch.manual_seed(0)
    model = TinyNet(prior).train()
    x, target = torch.randn(8, 3, 12, 12), torch.randint(0, 5, (8,))
    ce = lambda: nn.functional.cross_entropy(model(x), target)  # noqa: E731

    assert set_kl_to_gradient(model, True) == 1
    automatic = grads_of(model, ce)
    set_kl_to_gradient(model, False)
    manual = grads_of(model, lambda: ce() + aux_loss(model))
    without_kl = grads_of(model, ce)
    for name in automatic:
        assert automatic[name] is not None, name  # every parameter, the prior's included, learns
        torch.testing.assert_close(automatic[name], manual[name], atol=1e-5, rtol=1e-5)
    alpha_grad = 'conv.information_dropout.alpha_conv.weight'
    assert not torch.allclose(automatic[alpha_grad], without_kl[alpha_grad])  # the KL did contribute


def test_automatic_kl_gradient_under_bf16_autocast():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, target = torch.randn(8, 3, 12, 12), torch.randint(0, 5, (8,))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    kl = model.conv.information_dropout.kl
    assert kl.dtype == torch.float32 and torch.isfinite(kl)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_aux_loss_sums_beta_weighted_kls():
    model = TinyNet().train()
    assert aux_loss(model) == 0  # nothing ran yet
    model(torch.randn(2, 3, 8, 8))
    layer = model.conv.information_dropout
    torch.testing.assert_close(aux_loss(model), layer.beta * layer.kl)


def test_beta_from_paper():
    assert beta_from_paper(3.0, 50_000) == pytest.approx(6e-5)
    with pytest.raises(ValueError):
        beta_from_paper(3.0, 0)


@pytest.mark.parametrize('kwargs, message', [
    (dict(prior='gaussian'), 'prior'),
    (dict(alpha_max=0.0), 'alpha_max'),
    (dict(beta=-1.0), 'beta'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InformationDropout(3, 4, 3, **kwargs)


def test_shape_mismatch_is_a_clear_error():
    layer, x, f = layer_and_inputs()
    with pytest.raises(ValueError, match='geometry of the accompanied conv'):
        layer.train()(x, f[:, :, :4])


@pytest.mark.parametrize('prior', ['log-uniform', 'log-normal'])
def test_the_function_is_what_the_module_computes(prior):
    """information_dropout(f, alpha, training) with a fixed seed gives the module's output, and the formula
    f * exp(alpha * eps), eps = randn_like(alpha); with the KL and beta also its gradients."""
    layer, x, f = layer_and_inputs(prior)
    layer.train()
    alpha = layer.alpha(x)
    torch.manual_seed(5)
    z_module = layer(x, f)
    torch.manual_seed(5)
    z_function = information_dropout(f, alpha, training=True)
    torch.manual_seed(5)
    z_formula = f * torch.exp(alpha * torch.randn_like(alpha))
    torch.testing.assert_close(z_module, z_function, rtol=0, atol=0)
    torch.testing.assert_close(z_function, z_formula, rtol=0, atol=0)
    # the automatic KL gradient: the function given the module's KL and beta matches the module's backward
    grads = []
    for use_module in (True, False):
        layer.zero_grad()
        torch.manual_seed(6)
        if use_module:
            z = layer(x, f)
        else:
            kl = layer.kl_divergence(layer.alpha(x), f).flatten(1).sum(1).mean()
            z = information_dropout(f, layer.alpha(x), training=True, kl=kl, beta=layer.beta)
        z.sum().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    generator = torch.Generator().manual_seed(7)
    first = information_dropout(f, alpha, training=True, generator=generator)
    assert torch.equal(first, information_dropout(f, alpha, True, generator=torch.Generator().manual_seed(7)))


def test_the_function_is_the_identity_out_of_training():
    layer, x, f = layer_and_inputs()
    alpha = layer.alpha(x)
    assert information_dropout(f, alpha, training=False) is f
    assert information_dropout(f, alpha) is f  # training defaults to False, as timm's drop_path
    assert information_dropout(f, alpha[:, :1], training=False) is f  # nothing is checked or drawn
    with pytest.raises(ValueError, match='alpha has shape'):
        information_dropout(f, alpha[:, :1], training=True)
    eps_free = information_dropout(f.requires_grad_(), alpha.detach(), training=True)
    eps_free.sum().backward()
    assert f.grad is not None and (f.grad > 0).all()  # d z / d f is the (positive) noise


FAMILIES = ['resnet18', 'convnext_atto', 'efficientnet_b0', 'mobilenetv3_large_100', 'regnety_016']


def test_prior_follows_the_activation():
    from timm_infodrop.surgery import prior_for

    assert prior_for(nn.Softplus()) == 'log-normal'  # the authors' pairing: strictly positive units
    for activation in (None, nn.Identity(), nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(), nn.SiLU(), nn.GELU(),
                       nn.Hardswish(), nn.Mish()):
        assert prior_for(activation) == 'log-uniform', activation  # the KL needs no positive units


@pytest.mark.parametrize('arch', FAMILIES)
def test_kl_gradient_reaches_the_main_branch_in_every_family(arch):
    """Each site's KL alone sends a finite, nonzero gradient into the main branch: to the input of the
    regularised conv (which feeds the alpha branch) and on to the stem conv's weight, before every
    regulariser; and no unit costs more than the log-uniform maximum (no clamped units)."""
    import timm

    import timm_infodrop  # noqa: F401  registers the variants

    torch.manual_seed(0)
    model = timm.create_model(f'{arch}_infodropout', num_classes=3).train()
    set_kl_to_gradient(model, False)
    stem = model.get_submodule(model.pretrained_cfg['first_conv'])
    sites = {name: m for name, m in model.named_modules() if isinstance(m, InformationDropoutConv2d)}
    assert sites and not isinstance(stem, InformationDropoutConv2d), arch
    inputs, units = {}, {}

    def record(conv, args, out):
        inputs[conv], units[conv] = args[0], out[0].numel()

    hooks = [conv.register_forward_hook(record) for conv in sites.values()]
    model(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    for name, conv in sites.items():
        layer = conv.information_dropout
        assert layer.prior == 'log-uniform', (name, layer.prior)
        assert layer.kl / units[conv] <= math.log((layer.alpha_max + ALPHA_FLOOR) / ALPHA_FLOOR) + 1e-4, name
        grads = torch.autograd.grad(layer.beta * layer.kl, [inputs[conv], stem.weight], retain_graph=True)
        for what, grad in zip(('the conv input', 'the stem conv weight'), grads):
            assert torch.isfinite(grad).all() and grad.abs().sum() > 0, f'{arch}: {name}\'s KL -> {what}'


def test_the_injected_kl_gradient_under_fp16_autocast_warns_once(monkeypatch):
    module = importlib.import_module('timm_infodrop.layers.information_dropout')  # the function shares the name
    monkeypatch.setattr(module, '_fp16_warned', False)
    layer, x, f = layer_and_inputs()
    layer.train()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # bf16 and float32: silent
        layer(x, f)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            layer(x, f)
        set_kl_to_gradient(layer, False)
        with torch.autocast('cpu', dtype=torch.float16):
            layer(x, f)  # switched off: the user adds aux_loss, which the scaler scales
    set_kl_to_gradient(layer, True)
    with torch.autocast('cpu', dtype=torch.float16):
        with pytest.warns(RuntimeWarning, match=r'float16 autocast.*--amp-dtype bfloat16.*aux_loss\(model\)'):
            layer(x, f)
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # once
            layer(x, f)
