"""Evaluation: the shape-bias formula, the corruption loop, PGD."""
import numpy as np
import pytest
import torch
from torch import nn

from timm_infodrop.data import ShapesConfig, ShapesDataset
from timm_infodrop.eval import shape_bias, top1
from timm_infodrop.eval.robustness import corrupt_images, corruption_errors, evaluate_corruptions, pgd_top1


def test_shape_bias_on_hand_made_predictions():
    shape = [0, 1, 2, 3, 4]
    texture = [1, 2, 3, 4, 4]   # the last image has agreeing cues: dropped
    pred = [0, 2, 2, 9, 0]      # shape hit, texture hit, shape hit, neither (ignored), (dropped)
    assert shape_bias(pred, shape, texture) == pytest.approx(2 / 3)
    assert shape_bias([1, 2], [0, 1], [1, 2]) == 0.0
    assert np.isnan(shape_bias([7], [0], [1]))
    with pytest.raises(ValueError, match='same length'):
        shape_bias([0], [0, 1], [1, 2])
    assert top1([1, 2, 3], [1, 2, 0]) == pytest.approx(2 / 3)


def _images(n=6, size=32):
    dataset = ShapesDataset('val', n, ShapesConfig(size=size))
    images = np.stack([(dataset.sample(i).image * 255).round().astype(np.uint8) for i in range(n)])
    labels = np.array([dataset.sample(i).shape for i in range(n)])
    return images, labels


def test_corruptions_are_seeded_and_grow_with_severity():
    images, _ = _images()
    a = corrupt_images(images, 'gaussian_noise', 1, seed=0)
    assert a.shape == images.shape and a.dtype == np.uint8
    assert np.array_equal(a, corrupt_images(images, 'gaussian_noise', 1, seed=0))
    assert not np.array_equal(a, corrupt_images(images, 'gaussian_noise', 1, seed=1))
    mild = np.abs(a.astype(float) - images).mean()
    strong = np.abs(corrupt_images(images, 'gaussian_noise', 5, seed=0).astype(float) - images).mean()
    assert strong > 2 * mild > 0
    with pytest.raises(ValueError, match='unknown corruption'):
        corrupt_images(images, 'rain', 1)
    with pytest.raises(ValueError, match='32x32'):
        corrupt_images(images[:, :16, :16], 'gaussian_noise', 1)


def test_corruption_loop_and_mce():
    images, labels = _images()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    results = evaluate_corruptions(model, images, labels, lambda x: x, names=['brightness', 'gaussian_noise'],
                                   severities=(1, 5))
    assert set(results['per_corruption']) == {'brightness', 'gaussian_noise'}
    assert set(results['per_corruption']['brightness']) == {'1', '5'}
    values = [v for row in results['per_corruption'].values() for v in row.values()]
    assert results['mean_top1'] == pytest.approx(np.mean(values))
    errors = corruption_errors(results, results)
    assert all(ce == pytest.approx(1.0) or np.isnan(ce) for ce in errors['ce'].values())


def test_pgd_lowers_the_accuracy_of_a_trained_model():
    torch.manual_seed(0)
    config = ShapesConfig(size=32, p_agree=1.0)
    dataset = ShapesDataset('train', 400, config)
    x = torch.stack([dataset[i][0] for i in range(400)])
    y = torch.tensor([dataset[i][1] for i in range(400)])
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        index = torch.randint(0, 400, (64,))
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    identity = lambda t: t  # noqa: E731
    with torch.no_grad():
        clean = (model(x[:128]).argmax(1) == y[:128]).float().mean().item()
    attacked = pgd_top1(model, x[:128], y[:128], identity, steps=10)
    assert clean > 0.3
    assert attacked < clean - 0.2


@pytest.mark.slow
def test_eval_command_writes_the_documented_results(tmp_path):
    import json
    from timm_infodrop.cli import main
    data = tmp_path / 'bench'
    sizes = ['--train', '10', '--val', '20', '--cue-conflict', '20', '--silhouette', '10', '--texture-only', '10']
    assert main(['make-data', str(data), '--size', '32', *sizes]) == 0
    out = tmp_path / 'eval'
    args = ['eval', '--model', 'resnet18_infodrop', '--data', str(data), '--out', str(out),
            '--corruption-images', '4', '--pgd-images', '4']
    assert main(args) == 0
    results = json.loads((out / 'results.json').read_text())
    for key in ('top1', 'silhouette_top1', 'texture_only_top1', 'pgd_top1'):
        assert 0.0 <= results[key] <= 1.0
    assert 0.0 <= results['shape_bias'] <= 1.0 or np.isnan(results['shape_bias'])
    assert len(results['corruption']['per_corruption']) == 15
    assert all(len(row) == 5 for row in results['corruption']['per_corruption'].values())
    assert '| val top-1 |' in (out / 'results.md').read_text()
    for picture in ('severity.png', 'saliency.png', 'shape_bias.png'):
        assert (out / picture).stat().st_size > 1000, picture
    baseline = tmp_path / 'baseline.json'
    baseline.write_text((out / 'results.json').read_text())
    assert main(args[:-4] + ['--corruption-images', '4', '--pgd-images', '4', '--baseline', str(baseline),
                             '--overwrite']) == 0
    assert json.loads((out / 'results.json').read_text())['corruption']['mce'] == pytest.approx(1.0)


def test_every_corruption_is_seeded():
    from imagecorruptions import get_corruption_names
    images, _ = _images(n=2)
    for name in get_corruption_names('all'):
        first = corrupt_images(images, name, 3, seed=5)
        assert np.array_equal(first, corrupt_images(images, name, 3, seed=5)), name


class OneQuadrant(nn.Module):
    """A CNN that sees only the top-left quadrant of its input: class 0's logit grows with that quadrant's
    brightness through a nonlinearity, class 1's is constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.zero_()

    def forward(self, x):
        h, w = x.shape[-2:]
        seen = torch.relu(self.conv(x[..., :h // 2, :w // 2])).pow(2).mean((1, 2, 3))
        return torch.stack([seen, torch.full_like(seen, -1.0)], 1)


@pytest.mark.parametrize('method,size', [('occlusion', 64), ('occlusion', 128), ('integrated_gradients', 64),
                                         ('smoothgrad_sq', 64)])
def test_attribution_lands_in_the_quadrant_the_model_sees(method, size):
    """A model that reads only the top-left quadrant: (almost) all attribution there, none outside it but for
    the occluding window's reach (an occluder overlapping the quadrant's edge covers part of it)."""
    from timm_infodrop.eval.saliency import attribution, occlusion_geometry

    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    normalize = lambda t: (t - 0.45) / 0.25  # noqa: E731
    maps = attribution(OneQuadrant(), x, normalize, method, samples=8)
    assert maps.shape == (3, size, size) and maps.min() >= 0 and maps.max() <= 1
    half = size // 2
    reach = half + (occlusion_geometry(size, size)[0] - 1 if method == 'occlusion' else 0)
    total = maps.sum((1, 2))
    assert torch.all(maps[:, :reach, :reach].sum((1, 2)) / total > 0.999)
    assert torch.all(maps[:, :half, :half].sum((1, 2)) / total > 0.75), maps[:, :half, :half].sum((1, 2)) / total


def test_the_occluder_grows_with_images_over_64_px():
    from timm_infodrop.eval.saliency import OCCLUSION_STRIDE, OCCLUSION_WINDOW, occlusion_geometry

    assert occlusion_geometry(64, 64) == occlusion_geometry(32, 48) == (OCCLUSION_WINDOW, OCCLUSION_STRIDE)
    assert occlusion_geometry(128, 160) == (2 * OCCLUSION_WINDOW, 2 * OCCLUSION_STRIDE)
    assert occlusion_geometry(8, 8) == (8, OCCLUSION_STRIDE)  # never wider than the image


class FolderOracle(nn.Module):
    """Answers the ImageFolder class of every image it has seen in a data folder (looked up by pixels)."""

    def __init__(self, root, splits=('val', 'silhouette', 'cue_conflict')):
        super().__init__()
        from PIL import Image
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        from torchvision.datasets import ImageFolder
        self.mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
        self.answers, classes = {}, None
        for split in splits:
            folder = ImageFolder(str(root / split))
            classes = classes or folder.classes
            for path, label in folder.samples:
                self.answers[np.asarray(Image.open(path).convert('RGB')).tobytes()] = label
        self.pretrained_cfg = {'label_names': classes}
        self.num_classes = len(classes)

    def forward(self, x):
        pixels = ((x * self.std + self.mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        logits = torch.zeros(x.shape[0], self.num_classes)
        for i, image in enumerate(pixels.numpy()):
            logits[i, self.answers.get(np.ascontiguousarray(image).tobytes(), 0)] = 1.0
        return logits + 0 * x.sum(dim=(1, 2, 3))[:, None]  # differentiable, for PGD


def test_folder_evaluation_speaks_the_imagefolder_class_order(tmp_path):
    """A model that answers each image's ImageFolder class scores 1.0 and shape bias 1.0."""
    from timm_infodrop.cli import main
    from timm_infodrop.eval.suite import evaluate_folder, model_label_map

    root = tmp_path / 'data'
    assert main(['make-data', str(root), '--size', '32', '--train', '10', '--val', '40', '--cue-conflict', '30',
                 '--silhouette', '20', '--texture-only', '10']) == 0
    config = ShapesConfig()
    assert list(config.shapes) != sorted(config.shapes)  # else the test could not tell the orders apart
    oracle = FolderOracle(root)
    assert model_label_map(oracle, config.shapes).tolist() == [sorted(config.shapes).index(s) for s in config.shapes]
    results = evaluate_folder(oracle, root, corruption_images=2, pgd_images=2)
    assert results['top1'] == 1.0 and results['silhouette_top1'] == 1.0 and results['shape_bias'] == 1.0
    oracle.pretrained_cfg = {'label_names': ['a', 'b']}
    with pytest.raises(ValueError, match='lack the benchmark'):
        evaluate_folder(oracle, root, corruption_images=2, pgd_images=2)


def _model_folder(folder, label_names=None, constant=None):
    """A timm model folder (config.json + model.safetensors) of a 2-class resnet18 at 32 px; ``constant``:
    zero the classifier and give that class the bias, so that it answers that class for every image."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model('resnet18', num_classes=2).eval()
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, 32, 32))
    if constant is not None:
        with torch.no_grad():
            model.fc.weight.zero_()
            model.fc.bias.copy_(torch.tensor([1.0, 0.0] if constant == 0 else [0.0, 1.0]))
    save_for_hf(model, str(folder), model_config={'label_names': label_names} if label_names else None,
                safe_serialization=True)
    return f'local-dir:{folder}'


@pytest.fixture
def domain_folder(tmp_path, monkeypatch):
    """One domain: 3 'noise' images and 1 'square' image, 32 px (the decode cache in tmp_path)."""
    from PIL import Image

    monkeypatch.setenv('TIMM_INFODROP_CACHE', str(tmp_path / 'cache'))
    root = tmp_path / 'sketch'
    rng = np.random.default_rng(0)
    for label, count in (('noise', 3), ('square', 1)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            image = (rng.random((32, 32, 3)) * 120).astype(np.uint8)
            if label == 'square':
                image[8:24, 8:24] = 255
            Image.fromarray(image).save(root / label / f'{i}.png')
    return root


def test_eval_on_a_domain_folder_scores_as_a_hand_computation(tmp_path, domain_folder, capsys):
    """`eval --domain-dir`: the class indices are the model's label names (not the sorted folder names), and
    top-1 is what the model's own preprocessing and argmax give, image by image."""
    import json

    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    from timm_infodrop.cli import main

    # answers its class 0, 'square' (the one square image): top-1 1/4, per-class (1 + 0) / 2
    checkpoint = _model_folder(tmp_path / 'square_first', ['square', 'noise'], constant=0)
    out = tmp_path / 'eval'
    assert main(['eval', '--checkpoint', checkpoint, '--domain-dir', str(domain_folder), '--out', str(out)]) == 0
    results = json.loads((out / 'results.json').read_text())
    assert results['top1'] == pytest.approx(1 / 4) and results['mean_class_top1'] == pytest.approx(1 / 2)
    assert results['images'] == 4 and results['classes'] == ['square', 'noise']
    printed = capsys.readouterr().out
    assert 'top-1 0.2500, mean class top-1 0.5000 on 4 images of 2 classes (square, noise)' in printed
    assert f'wrote {out}' in printed
    # without label names: the sorted folder names, class 0 is 'noise'
    checkpoint = _model_folder(tmp_path / 'unnamed', constant=0)
    assert main(['eval', '--checkpoint', checkpoint, '--domain-dir', str(domain_folder), '--out', str(out),
                 '--overwrite']) == 0
    results = json.loads((out / 'results.json').read_text())
    assert results['top1'] == pytest.approx(3 / 4) and results['classes'] == ['noise', 'square']
    # a model that is not constant: its argmax on each image under its own eval transform
    checkpoint = _model_folder(tmp_path / 'random', ['square', 'noise'])
    model = timm.create_model(checkpoint, pretrained=True).eval()
    transform = create_transform(**resolve_data_config(model=model))
    labels = {'square': 0, 'noise': 1}
    files = sorted(domain_folder.rglob('*.png'))
    with torch.no_grad():
        predicted = model(torch.stack([transform(Image.open(f).convert('RGB')) for f in files])).argmax(1).tolist()
    hits = [p == labels[f.parent.name] for p, f in zip(predicted, files)]
    per_class = [np.mean([h for h, f in zip(hits, files) if f.parent.name == c]) for c in labels]
    assert main(['eval', '--checkpoint', checkpoint, '--domain-dir', str(domain_folder), '--out', str(out),
                 '--overwrite']) == 0
    results = json.loads((out / 'results.json').read_text())
    assert results['top1'] == pytest.approx(np.mean(hits)) and results['mean_class_top1'] == pytest.approx(np.mean(per_class))


def test_eval_domain_folder_refuses_classes_the_model_lacks_and_takes_one_data_source(tmp_path, domain_folder, capsys):
    from timm_infodrop.cli import main
    from timm_infodrop.errors import DataError
    from timm_infodrop.eval.domain_folder import evaluate_domain_folder

    checkpoint = _model_folder(tmp_path / 'other', ['cat', 'noise'])
    out = tmp_path / 'eval'
    assert main(['eval', '--checkpoint', checkpoint, '--domain-dir', str(domain_folder), '--out', str(out)]) == 2
    assert "the class folders ['square'] are not classes of the model ['cat', 'noise']" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(DataError, match='no class folders'):
        evaluate_domain_folder(None, domain_folder / 'noise', out, checkpoint=checkpoint)
    for argv in ([], ['--data', str(tmp_path), '--domain-dir', str(domain_folder)]):
        with pytest.raises(SystemExit) as exit:
            main(['eval', '--checkpoint', checkpoint, '--out', str(out), *argv])
        assert exit.value.code == 2
    assert main(['eval', '--checkpoint', checkpoint, '--domain-dir', str(domain_folder), '--out', str(out),
                 '--baseline', str(tmp_path / 'r.json')]) == 2
    assert '--baseline' in capsys.readouterr().err
