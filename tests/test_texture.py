"""Texture suppression: fine texture goes, edges stay, shapes and dtypes kept, bad input refused."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from timm_infodrop.data.texture import METHODS, TextureSuppression, anisotropic_diffusion

SIZE = 64


def stripes(period: int, amplitude: float = 0.1) -> torch.Tensor:
    """Vertical square-wave stripes around grey 0.5, (3, SIZE, SIZE)."""
    x = torch.arange(SIZE, dtype=torch.float32)
    row = 0.5 + amplitude * torch.sign(torch.sin(2 * math.pi * (x + 0.5) / period))
    return row.expand(3, SIZE, SIZE).clone()


def step_edge(low: float = 0.25, high: float = 0.75) -> torch.Tensor:
    image = torch.full((3, SIZE, SIZE), low)
    image[..., SIZE // 2:] = high
    return image


def high_frequency_energy(image: torch.Tensor) -> float:
    """Spectral energy of the grey image above 1/8 cycles per pixel (DC removed)."""
    grey = image.mean(0)
    spectrum = torch.fft.fft2(grey - grey.mean()).abs().square()
    fy, fx = torch.fft.fftfreq(SIZE), torch.fft.fftfreq(SIZE)
    return spectrum[(fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() > 1 / 8].sum().item()


def peak_gradient(image: torch.Tensor) -> float:
    grey = image.mean(0)
    return (grey[:, 1:] - grey[:, :-1]).abs().max().item()


@pytest.mark.parametrize('method', sorted(METHODS))
def test_fine_stripes_go_and_a_step_edge_stays(method):
    fn = METHODS[method]
    for period in (2, 3, 4, 6):
        image = stripes(period)
        kept = high_frequency_energy(fn(image)) / high_frequency_energy(image)
        assert kept <= 0.2, (method, period, kept)
    edge = step_edge()
    assert peak_gradient(fn(edge)) >= 0.5 * peak_gradient(edge), method
    # and a blur would fail the edge half: the test can tell the two apart
    blurred = torch.nn.functional.avg_pool2d(edge[None], 9, 1, 4, count_include_pad=False)[0]
    assert peak_gradient(blurred) < 0.5 * peak_gradient(edge)


@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('shape', [(3, 16, 20), (2, 3, 16, 20), (1, 16, 20), (2, 1, 16, 20), (0, 3, 8, 8)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_shape_and_dtype_are_kept(method, shape, dtype):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = METHODS[method](image)
    assert out.shape == image.shape and out.dtype == dtype
    if out.numel():
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_batched_equals_one_by_one():
    images = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    for fn in METHODS.values():
        batched = fn(images)
        for i in range(3):
            assert torch.allclose(batched[i], fn(images[i]), atol=1e-6)


def test_zero_iterations_is_identity_and_flat_images_stay_flat():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    assert torch.equal(anisotropic_diffusion(image, iterations=0), image)
    flat = torch.full((3, 16, 16), 0.3)
    assert torch.allclose(anisotropic_diffusion(flat), flat)


@pytest.mark.parametrize('method', sorted(METHODS))
def test_bad_images_are_refused(method):
    fn = METHODS[method]
    cases = [(torch.zeros(3, 8, 8, dtype=torch.uint8), 'float tensor'), (torch.zeros(8, 8), '(C, H, W)'),
             (torch.zeros(4, 8, 8), '1 or 3 channels'), (torch.full((3, 8, 8), 2.0), '[0, 1]'),
             (torch.full((3, 8, 8), float('nan')), 'non-finite'), (np.zeros((8, 8, 3)), 'torch.Tensor')]
    for image, message in cases:
        with pytest.raises((TypeError, ValueError), match=message.replace('[', r'\[').replace('(', r'\(').replace(')', r'\)')):
            fn(image)


def test_bad_parameters_are_refused():
    image = torch.rand(3, 8, 8)
    for kwargs in (dict(gamma=0.3), dict(kappa=0), dict(iterations=-1), dict(conduction='linear')):
        with pytest.raises(ValueError):
            anisotropic_diffusion(image, **kwargs)
    with pytest.raises(ValueError, match='odd'):
        METHODS['cartoon'](image, median=4)
    with pytest.raises(ValueError, match='sigma'):
        METHODS['bilateral'](image, sigma_color=0)


def test_transform_takes_pil_and_tensor():
    array = (stripes(4).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for method in METHODS:
        transform = TextureSuppression(method)
        out = transform(Image.fromarray(array))
        assert isinstance(out, Image.Image) and out.mode == 'RGB' and out.size == (SIZE, SIZE)
        assert np.asarray(out).std() < 0.5 * array.std()
        grey = transform(Image.fromarray(array[..., 0]))
        assert grey.mode == 'L' and grey.size == (SIZE, SIZE)
        assert torch.is_tensor(transform(stripes(4)))
    image = Image.fromarray(array)
    assert TextureSuppression('anisotropic', p=0.0)(image) is image
    assert 'anisotropic' in repr(TextureSuppression('anisotropic', iterations=3))
    with pytest.raises(ValueError, match='unknown texture-suppression method'):
        TextureSuppression('blur')
    with pytest.raises(ValueError, match='p must be'):
        TextureSuppression('bilateral', p=1.5)


@pytest.fixture(scope='module')
def split(tmp_path_factory):
    from timm_infodrop.cli import main

    root = tmp_path_factory.mktemp('tex') / 'data'
    assert main(['make-data', str(root), '--size', '32', '--train', '20', '--val', '10', '--cue-conflict', '2',
                 '--silhouette', '2', '--texture-only', '2']) == 0
    return root / 'train'


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file())


def test_cli_filters_or_doubles_an_image_folder(split, tmp_path):
    from timm_infodrop.cli import main

    before = {p: p.read_bytes() for p in split.rglob('*') if p.is_file()}
    assert main(['suppress-texture', '--method', 'anisotropic', '--in', str(split), '--out', str(tmp_path / 'a'),
                 '--batch-size', '7']) == 0
    assert _tree(tmp_path / 'a') == _tree(split)
    some = next(p for p in split.rglob('*.png'))
    original = torch.from_numpy(np.asarray(Image.open(some), dtype=np.float32) / 255).permute(2, 0, 1)
    written = np.asarray(Image.open(tmp_path / 'a' / some.relative_to(split)), dtype=np.float32) / 255
    expected = anisotropic_diffusion(original).permute(1, 2, 0).numpy()
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6  # the filter, up to 8-bit rounding
    assert main(['suppress-texture', '--method', 'cartoon', '--in', str(split), '--out', str(tmp_path / 'd'),
                 '--double', '--preview', str(tmp_path / 'grid.png')]) == 0
    assert Image.open(tmp_path / 'grid.png').size[0] > 300
    doubled = _tree(tmp_path / 'd')
    images = [p for p in _tree(split) if p.endswith('.png')]
    assert len([p for p in doubled if p.endswith('_cartoon.png')]) == len(images)
    assert set(_tree(split)) <= set(doubled)
    assert {p: p.read_bytes() for p in split.rglob('*') if p.is_file()} == before  # the input is untouched


def test_cli_refuses_bad_folders(split, tmp_path, capsys):
    from timm_infodrop.cli import main

    (tmp_path / 'empty').mkdir()
    (tmp_path / 'junk').mkdir()
    (tmp_path / 'junk' / 'a.png').write_bytes(b'not a png')
    cases = [(['--in', str(tmp_path / 'none'), '--out', str(tmp_path / 'o1')], 'is not a folder'),
             (['--in', str(split), '--out', str(split / 'inside')], 'is inside the input folder'),
             (['--in', str(split), '--out', str(split.parent), '--overwrite'], 'holds the input'),
             (['--in', str(tmp_path / 'empty'), '--out', str(tmp_path / 'o2')], 'holds no images'),
             (['--in', str(tmp_path / 'junk'), '--out', str(tmp_path / 'o3')], 'is not a readable image'),
             (['--in', str(split), '--out', str(tmp_path / 'empty')], 'pass --overwrite')]
    for args, message in cases:
        assert main(['suppress-texture', '--method', 'bilateral', *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / 'o3').exists()  # nothing half-written


def test_suppress_folder_is_the_library_route(split, tmp_path):
    """timm_infodrop.data.texture.suppress_folder without the CLI: the count it returns, the project's errors."""
    from timm_infodrop.data.texture import preview_texture_suppression, suppress_folder
    from timm_infodrop.errors import ConfigError, DataError

    assert suppress_folder(split, tmp_path / 'a', 'anisotropic', progress=False) == 20
    assert _tree(tmp_path / 'a') == _tree(split)
    with pytest.raises(ConfigError, match='--batch-size must be >= 1'):
        suppress_folder(split, tmp_path / 'b', 'anisotropic', batch_size=0)
    with pytest.raises(ConfigError, match='unknown texture-suppression method'):
        suppress_folder(split, tmp_path / 'b', 'blur')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='holds no images'):
        suppress_folder(tmp_path / 'empty', tmp_path / 'b', 'bilateral')
    assert not (tmp_path / 'b').exists()
    png = preview_texture_suppression(sorted(split.rglob('*.png'))[:2], tmp_path / 'grid.png')
    assert Image.open(png).size[0] > 100


def test_trainer_filters_training_images(split, tmp_path, monkeypatch):
    import timm_infodrop.data.texture as texture
    from timm_infodrop.cli import build_parser, main
    from timm_infodrop.cli.train import config_from_args
    from timm_infodrop.train import train

    calls = []
    original = texture.METHODS['bilateral']
    monkeypatch.setitem(texture.METHODS, 'bilateral', lambda img, **kw: calls.append(img.shape) or original(img, **kw))
    args = build_parser().parse_args(['train', '--data-dir', str(split.parent), '--output', str(tmp_path),
                                      '--experiment', 'tex', '--model', 'resnet18', '--img-size', '32', '-b', '4',
                                      '--no-aug', '-j', '0', '--epochs', '1', '--no-progress', '--seed', '0',
                                      '--texture-suppression', 'bilateral', '--texture-suppression-prob', '1.0'])
    train(config_from_args(args))
    assert len(calls) >= 20  # every training image, once per epoch
    assert main(['train', '--data-dir', str(split.parent), '--texture-suppression-prob', '2']) == 2


def test_transform_probability_follows_torch_seed():
    image = stripes(4)
    transform = TextureSuppression('anisotropic', p=0.5, iterations=2)

    def draws():
        torch.manual_seed(3)
        return [not torch.equal(transform(image), image) for _ in range(40)]

    first = draws()
    assert first == draws() and 10 <= sum(first) <= 30
