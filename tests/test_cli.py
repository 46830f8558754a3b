"""The command line: the infomap picture (its data and its handling of paths) and the FLOPs table."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from timm_infodrop.cli import main
from timm_infodrop.viz import builtin_image, compute_infomap, synthetic_image


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / 'synthetic.png'
    Image.fromarray((synthetic_image(64) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize('temperature', [0.03, 0.1])
def test_infomap_marks_the_edge_and_drops_the_texture(temperature):
    size = 128
    infomap = compute_infomap(synthetic_image(size), temperature=temperature, seed=1)
    quarter = size // 4
    assert infomap.information.shape == (size // 2, size // 2)
    assert infomap.drop_probability.shape == infomap.mask.shape == (quarter, quarter)
    # the edge at column 3/4 of the flat lower half, on the pooled grid (away from the borders)
    edge_column = (3 * size // 4) // 4
    lower = slice(quarter // 2 + 2, quarter - 2)
    edge = infomap.drop_probability[lower, edge_column - 1:edge_column + 1].mean()
    stripes = infomap.drop_probability[2:quarter // 2 - 2, 2:-2].mean()
    flat = infomap.drop_probability[lower, 2:edge_column - 3].mean()
    assert flat > 3 * edge
    if temperature >= 0.1:  # at T = 0.03 the flat area takes nearly all the drops
        assert stripes > 3 * edge
    assert infomap.information[size // 4 + 8:-4, (3 * size // 4) // 2].mean() > infomap.information[4:size // 4 - 4, 4:-4].mean()


def test_sampled_mask_follows_the_drop_probability():
    infomap = compute_infomap(synthetic_image(128), seed=3)
    expected = infomap.drop_probability.sum()
    dropped = (~infomap.mask).sum()
    sigma = np.sqrt((infomap.drop_probability * (1 - infomap.drop_probability)).sum())
    assert abs(dropped - expected) < 5 * sigma + 1


def test_infomap_is_seeded():
    a, b = (compute_infomap(synthetic_image(64), seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.information, b.information)


def test_builtin_image_is_a_square_rgb_image():
    image = builtin_image(96)
    assert image.shape == (96, 96, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01


def test_command_writes_a_png(tmp_path, image_file):
    out = tmp_path / 'sub' / 'map.png'
    assert main(['infomap', str(image_file), '-o', str(out), '--size', '64']) == 0
    with Image.open(out) as picture:
        assert picture.format == 'PNG' and picture.width > 4 * picture.height // 2
    assert [p.name for p in out.parent.iterdir()] == ['map.png']  # no temporary left behind


def test_command_refuses_to_clobber(tmp_path, image_file, capsys):
    out = tmp_path / 'map.png'
    out.write_bytes(b'keep me')
    assert main(['infomap', str(image_file), '-o', str(out), '--size', '64']) == 2
    assert out.read_bytes() == b'keep me'
    assert 'exists' in capsys.readouterr().err
    assert main(['infomap', str(image_file), '-o', str(out), '--size', '64', '--overwrite']) == 0
    assert out.read_bytes().startswith(b'\x89PNG')


def test_command_never_overwrites_its_input(image_file, capsys):
    before = image_file.read_bytes()
    assert main(['infomap', str(image_file), '-o', str(image_file), '--overwrite']) == 2
    assert image_file.read_bytes() == before
    assert 'input' in capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['missing.png'], 'no such image file'),
    (['not_an_image.png'], 'not a readable image'),
    (['synthetic.png', '--size', '4'], 'size must be'),
])
def test_command_bad_input_is_one_line(tmp_path, image_file, capsys, args, message):
    (tmp_path / 'not_an_image.png').write_text('hello')
    args = [str(tmp_path / args[0])] + args[1:]
    out = tmp_path / 'map.png'
    assert main(['infomap', *args, '-o', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_command_refuses_unknown_format(tmp_path, image_file, capsys):
    out = tmp_path / 'map.txt'
    assert main(['infomap', str(image_file), '-o', str(out)]) == 2
    assert "'.txt'" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_module_entry_point_lists_subcommands():
    result = subprocess.run([sys.executable, '-m', 'timm_infodrop', '--help'], capture_output=True, text=True)
    assert result.returncode == 0 and 'infomap' in result.stdout


def test_flops_command_writes_a_table_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / 'flops.md'
    assert main(['flops', '--archs', 'resnet18', '-o', str(out)]) == 0
    text = out.read_text()
    assert '| resnet18_infodrop |' in text and '| resnet18_infodropout |' in text
    assert main(['flops', '--archs', 'resnet18', '-o', str(out)]) == 2
    assert main(['flops', '--archs', 'vgg11', '-o', str(tmp_path / 'other.md')]) == 2
    assert 'vgg11' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- errors and bugs
def _assert_bug_report(code, err, kind):
    assert code == 1, err
    assert 'Traceback (most recent call last)' in err and f'{kind}:' in err
    assert ': error: ' not in err  # not a one-line user error
    assert 'This is a bug in timm-infodrop' in err.splitlines()[-1] and 'report it' in err.splitlines()[-1]


def test_a_key_error_deep_inside_flops_is_a_bug_with_its_traceback(tmp_path, capsys, monkeypatch):
    import fvcore.nn

    def broken(model, inputs):
        raise KeyError('aten::conv2d')

    monkeypatch.setattr(fvcore.nn, 'FlopCountAnalysis', broken)
    out = tmp_path / 'flops.md'
    code = main(['flops', '--archs', 'resnet18', '-o', str(out)])
    _assert_bug_report(code, capsys.readouterr().err, 'KeyError')
    assert not out.exists()
    with pytest.raises(KeyError):  # --debug re-raises
        main(['--debug', 'flops', '--archs', 'resnet18', '-o', str(out)])


def test_a_bare_value_error_deep_inside_infomap_is_a_bug_with_its_traceback(tmp_path, image_file, capsys,
                                                                            monkeypatch):
    def broken(self, *args, **kwargs):
        raise ValueError('unknown resampling filter')

    monkeypatch.setattr(Image.Image, 'resize', broken)
    out = tmp_path / 'map.png'
    code = main(['infomap', str(image_file), '-o', str(out), '--size', '64'])
    _assert_bug_report(code, capsys.readouterr().err, 'ValueError')
    assert not out.exists()


def _diverged():
    import torch
    from torch import nn

    from timm_infodrop.train import train_one_epoch

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        model[1].weight[0, 0] = float('nan')
    try:
        train_one_epoch(model, [(torch.randn(2, 3, 2, 2), torch.tensor([0, 1]))], torch.optim.SGD(model.parameters(), 0.1),
                        progress=False)
    except FloatingPointError as error:
        return error
    raise AssertionError('the trainer did not stop at a NaN loss')


def _raised(error):
    try:
        raise error
    except Exception as caught:
        return caught


@pytest.mark.parametrize('make, user', [
    (lambda: __import__('timm_infodrop.errors').errors.DataError('x'), True),
    (lambda: __import__('timm_infodrop.errors').errors.CheckpointError('x'), True),
    (lambda: __import__('timm_infodrop.errors').errors.TrainingDiverged('x'), True),
    (lambda: __import__('timm_infodrop.hub').hub.HubWeightsError('x'), True),
    (lambda: FileNotFoundError('x'), True),
    (lambda: PermissionError(13, 'Permission denied', 'x'), True),
    (lambda: IsADirectoryError(21, 'Is a directory', 'x'), True),
    (lambda: NotADirectoryError(20, 'Not a directory', 'x'), True),
    (lambda: OSError(28, 'No space left on device', 'x'), True),
    (_diverged, True),  # a FloatingPointError raised by the trainer
    (lambda: _raised(FloatingPointError('overflow')), False),  # raised elsewhere
    (lambda: OSError(5, 'Input/output error', 'x'), False),
    (lambda: OSError('cannot identify image file'), False),
    (lambda: ValueError('x'), False),
    (lambda: KeyError('x'), False),
    (lambda: RuntimeError('size mismatch'), False),
    (lambda: TypeError('x'), False),
], ids=['DataError', 'CheckpointError', 'TrainingDiverged', 'HubWeightsError', 'FileNotFoundError',
        'PermissionError', 'IsADirectoryError', 'NotADirectoryError', 'ENOSPC', 'trainer FloatingPointError',
        'other FloatingPointError', 'EIO', 'OSError without errno', 'ValueError', 'KeyError', 'RuntimeError',
        'TypeError'])
def test_user_errors_and_bugs_are_told_apart(make, user):
    from timm_infodrop.cli import is_user_error
    assert is_user_error(make()) is user


# ---------------------------------------------------------------------------------------------- output paths
def test_an_output_is_never_an_input_nor_holds_one(tmp_path):
    """check_output_path, used by every command: an output that is an input, holds one (an input below the
    output folder, e.g. a parent), or lies inside an input folder is refused, with or without --overwrite; a
    sibling of an input file and a new folder next to it are accepted. Links are resolved."""
    from timm_infodrop.io import OutputError, check_output_path

    data = tmp_path / 'data'
    (data / 'train').mkdir(parents=True)
    image = data / 'train' / 'x.png'
    image.write_bytes(b'png')
    (tmp_path / 'alias').symlink_to(data, target_is_directory=True)
    refused = [
        (image, False, [image], 'is also an input'),
        (tmp_path / 'alias' / 'train' / 'x.png', False, [image], 'is also an input'),  # the same file via a link
        (data / 'train', True, [image], 'holds the input'),  # the input's folder
        (data, True, [image], 'holds the input'),  # a parent of the input
        (tmp_path, True, [data], 'holds the input'),
        (data, True, [data], 'is also an input'),
        (data / 'train' / 'filtered', True, [data], 'is inside the input folder'),
        (tmp_path / 'alias' / 'out', True, [data], 'is inside the input folder'),
    ]
    for out, directory, inputs, message in refused:
        for overwrite in (False, True):
            with pytest.raises(OutputError, match=message):
                check_output_path(out, overwrite, inputs=inputs, directory=directory)
    accepted = [
        (data / 'train' / 'y.png', False, [image]),  # a sibling of an input file
        (data / 'train' / 'maps', True, [image]),  # a new folder next to it
        (tmp_path / 'filtered', True, [data]),  # a sibling of an input folder
        (tmp_path / 'datafile', True, [data, None]),  # a name that only starts like the input's
    ]
    for out, directory, inputs in accepted:
        assert check_output_path(out, False, inputs=inputs, directory=directory) == out
