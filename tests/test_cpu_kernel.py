"""The C++ kernels against the torch-ops path and the package's reference (``layers/info_drop_reference.py``):
same self-information, thresholds and mask laws, gradients, reproducibility; the library's signatures checked at
load; and a clean fallback when no compiler builds them."""
import importlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from scipy import stats

from timm_infodrop.layers import (
    InfoDrop, _checks, _cpu_build, _cpu_kernel, apply_information, info_drop_reference as reference, self_information,
)

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
    expected = 1 - reference.keep_probability(stem_distribution(), drop_rate)[:, 0].float()  # (B, H, W)
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
    """The fused thresholds (softmax of the min-pooled -I / T, then round(2^16 (1 - P)^m)) against the
    reference's drop_distribution and keep_probability: within one step of 2^-16 everywhere, and mostly equal."""
    information = torch.rand(shape, generator=torch.Generator().manual_seed(5)) * 3.0
    geometry = _checks._pool_geometry(*(pool or (None, None, 0)))
    size = info_drop_module._pooled_size(information, geometry)
    distribution = reference.drop_distribution(information, temperature, *(pool or (None, None, 0)))
    expected = torch.round(reference.keep_probability(distribution, drop_rate) * 65536).to(torch.int32).squeeze(1)
    num_draws = reference.num_draws(drop_rate, *size)
    threshold, poison = _cpu_kernel.bernoulli_threshold_cpu(information, temperature, geometry, size, num_draws)
    assert threshold.shape == expected.shape and threshold.dtype == torch.int32 and poison.item() == 0.0
    difference = (threshold - expected).abs()
    assert difference.max() <= 1 and (difference == 0).float().mean() > 0.99
    assert expected.min() < 65536 if drop_rate else (threshold == 65536).all()
    information[1, 0, 2, 3] = float('nan')  # one NaN anywhere poisons the batch; the other samples keep theirs
    threshold, poison = _cpu_kernel.bernoulli_threshold_cpu(information, temperature, geometry, size, num_draws)
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
    monkeypatch.setattr(_cpu_kernel, '_openmp', _cpu_kernel._openmp)  # restored with the library after the test


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
    monkeypatch.setattr(_cpu_build, '_compile', lambda *args: pytest.fail('rebuilt a cached library'))
    assert _cpu_kernel.load_kernel() is not None


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(_cpu_kernel.ENV_SWITCH, '0')
    assert not _cpu_kernel.kernel_enabled() and _cpu_kernel.load_kernel() is None
    assert not info_drop_module._use_cpu_kernel(torch.zeros(1))


@pytest.mark.slow
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


@pytest.mark.slow
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


C_TYPES = {'int': 'i32', 'int64_t': 'i64', 'uint64_t': 'u64', 'float': 'f32', 'void': 'void'}


def declared_signatures(source: str) -> str:
    """The ``extern "C"`` functions the .cpp defines, in ``infodrop_abi()``'s form, read from their declarations."""
    lines = []
    for result, name, arguments in re.findall(r'extern "C" ([\w\s*]+?)\s*(infodrop_\w+)\(([^)]*)\)\s*\{', source):
        def code(declaration: str) -> str:
            declaration = declaration.strip()
            if '*' in declaration:
                return 'ptr'
            return C_TYPES[declaration.replace('const ', '').rsplit(' ', 1)[0] if ' ' in declaration else declaration]
        args = [code(a) for a in arguments.split(',') if a.strip()]
        lines.append(f"{name}({','.join(args)}) -> {code(result)}\n")
    return ''.join(lines)


@pytest.mark.usefixtures('kernel_on')
def test_the_library_exports_the_signatures_its_source_declares_and_the_wrapper_expects():
    """Three places name the kernels' signatures: the C++ declarations, the library's infodrop_abi() string and
    the ctypes prototypes. The string is held to the declarations here and to the prototypes at every load."""
    declared = declared_signatures(_cpu_build.SOURCE.read_text())
    assert len(declared.splitlines()) == len(_cpu_kernel.PROTOTYPES) == 8
    assert sorted(declared.splitlines()) == sorted(_cpu_kernel.expected_abi().splitlines())
    assert _cpu_kernel.library_abi(_cpu_kernel.load_kernel()) == _cpu_kernel.expected_abi()


def fake_library(tmp_path: Path, target: Path, abi) -> None:
    """A library at ``target`` exporting one InfoDrop symbol with another signature, and ``abi`` as its
    infodrop_abi() (None: no such symbol, as a build from before the check)."""
    source = tmp_path / 'stale.cpp'
    export = '' if abi is None else f'extern "C" const char* infodrop_abi() {{ return "{abi}"; }}\n'
    source.write_text(export + 'extern "C" void infodrop_multiply_keep(const float* y) {}\n')
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([shutil.which(os.environ.get('CXX') or 'c++'), '-shared', '-fPIC', str(source), '-o', str(target)],
                   check=True)


@pytest.mark.parametrize('abi', ['infodrop_multiply_keep(ptr) -> void\\n', None], ids=['other signatures', 'no abi'])
@pytest.mark.slow
def test_a_stale_library_in_the_cache_is_rebuilt_not_called(monkeypatch, tmp_path, abi):
    fresh_build(monkeypatch, tmp_path / 'cache', os.environ.get('CXX') or 'c++')
    target = _cpu_build.library_path(_cpu_build.compiler(), _cpu_build.flag_sets()[0][0])
    fake_library(tmp_path, target, abi)
    stale = target.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a rebuild is a cache miss, not a problem
        library = _cpu_kernel.load_kernel()
    assert library is not None and _cpu_kernel.library_abi(library) == _cpu_kernel.expected_abi()
    assert target.read_bytes() != stale
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    on = self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(1))
    with _cpu_kernel.kernels_switched(False):
        torch.testing.assert_close(on, self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(1)),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_wrapper_that_disagrees_with_the_source_refuses_the_library(monkeypatch, tmp_path):
    """Prototypes edited without the C++ (one argument fewer): no build is ever called, one warning says why."""
    fresh_build(monkeypatch, tmp_path, os.environ.get('CXX') or 'c++')
    result, arguments = _cpu_kernel.PROTOTYPES['infodrop_multiply_keep']
    monkeypatch.setitem(_cpu_kernel.PROTOTYPES, 'infodrop_multiply_keep', (result, arguments[:-1]))
    with pytest.warns(RuntimeWarning, match='does not match its Python wrapper'):
        assert _cpu_kernel.load_kernel() is None
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(self_information(x, 3, 1, 1)).all()  # the torch ops


def _openmp_runtimes() -> set:
    with open('/proc/self/maps') as maps:
        return {line.split()[-1] for line in maps if re.search(r'lib(g|i5|i)?omp[^/]*\.so', line.split()[-1])}


@pytest.mark.skipif(not Path('/proc/self/maps').exists(), reason='reads the mapped libraries from /proc (Linux)')
@pytest.mark.usefixtures('kernel_on')
def test_the_kernels_share_torchs_openmp_runtime_and_thread_count():
    """One OpenMP runtime in the process after the kernels load (theirs is torch's: one pool of threads), and
    every call runs on torch.get_num_threads() threads."""
    assert _cpu_kernel._openmp and len(_openmp_runtimes()) == 1, _openmp_runtimes()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert _cpu_kernel._threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert _cpu_kernel._threads() == threads
