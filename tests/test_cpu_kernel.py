"""The C++ kernels against the torch-ops path: same self-information, same mask laws, gradients,
reproducibility, and a clean fallback when no compiler builds them."""
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from scipy import stats

from timm_infodrop.layers import InfoDrop, _cpu_kernel, apply_information, keep_probability, self_information
import importlib

info_drop_module = importlib.import_module('timm_infodrop.layers.info_drop')  # the function shares the name


@pytest.fixture
def kernel_on(monkeypatch):
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '1')
    assert _cpu_kernel.load_kernel() is not None


def both_paths(monkeypatch, fn):
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '1')
    on = fn()
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '0')
    return on, fn()


@pytest.mark.usefixtures('kernel_on')
@pytest.mark.parametrize('shape, geometry, radius, num_offsets', [
    ((64, 3, 128, 128), dict(kernel_size=7, stride=2, padding=3), 3, 9),  # a resnet stem
    ((2, 3, 17, 23), dict(kernel_size=7, stride=2, padding=3), 3, None),  # every offset, odd sizes
    ((3, 64, 20, 20), dict(kernel_size=3, stride=1, padding=1), 1, 9),  # a 3x3 layer, many channels
    ((2, 5, 19, 21), dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1)), 2, 5),
    ((1, 1, 6, 6), dict(kernel_size=6, stride=1, padding=0), 0, 1),  # one window, radius 0
])
def test_kernel_matches_the_torch_ops(monkeypatch, shape, geometry, radius, num_offsets):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    on, off = both_paths(monkeypatch, lambda: self_information(
        x, radius=radius, num_offsets=num_offsets, generator=torch.Generator().manual_seed(4), **geometry))
    assert on.shape == off.shape and on.dtype == torch.float32
    torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures('kernel_on')
@pytest.mark.parametrize('make', [
    lambda x: x.to(torch.bfloat16),
    lambda x: x.contiguous(memory_format=torch.channels_last),
    lambda x: x[:, :, ::2, ::2],  # a strided view
    lambda x: x * 1e-20,  # rescaled inside: squares would underflow
    lambda x: x * 1e20,  # and overflow
])
def test_kernel_takes_any_dtype_layout_and_scale(monkeypatch, make):
    x = make(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    on, off = both_paths(monkeypatch, lambda: self_information(x, 7, 2, 3, generator=torch.Generator().manual_seed(2)))
    torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-5)


def stem_distribution(batch=2, size=16):
    logits = 3.0 * torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(5))
    return torch.softmax(logits.flatten(1), 1).view(batch, 1, size, size)


@pytest.mark.usefixtures('kernel_on')
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_kernel_masks_drop_at_the_marginal_rate(sampling, channels_last):
    """Per position, the share of dropped channels of y is 1 - (1 - P)^m (5 sigma, every position), and
    the per-row drop counts have the spread of independent draws (chi-square on the bernoulli rows)."""
    channels, drop_rate = 4000, 1.5
    y = torch.rand(2, channels, 16, 16, generator=torch.Generator().manual_seed(6)) + 0.5  # never 0
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    assert _cpu_kernel.maskable(y)
    information = -torch.log(stem_distribution()) * 0.03  # P = softmax(-I / 0.03) is stem_distribution
    out = apply_information(information, y, temperature=0.03, drop_rate=drop_rate, sampling=sampling,
                            training=True, generator=torch.Generator().manual_seed(7))
    assert out.shape == y.shape and out.is_contiguous(memory_format=torch.channels_last) == channels_last
    dropped = out == 0
    torch.testing.assert_close(out[~dropped], y[~dropped], rtol=0, atol=0)
    expected = 1 - keep_probability(stem_distribution(), drop_rate)[:, 0]  # (B, H, W)
    frequency = dropped.float().mean(1)
    sigma = torch.sqrt(expected * (1 - expected) / channels)
    assert ((frequency - expected).abs() <= 5 * sigma + 2 ** -15).all(), (frequency - expected).abs().max()
    if sampling == 'bernoulli':  # independent elements: drops per (sample, channel) row ~ sum of bernoullis
        counts = dropped.flatten(2).sum(-1).double()  # (B, C)
        mean = expected.flatten(1).sum(1, keepdim=True).double()
        variance = (expected * (1 - expected)).flatten(1).sum(1, keepdim=True).double()
        z = ((counts - mean) ** 2 / variance).sum().item()
        assert stats.chi2.sf(z, counts.numel()) > 1e-4 and stats.chi2.cdf(z, counts.numel()) > 1e-4


@pytest.mark.usefixtures('kernel_on')
@pytest.mark.parametrize('shape, pool, temperature, drop_rate', [
    ((64, 1, 64, 64), (3, 2, 1), 0.03, 1.5),  # a ResNet stem's map, min-pooled as the max-pool after it
    ((4, 1, 64, 64), None, 0.03, 1.5),  # lite0's stem: no pool
    ((3, 1, 17, 23), ((3, 2), (2, 1), (1, 0)), 0.1, 0.7),  # odd sizes, anisotropic pool
    ((2, 1, 9, 9), None, 0.001, 1.5),  # a cold softmax: P near 1 at the least informative position
    ((2, 1, 8, 8), (2, 2, 0), 0.03, 0.0),  # no draws: everything kept
])
def test_the_threshold_kernel_matches_the_torch_ops(shape, pool, temperature, drop_rate):
    """The fused thresholds (softmax of the min-pooled -I / T, then round(2^16 (1 - P)^m)) against the torch
    ops' drop_distribution and keep_probability: within one step of 2^-16 everywhere, and mostly equal."""
    information = torch.rand(shape, generator=torch.Generator().manual_seed(5)) * 3.0
    geometry = info_drop_module._pool_geometry(*(pool or (None, None, 0)))
    size = info_drop_module._pooled_size(information, geometry)
    distribution = info_drop_module.drop_distribution(information, temperature, *(pool or (None, None, 0)))
    expected = info_drop_module._bernoulli_threshold(distribution, drop_rate).squeeze(1)
    threshold, poison = _cpu_kernel.bernoulli_threshold_cpu(information, temperature, geometry, size,
                                                            info_drop_module._num_draws(drop_rate, *size))
    assert threshold.shape == expected.shape and threshold.dtype == torch.int32 and poison.item() == 0.0
    difference = (threshold - expected).abs()
    assert difference.max() <= 1 and (difference == 0).float().mean() > 0.99
    assert expected.min() < 65536 if drop_rate else (threshold == 65536).all()
    information[1, 0, 2, 3] = float('nan')  # one NaN anywhere poisons the batch; the other samples keep theirs
    threshold, poison = _cpu_kernel.bernoulli_threshold_cpu(information, temperature, geometry, size,
                                                            info_drop_module._num_draws(drop_rate, *size))
    assert poison.isnan() and (threshold[0] - expected[0]).abs().max() <= 1


GRADIENT_LAYOUTS = {  # the gradient the next layer hands back: as y, in the other memory order, or expanded
    'same': lambda g: g,
    'channels_last': lambda g: g.contiguous(memory_format=torch.channels_last),
    'expanded': lambda g: g[:, :1].expand_as(g),
}


@pytest.mark.usefixtures('kernel_on')
@pytest.mark.parametrize('layout', list(GRADIENT_LAYOUTS))
@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_kernel_mask_gradient_is_the_mask_and_draws_are_seeded(sampling, layout):
    layer = InfoDrop(3, 1, 1, sampling=sampling).train()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(8))
    y = (torch.rand(2, 8, 12, 12, generator=torch.Generator().manual_seed(9)) + 0.5).requires_grad_()
    torch.manual_seed(3)
    out = layer(x, y)
    grad = GRADIENT_LAYOUTS[layout](torch.randn_like(out))
    out.backward(grad)
    kept = out.detach() != 0
    assert 0 < (~kept).sum() < kept.numel()
    torch.testing.assert_close(y.grad, grad * kept, rtol=0, atol=0)
    torch.manual_seed(3)
    again = layer(x, y.detach())
    torch.testing.assert_close(again, out.detach(), rtol=0, atol=0)
    torch.manual_seed(4)
    assert not torch.equal(layer(x, y.detach()), out.detach())


def fresh_build(monkeypatch, tmp_path, compiler):
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '1')
    monkeypatch.setenv('TIMM_INFODROP_CACHE', str(tmp_path))
    monkeypatch.setenv('CXX', compiler)
    monkeypatch.setattr(_cpu_kernel, '_tried', False)
    monkeypatch.setattr(_cpu_kernel, '_loaded', None)


@pytest.mark.parametrize('compiler, complaint', [('no-such-compiler-here', r'no C\+\+ compiler'),
                                                 ('false', 'did not build')])
def test_no_compiler_falls_back_to_the_torch_ops_with_one_warning(monkeypatch, tmp_path, compiler, complaint):
    fresh_build(monkeypatch, tmp_path, compiler)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match=complaint):
        fallback = self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # said once
        self_information(x, 3, 1, 1)
    assert _cpu_kernel.load_kernel() is None  # said once, and no half-written library left
    assert list(tmp_path.glob('kernels/*.so')) == []
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '0')
    torch.testing.assert_close(fallback, self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(1)))


def test_build_goes_to_the_cache_once(monkeypatch, tmp_path):
    fresh_build(monkeypatch, tmp_path, os.environ.get('CXX') or 'c++')
    assert _cpu_kernel.load_kernel() is not None
    built = sorted((tmp_path / 'kernels').glob('*.so'))
    assert len(built) == 1
    monkeypatch.setattr(_cpu_kernel, '_tried', False)
    monkeypatch.setattr(_cpu_kernel, '_compile', lambda *args: pytest.fail('rebuilt a cached library'))
    assert _cpu_kernel.load_kernel() is not None


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '0')
    assert not _cpu_kernel.kernel_enabled() and _cpu_kernel.load_kernel() is None
    assert not info_drop_module._use_cpu_kernel(torch.zeros(1))


def test_ranks_starting_together_build_once(tmp_path):
    """Three processes (DDP ranks of one machine) load the kernels into an empty cache at once: one compiles,
    the others wait on the lock and load its library."""
    log = tmp_path / 'compiles.log'
    wrapper = tmp_path / 'cxx'
    wrapper.write_text(f'#!/bin/sh\necho run >> {log}\nexec {shutil.which(os.environ.get("CXX") or "c++")} "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ, CXX=str(wrapper), TIMM_INFODROP_CACHE=str(tmp_path / 'cache'), TIMM_INFODROP_CPU_KERNEL='1')
    code = 'from timm_infodrop.layers import _cpu_kernel; assert _cpu_kernel.load_kernel() is not None'
    ranks = [subprocess.Popen([sys.executable, '-c', code], env=env) for _ in range(3)]
    assert [rank.wait(timeout=300) for rank in ranks] == [0, 0, 0]
    assert log.read_text().splitlines() == ['run']


def test_a_compiler_refusing_openmp_builds_a_one_thread_library(monkeypatch, tmp_path):
    wrapper = tmp_path / 'cxx'
    real = shutil.which(os.environ.get('CXX') or 'c++')
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && {{ echo "unsupported option -fopenmp" >&2; '
                       f'exit 1; }}; done\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    fresh_build(monkeypatch, tmp_path, str(wrapper))
    with pytest.warns(RuntimeWarning, match='refused -fopenmp'):
        assert _cpu_kernel.load_kernel() is not None
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    on = self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(1))
    with _cpu_kernel.kernels_switched(False):
        off = self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-5)
