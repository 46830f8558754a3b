"""self_information on both CPU paths against the package's reference (``layers/info_drop_reference.py``),
and its numerics (docs/layers.md, InfoDrop's steps 1-4)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from timm_infodrop.layers import finite_check, info_drop_reference as reference, self_information

pytestmark = pytest.mark.usefixtures('cpu_path')  # the C++ kernels and the torch ops


def all_offsets(radius):
    return reference.draw_offsets(radius, None)


geometries = st.tuples(
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
    st.integers(1, 2),  # dilation
)


@settings(max_examples=40, deadline=None)
@given(
    geometry=geometries,
    batch=st.integers(1, 2),
    channels=st.sampled_from([1, 3, 10]),  # both the few- and many-channel paths
    size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
    radius=st.integers(0, 2),
    seed=st.integers(0, 2 ** 16),
)
def test_all_offsets_matches_loop(geometry, batch, channels, size, radius, seed):
    k, s, p, d = geometry
    if size[0] + 2 * p < d * (k - 1) + 1 or size[1] + 2 * p < d * (k - 1) + 1:
        return  # impossible geometry: covered by test_impossible_geometry_names_sizes
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(batch, channels, *size)))
    expected = reference.self_information(x, all_offsets(radius), k, s, p, d)
    got = self_information(x.float(), k, s, p, d, radius=radius, num_offsets=None)
    assert got.shape == expected.shape
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(geometry=geometries, num_offsets=st.integers(1, 12), seed=st.integers(0, 2 ** 16))
def test_sampled_offsets_match_loop(geometry, num_offsets, seed):
    """Offsets are uniform draws from [-R, R]^2 (documented: torch.randint with the generator), so the
    reference's draw from the same seed gives the layer's offsets."""
    k, s, p, d = geometry
    radius = 3
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 3, 10, 11)))
    if 10 + 2 * p < d * (k - 1) + 1:
        return
    offsets = reference.draw_offsets(radius, num_offsets, torch.Generator().manual_seed(seed))
    expected = reference.self_information(x, offsets, k, s, p, d)
    got = self_information(x.float(), k, s, p, d, radius=radius, num_offsets=num_offsets,
                           generator=torch.Generator().manual_seed(seed))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_bandwidth_enters_the_kernel():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 8, 8)))
    for h in (0.5, 2.0):
        expected = reference.self_information(x, all_offsets(1), 3, 1, 1, 1, bandwidth=h)
        got = self_information(x.float(), 3, 1, 1, radius=1, num_offsets=None, bandwidth=h)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_the_reference_by_hand():
    """The reference itself, on numbers worked out by hand: one channel, x = [[1, 2], [3, 5]], one offset (0, 1)
    (each pixel against its right-hand neighbour, 0 past the edge)."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    squared = torch.tensor([[[[1.0, 4.0], [4.0, 25.0]]]], dtype=torch.float64)  # (1-2)^2, (2-0)^2, (3-5)^2, (5-0)^2
    torch.testing.assert_close(reference.patch_distances(x, [(0, 1)], 1), squared)
    # one offset: q = exp(-d / (2 mean d)), so I = d / (2 mean d), mean d = 34 / 4
    torch.testing.assert_close(reference.self_information(x, [(0, 1)], 1), squared / 17)
    # a 2x2 window sums all four: one position, I = 34 / (2 * 34)
    half = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    torch.testing.assert_close(reference.self_information(x, [(0, 1)], 2), half)
    assert reference.draw_offsets(1, None) == [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]


def test_output_grid_is_the_convs():
    x = torch.randn(2, 3, 37, 41)
    conv = torch.nn.Conv2d(3, 5, 7, stride=2, padding=3, dilation=1)
    info = self_information(x, 7, 2, 3)
    assert info.shape == (2, 1, *conv(x).shape[-2:])


def test_constant_image_has_zero_information_without_nan():
    # every patch equals its neighbours except at the zero-padded border
    x = torch.full((2, 3, 16, 16), 0.7)
    info = self_information(x, 3, 1, 0, radius=2, num_offsets=None)
    assert torch.isfinite(info).all()
    assert info[:, :, 2:-2, 2:-2].abs().max() < 1e-6
    zeros = self_information(torch.zeros(1, 3, 8, 8), 3, 1, 1, num_offsets=None)
    assert torch.equal(zeros, torch.zeros_like(zeros))  # mean distance 0: q = 1 everywhere


def test_seeded_generator_is_deterministic_and_offsets_vary_without_it():
    x = torch.randn(2, 3, 24, 24)
    a = self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(5))
    b = self_information(x, 3, 1, 1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    torch.manual_seed(0)
    maps = [self_information(x, 3, 1, 1) for _ in range(4)]
    assert any(not torch.equal(maps[0], m) for m in maps[1:])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    x = torch.randn(2, 3, 20, 20)
    reference = self_information(x, 3, 1, 1, num_offsets=None)
    got = self_information(x.to(dtype), 3, 1, 1, num_offsets=None)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    tolerance = 1e-5 if dtype == torch.float64 else 0.05
    assert (got - reference).abs().max() < tolerance


def test_autocast_bf16_channels_last_batch_one():
    x = torch.randn(1, 8, 15, 15).contiguous(memory_format=torch.channels_last)
    reference = self_information(x.contiguous(), 3, 2, 1, num_offsets=None)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = self_information(x, 3, 2, 1, num_offsets=None)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, reference)


def test_non_contiguous_input():
    x = torch.randn(2, 3, 20, 24)
    reference = self_information(x, 3, 1, 1, num_offsets=None)
    got = self_information(x.transpose(2, 3).contiguous().transpose(2, 3), 3, 1, 1, num_offsets=None)
    torch.testing.assert_close(got, reference)


def test_extreme_scales_stay_finite():
    for scale in (1e-20, 1e20):
        info = self_information(torch.randn(2, 3, 16, 16) * scale, 7, 2, 3)
        assert torch.isfinite(info).all()


def test_impossible_geometry_names_sizes():
    with pytest.raises(ValueError, match=r'3x4.*smaller than the conv window 7x7'):
        self_information(torch.randn(1, 3, 3, 4), 7, 1, 0)


@pytest.mark.parametrize('bad, message', [
    (torch.randn(3, 8, 8), 'shape'),
    (torch.randint(0, 5, (1, 3, 8, 8)), 'floating point'),
])
def test_bad_inputs(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        self_information(bad, 3)


@pytest.mark.parametrize('kwargs, message', [
    (dict(radius=-1), 'radius'),
    (dict(num_offsets=0), 'num_offsets'),
    (dict(bandwidth=0.0), 'bandwidth'),
    (dict(stride=0), 'stride'),
    (dict(kernel_size=(3,)), 'kernel_size'),
])
def test_bad_hyperparameters(kwargs, message):
    args = dict(kernel_size=3)
    args.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        self_information(torch.randn(1, 3, 8, 8), **args)


@pytest.mark.parametrize('bad_value', [float('nan'), float('inf')])
def test_non_finite_input_gives_nan_or_an_error_on_request(bad_value):
    x = torch.randn(2, 3, 8, 8)
    x[0, 1, 2, 3] = bad_value
    assert torch.isnan(self_information(x, 3)).all()  # NaN in, NaN out: never a finite, meaningless map
    with finite_check(), pytest.raises(ValueError, match='NaN or Inf'):
        self_information(x, 3)


def test_scale_invariance():
    x = torch.randn(2, 3, 12, 12)
    reference = self_information(x, 3, 1, 1, num_offsets=None)
    for scale in (1e-3, 1e4):
        torch.testing.assert_close(self_information(x * scale, 3, 1, 1, num_offsets=None), reference)
