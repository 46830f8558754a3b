"""The synthetic benchmark: determinism, labels, splits, files."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from timm_infodrop.cli import main
from timm_infodrop.data import SHAPES, SPLITS, TEXTURES, ShapesConfig, ShapesDataset, sample
from timm_infodrop.data.shapes import shape_mask


def test_generation_is_a_pure_function_of_seed_split_and_index():
    config = ShapesConfig()
    a = sample(config, 'train', 17)
    b = sample(config, 'train', 17)
    assert np.array_equal(a.image, b.image) and a.texture == b.texture
    assert not np.array_equal(sample(config, 'val', 17).image, a.image)
    assert not np.array_equal(sample(ShapesConfig(seed=1), 'train', 17).image, a.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.float32
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0


def test_labels_of_every_split():
    config = ShapesConfig()
    k = config.num_classes
    assert k >= 10 and len(set(config.shapes)) == len(set(config.textures)) == k
    n = 2000
    train = [sample(config, 'train', i) for i in range(n)]
    assert [s.shape for s in train] == [i % k for i in range(n)]  # balanced, shape is the label
    agree = np.mean([s.shape == s.texture for s in train])
    assert abs(agree - config.p_agree) < 4 * np.sqrt(config.p_agree * (1 - config.p_agree) / n)
    conflict = [sample(config, 'cue_conflict', i) for i in range(200)]
    assert all(s.shape != s.texture and s.label('cue_conflict') == s.shape for s in conflict)
    assert len({s.texture for s in conflict}) == k
    silhouette = sample(config, 'silhouette', 3)
    assert silhouette.texture is None and silhouette.label('silhouette') == 3
    texture_only = sample(config, 'texture_only', 4)
    assert texture_only.shape is None and texture_only.label('texture_only') == 4


def test_labels_without_images_match_the_samples():
    from timm_infodrop.data.shapes import sample_labels
    config = ShapesConfig()
    for split in SPLITS:
        for i in range(30):
            item = sample(config, split, i)
            assert sample_labels(config, split, i) == (item.shape, item.texture)


def test_silhouettes_are_flat_and_texture_only_has_no_object():
    config = ShapesConfig()
    image = sample(config, 'silhouette', 0).image
    assert len(np.unique(image.reshape(-1, 3).round(3), axis=0)) < 200  # two colours and their anti-aliased edge
    texture_only = sample(config, 'texture_only', 0).image
    # one base colour plus the +-amplitude texture: exactly two colours (values clipped at most)
    assert len(np.unique(texture_only.reshape(-1, 3).round(5), axis=0)) <= 2


@pytest.mark.parametrize('name', list(SHAPES))
def test_every_silhouette_is_a_sizeable_distinct_object(name):
    mask = shape_mask(name, 64, (32, 32), 20, 0.0)
    assert 0.08 < mask.mean() < 0.6  # of a 64 px image, for a 20 px radius
    others = [shape_mask(other, 64, (32, 32), 20, 0.0) for other in SHAPES if other != name]
    assert all(np.abs(mask - other).mean() > 0.02 for other in others)


def test_textures_differ_and_the_config_is_validated():
    rng = np.random.default_rng(0)
    from timm_infodrop.data.shapes import texture
    patterns = {name: texture(name, 64, 4.0, rng) for name in TEXTURES}
    assert all(set(np.unique(p)) <= {-1.0, 1.0} for p in patterns.values())
    with pytest.raises(ValueError, match='p_agree'):
        ShapesConfig(p_agree=1.5)
    with pytest.raises(ValueError, match='unknown'):
        ShapesConfig(shapes=('circle', 'blob'), textures=('dots', 'grid'))


def test_dataset_gives_tensors_and_labels():
    dataset = ShapesDataset('texture_only', 20)
    image, label = dataset[13]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and label == 13 % 10
    assert dataset.classes == list(TEXTURES)
    with pytest.raises(IndexError):
        dataset[20]


def test_make_data_writes_image_folders_and_metadata(tmp_path):
    from torchvision.datasets import ImageFolder
    out = tmp_path / 'bench'
    sizes = ['--train', '30', '--val', '20', '--cue-conflict', '20', '--silhouette', '10', '--texture-only', '10']
    assert main(['make-data', str(out), '--size', '32', *sizes, '--set', 'p_agree=0.5']) == 0
    for split in SPLITS:
        folder = ImageFolder(out / split)
        metadata = json.loads((out / split / 'metadata.json').read_text())
        assert len(folder) == len(metadata['samples'])
        assert (out / f'contact_{split}.png').stat().st_size > 0
    conflict = json.loads((out / 'cue_conflict' / 'metadata.json').read_text())
    first = conflict['samples'][0]
    assert first['file'].startswith(conflict['shapes'][first['shape']] + '/') and first['shape'] != first['texture']
    with Image.open(out / 'train' / 'circle' / '000000.png') as image:
        assert image.size == (32, 32)
    assert json.loads((out / 'benchmark.json').read_text())['config']['p_agree'] == 0.5
    assert main(['make-data', str(out)]) == 2  # exists
    assert main(['make-data', str(tmp_path / 'x'), '--set', 'p_agree=lots']) == 2


def test_make_benchmark_is_the_library_route(tmp_path):
    """timm_infodrop.data.benchmark.make_benchmark: what make-data writes, the sizes filled from the defaults'
    order, the project's errors, nothing half-written."""
    from timm_infodrop.data.benchmark import DEFAULT_SPLIT_SIZES, make_benchmark
    from timm_infodrop.errors import ConfigError, OutputError

    sizes = {'train': 3, 'val': 2, 'cue_conflict': 2, 'silhouette': 1, 'texture_only': 1}
    out = make_benchmark(tmp_path / 'b', ShapesConfig(size=16), sizes, progress=False)
    assert json.loads((out / 'benchmark.json').read_text())['sizes'] == sizes
    assert main(['make-data', str(tmp_path / 'c'), '--size', '16', '--train', '3', '--val', '2', '--cue-conflict', '2',
                 '--silhouette', '1', '--texture-only', '1']) == 0
    digest = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}  # noqa: E731
    assert digest(out) == digest(tmp_path / 'c')
    with pytest.raises(OutputError, match='exists'):
        make_benchmark(out, sizes=sizes)
    with pytest.raises(ConfigError, match='--val must be >= 1, got 0'):
        make_benchmark(tmp_path / 'd', sizes={'val': 0})
    with pytest.raises(ConfigError, match='unknown splits'):
        make_benchmark(tmp_path / 'd', sizes={'test': 1})
    assert not (tmp_path / 'd').exists() and list(DEFAULT_SPLIT_SIZES) == list(SPLITS)


def test_make_data_touches_only_the_asked_sizes_and_the_evaluation_splits_follow_val(tmp_path, capsys):
    """--train 20 --val 10 writes 10 images into each evaluation split (not the 1000 defaults), and says so;
    a split given explicitly keeps its size; with nothing given, the documented defaults."""
    from timm_infodrop.data.benchmark import DEFAULT_SPLIT_SIZES, split_sizes

    assert main(['make-data', str(tmp_path / 'd'), '--size', '16', '--train', '20', '--val', '10']) == 0
    sizes = json.loads((tmp_path / 'd' / 'benchmark.json').read_text())['sizes']
    assert sizes == {'train': 20, 'val': 10, 'cue_conflict': 10, 'silhouette': 10, 'texture_only': 10}
    for split, count in sizes.items():
        assert len(list((tmp_path / 'd' / split).rglob('*.png'))) == count, split
    assert 'train 20, val 10, cue_conflict 10, silhouette 10, texture_only 10' in capsys.readouterr().out
    assert split_sizes({'val': 7, 'silhouette': 3}) == {'train': DEFAULT_SPLIT_SIZES['train'], 'val': 7,
                                                        'cue_conflict': 7, 'silhouette': 3, 'texture_only': 7}
    assert split_sizes() == DEFAULT_SPLIT_SIZES == split_sizes({'val': DEFAULT_SPLIT_SIZES['val']})  # they follow val


def test_contact_sheets_label_every_row_with_its_class():
    """Each row of a contact sheet carries its class name at the left: a label strip beside the grid whose rows
    differ from one another (the names are drawn), over a white background."""
    from timm_infodrop.data.benchmark import class_names, contact_sheet

    config = ShapesConfig(size=16)
    for split in ('train', 'texture_only'):
        sheet = np.asarray(contact_sheet(config, split, per_class=3)).astype(int)
        grid_width, row = 3 * (16 + 2), 16 + 2
        assert sheet.shape[1] > grid_width and sheet.shape[0] == config.num_classes * row
        strip = sheet[:, :sheet.shape[1] - grid_width]
        rows = [strip[r * row:(r + 1) * row] for r in range(config.num_classes)]
        assert all((r < 128).any() for r in rows), split  # dark text in every row
        assert len({r.tobytes() for r in rows}) == len(class_names(config, split)), split  # each its own name


def test_silhouette_mask_marks_the_flat_object():
    from timm_infodrop.data.shapes import ShapesConfig, sample, silhouette_mask

    config = ShapesConfig()
    for index in range(5):
        mask = silhouette_mask(config, 'silhouette', index)
        image = sample(config, 'silhouette', index).image
        inside, outside = image[mask > 0.99], image[mask < 0.01]
        assert len(inside) > 50 and len(outside) > 50
        assert np.ptp(inside, axis=0).max() < 1e-6 and np.ptp(outside, axis=0).max() < 1e-6  # both flat
        assert np.abs(inside.mean(0) - outside.mean(0)).max() > 0.1
    assert not silhouette_mask(config, 'texture_only', 0).any()
