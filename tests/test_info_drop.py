"""InfoDrop masks against the package's reference (``layers/info_drop_reference.py``): the drop distribution, the
keep probabilities and the laws of both sampling modes; where drops land, eval modes, gradients."""
import math

import pytest
import torch

from scipy import stats

from timm_infodrop.layers import (
    InfoDrop, drop_distribution, info_drop, info_drop_fast, info_drop_reference as reference, keep_probability,
    sample_info_drop_mask, self_information,
)

from support.devices import generator, on_every_device

pytestmark = pytest.mark.usefixtures('cpu_path')  # the C++ kernels and the torch ops


def fixed_distribution(seed=0, size=6):
    logits = 2.0 * torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))
    return torch.softmax(logits.flatten(), 0).view(1, 1, size, size)


@on_every_device
@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_drop_frequency_matches_marginal(sampling, device):
    """Per position, the fraction of dropped (sample, channel) rows is 1 - (1 - P)^m."""
    distribution = fixed_distribution().to(device)
    drop_rate, rows = 1.5, 20000
    mask = sample_info_drop_mask(distribution, rows, drop_rate, sampling, generator(device, 1))
    assert mask.shape == (1, rows, 6, 6) and mask.dtype == torch.bool and mask.device.type == device
    frequency = 1.0 - mask.float().mean(dim=1)[0].cpu()
    distribution = distribution.cpu()
    expected = 1.0 - reference.keep_probability(distribution, drop_rate)[0, 0].float()
    torch.testing.assert_close(expected, 1 - keep_probability(distribution, drop_rate)[0, 0], atol=1e-5, rtol=1e-4)
    sigma = torch.sqrt(expected * (1 - expected) / rows)
    # 5 sigma per position (36 positions), plus the 2^-16 resolution of the bernoulli uniforms
    assert ((frequency - expected).abs() <= 5 * sigma + 2 ** -15).all(), (frequency - expected).abs().max()


def test_multinomial_rows_drop_at_most_m_positions():
    distribution = fixed_distribution(size=8)
    mask = sample_info_drop_mask(distribution, 500, 0.25, 'multinomial', torch.Generator().manual_seed(0))
    dropped = (~mask).flatten(2).sum(-1)
    m = int(0.25 * 64)
    assert dropped.max() <= m and dropped.min() >= 1
    expected = (1 - reference.keep_probability(distribution, 0.25)).sum().item()
    assert abs(dropped.float().mean() - expected) < 0.1 * expected


def skewed_distribution(samples=2, size=8, seed=0):
    """Softmax of wide logits (many positions below 2^-16, some far above) with position (0, 0) at 0."""
    logits = 6.0 * torch.randn(samples, size * size, generator=torch.Generator().manual_seed(seed))
    logits[:, 0] = -math.inf
    return torch.softmax(logits, 1).view(samples, 1, size, size)


@pytest.fixture(params=[False, True], ids=['refine-unsettled', 'refine-every-draw'])
def refine_every_draw(request, monkeypatch):
    """The torch-ops exact sampler both ways: refining only the draws its table leaves unsettled (a CPU in
    eager) and every draw (a GPU, torch.compile: no data-dependent shape)."""
    monkeypatch.setattr(info_drop_fast, '_refines_every_draw', lambda device: request.param)
    return request.param


@on_every_device
@pytest.mark.parametrize('table_bits', [16, 4])  # 4: most draws take the binary-search path
def test_exact_sampler_single_draws_follow_p(monkeypatch, device, table_bits, refine_every_draw):
    """With m = 1 every row drops exactly one position, drawn from P: a chi-square goodness-of-fit test per
    sample, and a position with P = 0 is never drawn."""
    monkeypatch.setattr(info_drop_fast, '_TABLE_BITS', table_bits)
    distribution = skewed_distribution().to(device)
    rows = 20000
    mask = sample_info_drop_mask(distribution, rows, 1 / 64, 'multinomial', generator(device, 3)).cpu()
    assert ((~mask).flatten(2).sum(-1) == 1).all()
    counts = (~mask).flatten(2).sum(1).double()
    for sample in range(distribution.shape[0]):
        expected = distribution[sample].flatten().cpu().double() * rows
        assert counts[sample, 0] == 0
        fit = expected >= 5  # the chi-square approximation's rule; the rest holds a negligible mass
        observed = counts[sample][fit]
        scaled = expected[fit] * observed.sum() / expected[fit].sum()
        assert stats.chisquare(observed, scaled).pvalue > 1e-3


@on_every_device
def test_exact_sampler_matches_torch_multinomial_with_replacement(device, refine_every_draw):
    """m draws with replacement per row, against the reference's released procedure (torch.multinomial with
    replacement): two-sample chi-square tests on the per-position drop counts and on the number of distinct
    positions a row drops (a property of the joint law, not only of the marginals)."""
    distribution = skewed_distribution(samples=1, seed=4).to(device)
    rows, m = 6000, 40
    mask = sample_info_drop_mask(distribution, rows, m / 64, 'multinomial', generator(device, 5)).cpu()
    mine = ~mask[0].flatten(1)  # (rows, 64)
    released = ~reference.multinomial_mask(distribution.cpu(), rows, m / 64, torch.Generator().manual_seed(6))
    released = released[0].flatten(1)
    for statistic in (lambda d: d.sum(0), lambda d: torch.bincount(d.sum(1), minlength=65)):
        a, b = statistic(mine).double(), statistic(released).double()
        used = (a + b) >= 10
        table = torch.stack([a[used], b[used]]).numpy()
        assert stats.chi2_contingency(table).pvalue > 1e-3


def test_exact_sampler_is_seeded_and_bounds_its_memory(monkeypatch):
    monkeypatch.setattr(info_drop_fast, '_DRAWS_PER_CHUNK', 100)  # a chunk per sample
    distribution = skewed_distribution(samples=3)
    masks = [sample_info_drop_mask(distribution, 4, 1.0, 'multinomial', torch.Generator().manual_seed(7))
             for _ in range(2)]
    assert torch.equal(masks[0], masks[1])
    assert (~masks[0]).flatten(2).sum(-1).max() <= 64 and (~masks[0][:, :, 0, 0]).sum() == 0


def test_sampling_modes_agree_in_distribution():
    distribution = fixed_distribution(seed=3)
    means = [(~sample_info_drop_mask(distribution, 20000, 1.5, mode, torch.Generator().manual_seed(2))).float().mean()
             for mode in ('bernoulli', 'multinomial')]
    assert abs(means[0] - means[1]) < 0.01


def stripes_and_edge_image(size=64):
    """Left half: fine vertical stripes (period 2, amplitude 0.3); right half flat, with a strong
    vertical step edge (0.1 | 0.9) at column 48: texture fainter than the shape's contrast."""
    img = torch.empty(size, size)
    img[:, :size // 2] = 0.35 + 0.3 * (torch.arange(size // 2) % 2).float()
    img[:, size // 2:3 * size // 4] = 0.1
    img[:, 3 * size // 4:] = 0.9
    return img.expand(1, 3, size, size).clone()


def region_drop_frequencies(temperature, rows=4000):
    image = stripes_and_edge_image()
    info = self_information(image, 3, 1, 1, radius=3, num_offsets=None)
    distribution = drop_distribution(info, temperature)
    mask = sample_info_drop_mask(distribution, rows, 1.5, 'bernoulli', torch.Generator().manual_seed(0))
    dropped = 1.0 - mask.float().mean(dim=1)[0]  # (H, W)
    inner = slice(6, 58)  # away from the zero-padded border ring
    return {
        'stripes': dropped[inner, 6:26].mean().item(),
        'flat': torch.cat([dropped[inner, 38:44], dropped[inner, 52:58]], 1).mean().item(),
        'edge': dropped[inner, 47:49].mean().item(),
        'halves_border': dropped[inner, 31:33].mean().item(),
    }


def test_texture_and_flat_are_dropped_far_more_than_the_edge():
    freq = region_drop_frequencies(temperature=0.5)
    assert freq["stripes"] > 3 * freq["edge"]
    assert freq["flat"] > 3 * freq["edge"]
    assert freq['flat'] > freq['stripes']  # flat is the most predictable of all


def test_low_temperature_concentrates_drops_on_the_most_predictable_patches():
    freq = region_drop_frequencies(temperature=0.03)
    assert freq['flat'] > 0.5
    assert freq['edge'] < 1e-3 and freq['stripes'] < 1e-3


def stem_inputs(batch=4):
    torch.manual_seed(0)
    return torch.randn(batch, 3, 64, 64), torch.randn(batch, 16, 16, 16)


STEM = dict(kernel_size=7, stride=2, padding=3, pool_kernel_size=3, pool_stride=2, pool_padding=1)


def test_eval_modes():
    x, y = stem_inputs()
    assert info_drop(x, y, **STEM, training=False) is y
    expected = info_drop(x, y, **STEM, eval_mode='expected', num_offsets=None, training=False)
    info = self_information(x, 7, 2, 3, num_offsets=None)
    keep = keep_probability(drop_distribution(info, 0.03, 3, 2, 1), 1.5)
    torch.testing.assert_close(expected, y * keep)
    sampled = info_drop(x, y, **STEM, eval_mode='sample', training=False)
    assert ((sampled == 0) | (sampled == y)).all() and (sampled == 0).any()


def test_module_eval_is_identity_and_train_masks():
    x, y = stem_inputs()
    layer = InfoDrop(**STEM)
    assert layer.eval()(x, y) is y
    out = layer.train()(x, y)
    dropped = out == 0
    assert dropped.any() and torch.equal(out[~dropped], y[~dropped])
    layer.enabled = False
    assert layer(x, y) is y


def test_mask_carries_no_gradient_and_kept_units_get_gradient():
    x, y = stem_inputs()
    x.requires_grad_(True)
    y.requires_grad_(True)
    out = InfoDrop(**STEM).train()(x, y)
    out.sum().backward()
    assert x.grad is None  # the mask is built under no_grad
    kept = out != 0
    assert torch.equal(y.grad, kept.float())


def test_seeded_determinism():
    x, y = stem_inputs()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(InfoDrop(**STEM).train()(x, y))
    assert torch.equal(*outs)
    a = info_drop(x, y, **STEM, training=True, generator=torch.Generator().manual_seed(3))
    b = info_drop(x, y, **STEM, training=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_channels_last_fp16_and_autocast(sampling):
    x, y = stem_inputs()
    layer = InfoDrop(**STEM, sampling=sampling).train()
    y_cl = y.contiguous(memory_format=torch.channels_last)
    out = layer(x, y_cl)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out[out != 0], y_cl[out != 0])
    half = layer(x.half(), y.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        conv = torch.nn.Conv2d(3, 16, 7, 2, 3)
        pooled = torch.nn.functional.max_pool2d(conv(x), 3, 2, 1)
        out = layer(x, pooled)
    assert out.dtype == pooled.dtype and torch.isfinite(out).all()


def test_batch_of_one():
    x, y = stem_inputs(batch=1)
    out = InfoDrop(**STEM).train()(x, y)
    assert out.shape == y.shape and (out == 0).any()


def test_zero_drop_rate_keeps_everything():
    x, y = stem_inputs()
    for sampling in ('bernoulli', 'multinomial'):
        assert torch.equal(InfoDrop(**STEM, drop_rate=0.0, sampling=sampling).train()(x, y), y)


def test_geometry_mismatch_is_a_clear_error():
    x, y = stem_inputs()
    with pytest.raises(ValueError, match='drop distribution has shape'):
        InfoDrop(7, 2, 3).train()(x, y)  # no pool geometry: 32x32 distribution, 16x16 y


@pytest.mark.parametrize('kwargs, message', [
    (dict(temperature=0.0), 'temperature'),
    (dict(temperature=float('inf')), 'temperature'),
    (dict(drop_rate=-0.1), 'drop_rate'),
    (dict(sampling='gumbel'), 'sampling'),
    (dict(eval_mode='mean'), 'eval_mode'),
    (dict(radius=1.5), 'radius'),
])
def test_bad_module_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InfoDrop(3, **kwargs)


def test_extra_repr_names_the_settings():
    text = repr(InfoDrop(**STEM))
    for word in ('kernel_size=(7, 7)', 'pool_kernel_size=(3, 3)', 'temperature=0.03', "sampling='bernoulli'"):
        assert word in text


def test_low_temperature_has_no_underflow():
    info = self_information(torch.randn(2, 3, 32, 32), 3, 1, 1)
    for temperature in (1e-4, 0.03, 100.0):
        distribution = drop_distribution(info, temperature)
        assert torch.isfinite(distribution).all()
        assert torch.allclose(distribution.flatten(1).sum(1), torch.ones(2))
        assert math.isfinite(keep_probability(distribution, 1.5).sum().item())


POOLS = {'no pool': (None, None, 0), 'a stem max-pool 3/2/1': (3, 2, 1),
         'anisotropic': ((3, 2), (2, 1), (1, 0)), 'stride defaults to the kernel': (2, None, 0)}


@pytest.mark.parametrize('pool', list(POOLS.values()), ids=list(POOLS))
@pytest.mark.parametrize('temperature, drop_rate', [(0.03, 1.5), (0.5, 0.1), (1e-3, 1.5)])
def test_drop_distribution_and_keep_probability_match_the_reference(pool, temperature, drop_rate):
    """Steps 5-6: P (softmax of the min-pooled -I / T) and (1 - P)^m against the reference's loops, at the
    released temperatures and a cold one (P near 1 at the least informative position)."""
    information = 3.0 * torch.rand(3, 1, 13, 11, generator=torch.Generator().manual_seed(8))
    got = drop_distribution(information, temperature, *pool)
    expected = reference.drop_distribution(information, temperature, *pool)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(keep_probability(got, drop_rate).double(),
                               reference.keep_probability(expected, drop_rate), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('sampling', ['bernoulli', 'multinomial'])
def test_the_expected_eval_mode_is_the_reference_end_to_end(sampling):
    """Steps 1-6 on a stem: ``eval_mode='expected'`` scales y by the reference's keep probability, computed from
    the reference's self-information of the same offsets (all 49), on the kernels and on the torch ops."""
    x = torch.randn(2, 3, 24, 20, generator=torch.Generator().manual_seed(9))
    y = torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(10))
    temperature = 0.1
    got = info_drop(x, y, **STEM, num_offsets=None, temperature=temperature, sampling=sampling,
                    eval_mode='expected')
    information = reference.self_information(x, reference.draw_offsets(3, None), 7, 2, 3)
    keep = reference.keep_probability(reference.drop_distribution(information, temperature, 3, 2, 1), 1.5)
    torch.testing.assert_close(got.double(), y.double() * keep, rtol=1e-3, atol=1e-6)


def test_masks_keep_at_the_reference_rate_on_a_real_map():
    """Both samplers on a map computed from an image: the share of dropped channels per position is the
    reference's 1 - (1 - P)^m (5 sigma per position, plus the bernoulli sampler's 2^-16 resolution)."""
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(11))
    information = self_information(x, 3, 1, 1, num_offsets=None)
    distribution = drop_distribution(information, 0.5)
    expected = 1 - reference.keep_probability(
        reference.drop_distribution(reference.self_information(x, reference.draw_offsets(3, None), 3, 1, 1), 0.5),
        0.05)[0, 0].float()
    channels = 6000
    sigma = torch.sqrt(expected * (1 - expected) / channels)
    for sampling in ('bernoulli', 'multinomial'):
        mask = sample_info_drop_mask(distribution, channels, 0.05, sampling, torch.Generator().manual_seed(12))
        frequency = (~mask[0]).float().mean(0)
        error = (frequency - expected).abs()
        assert (error <= 5 * sigma + 2 ** -15).all(), (sampling, error.max())
