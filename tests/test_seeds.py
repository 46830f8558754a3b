"""What a seed fixes (docs/layers.md, "Masks and seeds"), one test per claim."""
import pytest
import torch

from timm_infodrop.layers import InfoDrop, _cpu_kernel, self_information

X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
Y = torch.rand(4, 32, 16, 16, generator=torch.Generator().manual_seed(1)) + 0.5  # never 0: a zero is a drop


def masked(layer, seed):
    torch.manual_seed(seed)
    return layer(X, Y)


@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_a_seed_fixes_the_masks_on_one_path(cpu_path, sampling):
    layer = InfoDrop(3, 1, 1, sampling=sampling).train()
    first = masked(layer, 5)
    assert torch.equal(first, masked(layer, 5))
    assert not torch.equal(first, masked(layer, 6))


def test_a_seed_fixes_the_offsets_on_both_paths_alike():
    """The offsets come from torch's generator on both paths, so their maps agree to float rounding."""
    maps = []
    for enabled in (True, False):
        with _cpu_kernel.kernels_switched(enabled):
            torch.manual_seed(3)
            maps.append(self_information(X, 3, 1, 1))
    torch.testing.assert_close(maps[0], maps[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_the_two_paths_draw_from_different_streams(sampling):
    """Same seed, same law (tests/test_cpu_kernel.py tests the law), different masks: a run is reproducible on
    one path, not across the kernel and the torch ops."""
    layer = InfoDrop(3, 1, 1, sampling=sampling).train()
    with _cpu_kernel.kernels_switched(True):
        if _cpu_kernel.load_kernel() is None:
            pytest.skip('the C++ kernels cannot be built here')
        on_kernel = masked(layer, 5)
    with _cpu_kernel.kernels_switched(False):
        on_torch_ops = masked(layer, 5)
    assert not torch.equal(on_kernel == 0, on_torch_ops == 0)


@pytest.mark.slow
def test_under_torch_compile_torch_rng_semantics_apply(cpu_path):
    """Compiled, a seed still fixes the masks. On the kernels they equal eager's only with inductor's
    fallback_random (by default inductor draws its own random numbers); the torch ops draw their 16-bit
    uniforms one per element when compiled (four per 64-bit word in eager), so theirs never do."""
    import torch._inductor.config as inductor_config

    layer = InfoDrop(3, 1, 1).train()
    eager = masked(layer, 5)
    torch._dynamo.reset()
    with inductor_config.patch(fallback_random=True):
        compiled = torch.compile(layer, fullgraph=True)
        assert torch.equal(masked(compiled, 5), eager) == (cpu_path == 'kernel')
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    first = masked(compiled, 5)
    assert torch.equal(first, masked(compiled, 5)) and not torch.equal(first, masked(compiled, 6))
