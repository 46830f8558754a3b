"""Reliability (docs/RELIABILITY.md): bad inputs to the layers, hostile files, interrupted runs, and CLI
fuzzing. Each test here is named in a row of that table; tests/test_reliability.py::test_every_row_names_a_test
keeps the table and the tests in step."""
import ast
import contextlib
import errno
import hashlib
import io
import math
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image
from safetensors.torch import save_file
from torch import nn

import timm_infodrop  # noqa: F401
from timm_infodrop.cli import SUBCOMMANDS, main
from timm_infodrop.errors import DataError
from timm_infodrop.layers import InfoDrop, InformationDropout, finite_check, info_drop
from timm_infodrop.train import train_one_epoch

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / 'timm-infodrop')
# how many cases are tried (README's reliability section quotes these numbers)
FUZZ_EXAMPLES = 250
INFO_DROP_EXAMPLES, INFORMATION_DROPOUT_EXAMPLES, RANGE_EXAMPLES = 60, 40, 30
FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as a channels_last or a non-contiguous (transposed-view) tensor."""
    if layout == 'channels_last':
        return t.contiguous(memory_format=torch.channels_last)
    if layout == 'strided':  # every other element of a wider tensor
        wide = t.new_zeros(*t.shape[:-1], 2 * t.shape[-1])
        wide[..., ::2] = t
        view = wide[..., ::2]
        assert torch.equal(view, t) and (view.is_contiguous() == (t.shape[-2:] == (1, 1)))
        return view
    return t


layouts = st.sampled_from(['contiguous', 'channels_last', 'strided'])


# ---------------------------------------------------------------------------------------------- layers
@settings(max_examples=INFO_DROP_EXAMPLES, deadline=None, derandomize=True)
@given(batch=st.integers(1, 3), channels=st.integers(1, 4), height=st.integers(1, 10), width=st.integers(1, 10),
       kernel=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       radius=st.integers(1, 3), num_offsets=st.one_of(st.none(), st.integers(1, 9)),
       temperature=st.floats(1e-3, 10.0), drop_rate=st.floats(0.0, 5.0), dtype=st.sampled_from(FLOATS),
       layout=layouts, autocast=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_info_drop_masks_any_valid_input_or_names_the_size(batch, channels, height, width, kernel, stride, padding,
                                                           radius, num_offsets, temperature, drop_rate, dtype,
                                                           layout, autocast, seed):
    """Training output has y's shape, dtype and layout, each unit either kept or zeroed; a window larger
    than the padded input is a ValueError naming both sizes."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator).to(dtype)
    out_h, out_w = _out_size(height, kernel, stride, padding), _out_size(width, kernel, stride, padding)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, radius=radius, num_offsets=num_offsets,
                  temperature=temperature, drop_rate=drop_rate, training=True, generator=generator)
    if out_h < 1 or out_w < 1:
        with pytest.raises(ValueError, match=rf'input of {height}x{width} .* smaller than the conv window'):
            info_drop(x, x, **kwargs)
        return
    y = _layout(torch.randn(batch, 5, out_h, out_w, generator=generator).to(dtype), layout)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        out = info_drop(_layout(x, layout), y, **kwargs)
    assert out.shape == y.shape and out.dtype == y.dtype
    assert ((out == 0) | (out == y)).all() and torch.isfinite(out.float()).all()
    if layout == 'channels_last' and batch * 5 * out_h * out_w > 1:
        assert out.is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=INFORMATION_DROPOUT_EXAMPLES, deadline=None, derandomize=True)
@given(batch=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 4), size=st.integers(3, 9),
       kernel=st.sampled_from([1, 3]), stride=st.integers(1, 2), alpha_max=st.floats(1e-3, 5.0),
       prior=st.sampled_from(['log-uniform', 'log-normal']), dtype=st.sampled_from(FLOATS), layout=layouts,
       autocast=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_information_dropout_is_finite_noise_on_any_valid_input(batch, cin, cout, size, kernel, stride, alpha_max,
                                                                prior, dtype, layout, autocast, seed):
    torch.manual_seed(seed)
    layer = InformationDropout(cin, cout, kernel, stride=stride, padding=kernel // 2, alpha_max=alpha_max,
                               prior=prior).train()
    out_size = _out_size(size, kernel, stride, kernel // 2)
    x = _layout(torch.randn(batch, cin, size, size), layout)  # the alpha conv's dtype, as in a model
    f = _layout(torch.rand(batch, cout, out_size, out_size).add(0.01).to(dtype), layout)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        z = layer(x, f)
    assert z.shape == f.shape and z.dtype == f.dtype and torch.isfinite(z.float()).all()
    assert ((z == 0) == (f == 0)).all()  # multiplicative noise never zeroes a unit
    assert torch.isfinite(layer.kl) and layer.kl.dtype == torch.float32


BAD_TENSORS = [
    (torch.randn(3, 8, 8), ValueError, r'shape \(B, C, H, W\)'),
    (torch.randn(1, 1, 3, 8, 8), ValueError, r'shape \(B, C, H, W\)'),
    (torch.randn(8), ValueError, r'shape \(B, C, H, W\)'),
    (torch.ones(1, 3, 8, 8, dtype=torch.int64), TypeError, 'floating point'),
    (torch.ones(1, 3, 8, 8, dtype=torch.bool), TypeError, 'floating point'),
    (np.ones((1, 3, 8, 8), dtype=np.float32), TypeError, 'torch.Tensor'),
]


@pytest.mark.parametrize('bad, error, message', BAD_TENSORS, ids=['rank3', 'rank5', 'rank1', 'int64', 'bool', 'numpy'])
def test_layers_refuse_wrong_rank_dtype_and_type(bad, error, message):
    good = torch.randn(1, 3, 8, 8)
    infodrop = InfoDrop(kernel_size=3, padding=1).train()
    information_dropout = InformationDropout(3, 3, 3, padding=1).train()
    for call in (lambda: infodrop(bad, good), lambda: infodrop(good, bad),
                 lambda: information_dropout(bad, good), lambda: information_dropout(good, bad)):
        with pytest.raises(error, match=message):
            call()


@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_values_follow_the_documented_policy(value):
    """InfoDrop propagates NaN (its density is undefined: NaN in, NaN out, no host sync) and raises inside
    finite_check(); Information Dropout propagates, position by position."""
    x = torch.randn(2, 3, 8, 8)
    x[0, 1, 2, 3] = value
    assert torch.isnan(InfoDrop(kernel_size=3, padding=1).train()(x, torch.randn(2, 4, 8, 8))).all()
    with finite_check(), pytest.raises(ValueError, match='NaN or Inf'):
        InfoDrop(kernel_size=3, padding=1).train()(x, torch.randn(2, 4, 8, 8))
    f = torch.rand(2, 3, 8, 8) + 0.1
    f[0, 1, 2, 3] = value
    z = InformationDropout(3, 3, 3, padding=1).train()(torch.randn(2, 3, 8, 8), f)
    assert torch.equal(~torch.isfinite(z), ~torch.isfinite(f))
    if value > 0:
        assert z[0, 1, 2, 3] == value  # inf times positive noise


def test_the_trainer_stops_at_the_first_non_finite_loss():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        model[1].weight[0, 0] = float('nan')
    loader = [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]))] * 3
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match='non-finite loss nan at epoch 1, update 1'):
        train_one_epoch(model, loader, optimizer, progress=False)
    for key, value in model.state_dict().items():  # stopped before the update
        assert torch.allclose(before[key], value, equal_nan=True), key


out_of_range = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.sampled_from([math.nan, math.inf]))


@settings(max_examples=RANGE_EXAMPLES, deadline=None, derandomize=True)
@given(value=out_of_range, negative=st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=True),
       name=st.sampled_from(['temperature', 'drop_rate', 'alpha_max', 'beta', 'bandwidth']))
def test_out_of_range_hyperparameters_are_named(value, negative, name):
    if name in ('drop_rate', 'beta'):  # 0 is allowed for these: negative, NaN or Inf is not
        value = negative if value == 0 or math.isfinite(value) else value
    with pytest.raises(ValueError, match=name):
        if name in ('alpha_max', 'beta'):
            InformationDropout(3, 3, 3, **{name: value})
        else:
            InfoDrop(kernel_size=3, **{name: value})
    if name in ('temperature', 'drop_rate'):
        with pytest.raises(ValueError, match=name):
            info_drop(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 2, 2), 3, **{name: value}, training=True)


@pytest.mark.parametrize('kwargs, error', [
    ({'infodrop_temperature': -1.0}, 'temperature must be'), ({'infodrop_rate': float('nan')}, 'drop_rate must be'),
    ({'infodrop_radius': -2}, 'radius must be'), ({'infodrop_bogus': 1}, r"unknown keyword\(s\) \['infodrop_bogus'\]"),
    ({'temperature': 0.1}, "unexpected keyword argument 'temperature'"),
])
def test_bad_model_kwargs_are_named(kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        timm.create_model('resnet18_infodrop', num_classes=2, **kwargs)


# ---------------------------------------------------------------------------------------------- files
def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob('*')):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _image_folder(root: Path, classes=('a', 'b'), per_class=4, splits=('train', 'val'), size=32) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for label in classes:
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / label / f'{i}.png')
    return root


class Payload:
    """A pickled object that would run code when unpickled without weights_only."""
    def __reduce__(self):
        return (Path.touch, (Path('/tmp/timm_infodrop_pickle_ran'),))


@pytest.fixture(scope='module')
def hostile(tmp_path_factory) -> Path:
    """Hostile inputs, never modified by any test (checked by digest)."""
    root = tmp_path_factory.mktemp('hostile')
    _image_folder(root / 'data')
    (root / 'empty').mkdir()
    for split in ('train', 'val'):
        (root / 'empty_splits' / split).mkdir(parents=True)
    _image_folder(root / 'missing_class', classes=('a',), splits=('val',))
    _image_folder(root / 'missing_class', classes=('a', 'b'), splits=('train',))
    _image_folder(root / 'class_without_images', classes=('a',))
    for split in ('train', 'val'):
        (root / 'class_without_images' / split / 'b').mkdir()
        (root / 'class_without_images' / split / 'b' / 'notes.txt').write_text('no images here')
    for split in ('train', 'val'):
        for label in ('a', 'b'):
            (root / 'not_images' / split / label).mkdir(parents=True)
            (root / 'not_images' / split / label / '0.png').write_text('not a png')
    (root / 'notes.txt').write_text('a text file')
    (root / 'fake.png').write_text('not a png')
    torch.manual_seed(0)
    weights = timm.create_model('resnet18_infodrop', num_classes=2).state_dict()
    save_file(weights, str(root / 'good.safetensors'))
    data = (root / 'good.safetensors').read_bytes()
    (root / 'truncated.safetensors').write_bytes(data[:len(data) // 2])
    (root / 'garbage.safetensors').write_bytes(np.random.default_rng(0).bytes(4096))
    (root / 'empty.safetensors').write_bytes(b'')
    torch.save({'state_dict': weights, 'payload': Payload()}, root / 'payload.pth')
    torch.save({'state_dict': weights, 'module': nn.ReLU()}, root / 'module.pth.tar')
    (root / 'truncated.pth').write_bytes(b'PK\x03\x04' + data[:100])
    save_file(timm.create_model('resnet34', num_classes=2).state_dict(), str(root / 'other_arch.safetensors'))
    folder = root / 'model_dir'
    timm.models.save_for_hf(timm.create_model('resnet18_infodrop', num_classes=2), str(folder), safe_serialization=True)
    (root / 'truncated_dir').mkdir()
    (root / 'truncated_dir' / 'config.json').write_bytes((folder / 'config.json').read_bytes())
    (root / 'truncated_dir' / 'model.safetensors').write_bytes((folder / 'model.safetensors').read_bytes()[:5000])
    (root / 'bad_config_dir').mkdir()
    (root / 'bad_config_dir' / 'config.json').write_text('{not json')
    (root / 'no_arch_dir').mkdir()
    (root / 'no_arch_dir' / 'config.json').write_text('{"num_classes": 2}')
    (root / 'pickle_only_dir').mkdir()
    (root / 'pickle_only_dir' / 'config.json').write_bytes((folder / 'config.json').read_bytes())
    torch.save(weights, root / 'pickle_only_dir' / 'pytorch_model.bin')
    return root


@pytest.fixture(scope='module')
def benchmark(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp('bench') / 'data'
    assert main(['make-data', str(data), '--size', '32', '--train', '4', '--val', '4', '--cue-conflict', '4',
                 '--silhouette', '4', '--texture-only', '4']) == 0
    return data


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err.splitlines()[-1] if err else ''


CHECKPOINT_CASES = {
    'truncated safetensors': ('truncated.safetensors', 'not a readable weights-only checkpoint'),
    'random bytes as safetensors': ('garbage.safetensors', 'not a readable weights-only checkpoint'),
    'empty safetensors file': ('empty.safetensors', 'not a readable weights-only checkpoint'),
    'pickle with a code payload': ('payload.pth', 'weights_only'),
    'pickle with an nn.Module': ('module.pth.tar', 'weights_only'),
    'truncated pickle': ('truncated.pth', 'not a readable weights-only checkpoint'),
    "another architecture's weights": ('other_arch.safetensors', 'does not fit resnet18_infodrop: missing keys'),
    'unknown checkpoint suffix': ('notes.txt', 'unsupported checkpoint format'),
    'missing file': ('nothing.safetensors', 'no such checkpoint file'),
    'model folder, truncated weights': ('local-dir:{root}/truncated_dir', 'does not load as a timm model folder'),
    'model folder, config.json not JSON': ('local-dir:{root}/bad_config_dir', 'is not valid JSON'),
    'model folder, config.json without architecture': ('local-dir:{root}/no_arch_dir', 'has no "architecture"'),
    'model folder without config.json': ('local-dir:{root}/empty', 'has no config.json'),
    'model folder, weights of another model': ('local-dir:{root}/model_dir', 'not a resnet50_infodrop'),
}


@pytest.mark.parametrize('case', list(CHECKPOINT_CASES))
@pytest.mark.parametrize('command', ['convert', 'eval'])
@pytest.mark.slow
def test_hostile_checkpoints_are_one_line_errors(hostile, benchmark, tmp_path, capsys, command, case):
    checkpoint, message = CHECKPOINT_CASES[case]
    checkpoint = checkpoint.format(root=hostile) if checkpoint.startswith('local-dir:') else hostile / checkpoint
    model = 'resnet50_infodrop' if case == 'model folder, weights of another model' else 'resnet18_infodrop'
    if command == 'eval':  # eval reads the benchmark first: give it one
        argv = ['eval', '--model', model, '--checkpoint', checkpoint, '--data', benchmark, '--out', tmp_path / 'out']
    else:
        argv = ['convert', '--model', model, '--checkpoint', checkpoint, '--data-dir', hostile / 'data',
                '--out', tmp_path / 'out', '--img-size', '32']
    before = _tree_digest(hostile)
    code, last = _run(argv, capsys)
    assert code == 2 and last.startswith(f'timm-infodrop {command}: error: ') and message in last, last
    assert not (tmp_path / 'out').exists() and _tree_digest(hostile) == before
    assert not Path('/tmp/timm_infodrop_pickle_ran').exists()


INITIAL_CHECKPOINT_CASES = {
    case: CHECKPOINT_CASES[case] for case in (
        'pickle with a code payload', 'pickle with an nn.Module', 'truncated pickle', 'random bytes as safetensors',
        'unknown checkpoint suffix', 'missing file')}
INITIAL_CHECKPOINT_CASES["another architecture's weights"] = ('other_arch.safetensors', 'does not fit')


@pytest.mark.parametrize('case', list(INITIAL_CHECKPOINT_CASES))
def test_train_refuses_hostile_initial_checkpoints_in_one_line(hostile, tmp_path, capsys, case):
    """``train --initial-checkpoint`` reads the file as convert and eval do (weights only, the payload never runs)
    and refuses what they refuse with the same line, before any run folder."""
    checkpoint, message = INITIAL_CHECKPOINT_CASES[case]
    before = _tree_digest(hostile)
    code, last = _run(['train', '--model', 'resnet18_infodrop', '--initial-checkpoint', hostile / checkpoint,
                       '--data-dir', hostile / 'data', '--output', tmp_path, '--experiment', 'run', '-b', '2',
                       '-j', '0', '--img-size', '32', '--epochs', '1', '--no-progress'], capsys)
    assert code == 2 and last.startswith('timm-infodrop train: error: ') and message in last, last
    assert checkpoint in last, last
    assert not (tmp_path / 'run').exists() and _tree_digest(hostile) == before
    assert not Path('/tmp/timm_infodrop_pickle_ran').exists()


DATA_CASES = {
    'missing folder': ('nothing', 'train/'),
    'a file, not a folder': ('notes.txt', 'train/'),
    'no train/ or val/': ('empty', 'train/'),
    'empty train/': ('empty_splits', 'has no class folders'),
    'val/ lacks a class': ('missing_class', 'val/ lacks [b]'),
    'a class folder without images': ('class_without_images', 'class folders without images'),
}


@pytest.mark.parametrize('case', list(DATA_CASES))
@pytest.mark.parametrize('command', ['train', 'convert'])
def test_bad_data_folders_are_one_line_errors(hostile, tmp_path, capsys, command, case):
    folder, message = DATA_CASES[case]
    if command == 'train':
        argv = ['train', '--model', 'resnet18', '--data-dir', hostile / folder, '--output', tmp_path, '--experiment',
                'run', '-b', '2', '-j', '0', '--img-size', '32']
    else:
        argv = ['convert', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors', '--data-dir',
                hostile / folder, '--out', tmp_path / 'run']
    before = _tree_digest(hostile)
    code, last = _run(argv, capsys)
    assert code == 2 and message in last, last
    assert not (tmp_path / 'run').exists() and _tree_digest(hostile) == before


def test_files_that_are_not_images_are_one_line_errors(hostile, tmp_path, capsys):
    """Every command that reads images names the unreadable file (train: after timm skips them)."""
    runs = [
        (['train', '--model', 'resnet18', '--data-dir', hostile / 'not_images', '--output', tmp_path, '--experiment',
          'run', '-b', '2', '-j', '0', '--img-size', '32', '--epochs', '1', '--no-progress'],
         'not readable images'),
        (['convert', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors', '--data-dir',
          hostile / 'not_images', '--out', tmp_path / 'deploy', '--img-size', '32'], 'cannot identify image file'),
        (['suppress-texture', '--method', 'bilateral', '--in', hostile / 'not_images', '--out', tmp_path / 'st'],
         'is not a readable image'),
        (['infomap', hostile / 'fake.png', '-o', tmp_path / 'map.png'], 'is not a readable image'),
    ]
    before = _tree_digest(hostile)
    for argv, message in runs:
        code, last = _run(argv, capsys)
        assert code == 2 and message in last, (argv[0], last)
    assert not any(p.name in ('deploy', 'st', 'map.png') for p in tmp_path.iterdir())
    assert not (tmp_path / 'run' / 'model.safetensors').exists() and _tree_digest(hostile) == before


def _bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid one-colour PNG of side x side pixels (1 bit per pixel): about 50 KB on disk, 400 million pixels
    decoded, over PIL's Image.MAX_IMAGE_PIXELS."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, 'big') + kind + data + zlib.crc32(kind + data).to_bytes(4, 'big')

    row, packer = bytes(1 + (side + 7) // 8), zlib.compressobj(9)
    pixels = b''.join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4, 'big') * 2 + bytes([1, 0, 0, 0, 0])  # bit depth 1, greyscale
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', pixels) + chunk(b'IEND', b''))
    return path


def test_decompression_bombs_are_one_line_errors_naming_the_file(tmp_path, capsys, monkeypatch):
    """An image over PIL's pixel limit, found from its header: in a training or conversion folder, or given to
    infomap or suppress-texture, a one-line DataError naming the file, never PIL's DecompressionBombError."""
    from timm_infodrop.data.folders import check_image_folders, image_size

    data = _image_folder(tmp_path / 'data', per_class=2, size=8)
    bomb = _bomb_png(data / 'train' / 'a' / 'bomb.png')
    runs = [
        ['train', '--model', 'resnet18', '--data-dir', data, '--output', tmp_path / 'runs', '--experiment', 'run',
         '-b', '2', '-j', '0', '--img-size', '32', '--epochs', '1', '--no-progress'],
        ['convert', '--model', 'resnet18_infodrop', '--checkpoint', tmp_path / 'ckpt' / 'x.safetensors', '--data-dir', data,
         '--out', tmp_path / 'deploy'],
        ['infomap', bomb, '-o', tmp_path / 'map.png'],
        ['suppress-texture', '--method', 'bilateral', '--in', data / 'train', '--out', tmp_path / 'st'],
    ]
    for argv in runs:
        code, last = _run(argv, capsys)
        assert code == 2 and str(bomb) in last and 'decompression bomb' in last, (argv[0], last)
    assert [p.name for p in tmp_path.iterdir()] == ['data']
    # between the limit and twice it PIL only warns and decodes: refused all the same, from the header
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 8 * 8 + 1)
    Image.new('RGB', (9, 8)).save(data / 'val' / 'a' / 'wide.png')
    with pytest.raises(DataError, match=r"wide.png' is larger than PIL's limit of 65 pixels .*9x8 = 72 pixels"):
        check_image_folders(data, ['val'])
    assert image_size(data / 'val' / 'a' / '0.png') == (8, 8)


def _few_bad(folder: Path, good: int, names) -> None:
    for i in range(good):
        (folder / 'a').mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (4, 4), (i, 0, 0)).save(folder / 'a' / f'{i}.png')
    jpeg = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(jpeg, 'JPEG')
    bad = {'truncated.jpg': jpeg.getvalue()[:-200], 'text.png': b'not a png', 'cut.png': (folder / 'a' / '0.png')
           .read_bytes()[:-20]}
    for name in names:
        (folder / 'a' / name).write_bytes(bad[name])


def test_unreadable_images_are_returned_or_refused_over_a_small_fraction(tmp_path):
    """verify_images reads every header and the data (a truncated JPEG has a good header): up to
    MAX_BAD_FRACTION of a folder's images are returned for the trainer to name and count, more are a DataError
    naming some of them and the fraction. The folders' sizes are set from the fraction, on either side of it."""
    from timm_infodrop.data.folders import MAX_BAD_FRACTION, check_image_folders, verify_images

    names = ['truncated.jpg', 'cut.png', 'text.png']
    at_limit = round(len(names) / MAX_BAD_FRACTION)  # 3 unreadable of these many images: the fraction, allowed
    _few_bad(tmp_path / 'few' / 'train', at_limit - len(names), names)
    assert check_image_folders(tmp_path / 'few', ['train']) == ['a']  # headers: only text.png fails
    bad = verify_images(tmp_path / 'few' / 'train')
    assert sorted(p.name for p in bad) == sorted(names)
    over = round(1 / MAX_BAD_FRACTION)  # 3 of these many: three times the fraction
    _few_bad(tmp_path / 'many' / 'train', over - len(names), names)
    with pytest.raises(DataError, match=rf"3 of {over} image files are not readable images "
                                        rf"\(more than {MAX_BAD_FRACTION:.0%}\): .*cut.png"):
        verify_images(tmp_path / 'many' / 'train')
    few = over // 5  # the header check alone refuses 1 unreadable of few + 1
    _few_bad(tmp_path / 'headers' / 'train', few, ['text.png'])
    with pytest.raises(DataError, match=rf"1 of {few + 1} image files .*text.png' \(cannot identify image file"):
        check_image_folders(tmp_path / 'headers', ['train'])


def test_symlink_loops_in_class_folders_are_refused(tmp_path, capsys):
    """A link in a class folder to a folder that holds it would be walked again and again by the loader: refused
    naming the link. A link to a folder elsewhere is followed."""
    from timm_infodrop.data.folders import check_image_folders, list_images

    data = _image_folder(tmp_path / 'data', per_class=2, size=8)
    elsewhere = _image_folder(tmp_path / 'more', classes=('x',), per_class=3, splits=('extra',), size=8)
    (data / 'train' / 'a' / 'more').symlink_to(elsewhere / 'extra' / 'x', target_is_directory=True)
    assert check_image_folders(data, ['train', 'val']) == ['a', 'b']
    assert len(list_images(data / 'train' / 'a')) == 5
    for link, target in (('loop', '..'), ('self', '.'), ('root', str(tmp_path))):
        (data / 'train' / 'b' / link).symlink_to(target, target_is_directory=True)
        code, last = _run(['train', '--model', 'resnet18', '--data-dir', data, '--output', tmp_path / 'runs',
                           '--experiment', 'run', '-b', '2', '-j', '0', '--img-size', '32'], capsys)
        assert code == 2 and f"'{data / 'train' / 'b' / link}' is a symbolic link" in last and 'loop' in last, last
        (data / 'train' / 'b' / link).unlink()
    (elsewhere / 'extra' / 'x' / 'back').symlink_to(data / 'train', target_is_directory=True)  # a cycle of two links
    with pytest.raises(DataError, match=r"a/more/back' is a symbolic link to .*a folder that holds it"):
        check_image_folders(data, ['train'])
    assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('argv, message', [
    (['--model', 'nope'], "--model 'nope' is not a registered timm model"),
    (['--model', 'resnet18_infodrop', '--model-kwargs', 'infodrop_bogus=1'], "unknown keyword(s) ['infodrop_bogus']"),
    (['--model', 'resnet18_infodrop', '--model-kwargs', 'infodrop_temperature=-1'], 'temperature must be'),
    (['--model', 'resnet18', '--model-kwargs', 'bogus=1'], "unexpected keyword argument 'bogus'"),
], ids=['unknown model', 'unknown method keyword', 'out-of-range keyword', 'unknown timm keyword'])
def test_train_names_a_bad_model_or_model_kwargs(hostile, tmp_path, capsys, argv, message):
    code, last = _run(['train', '--data-dir', hostile / 'data', '--output', tmp_path, '--experiment', 'run', '-b', '2',
                       '-j', '0', '--img-size', '32', *argv], capsys)
    assert code == 2 and message in last, last
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('content, message', [
    ('- a list\n', 'must hold a mapping'), ('model: [unclosed\n', 'is not valid YAML'),
    ('modle: resnet18\n', "unknown keys ['modle']"), (b'\x89PNG\x00\xff', 'is not valid YAML'),
], ids=['list', 'broken YAML', 'misspelt key', 'binary'])
def test_bad_recipe_files_are_one_line_errors(hostile, tmp_path, capsys, content, message):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, last = _run(['train', '-c', recipe, '--data-dir', hostile / 'data', '--output', tmp_path / 'runs'], capsys)
    assert code == 2 and message in last, last
    assert not (tmp_path / 'runs').exists()


def test_eval_and_cue_conflict_name_a_folder_that_is_not_theirs(hostile, tmp_path, capsys):
    code, last = _run(['eval', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors', '--data',
                       hostile / 'data', '--out', tmp_path / 'out'], capsys)
    assert code == 2 and 'has no benchmark.json' in last, last
    code, last = _run(['cue-conflict', '--model', 'resnet18', '--stimuli', hostile / 'data' / 'train' / 'a',
                       '--out', tmp_path / 'out.json'], capsys)
    assert code == 2 and 'is not a cue-conflict stimulus name' in last, last
    assert list(tmp_path.iterdir()) == []


def test_unwritable_and_full_outputs_are_one_line_errors_and_leave_nothing(hostile, tmp_path, capsys, monkeypatch):
    base = ['convert', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors', '--data-dir',
            hostile / 'data', '--img-size', '32', '--finetune-epochs', '0', '--recalibrate-batches', '1']
    code, last = _run(base + ['--out', hostile / 'notes.txt' / 'deploy'], capsys)  # under a regular file
    assert code == 2 and 'notes.txt' in last, last

    def disk_full(model, folder, **kwargs):
        (Path(folder) / 'model.safetensors').write_bytes(b'half a model')
        raise OSError(errno.ENOSPC, 'No space left on device', str(Path(folder) / 'model.safetensors'))

    monkeypatch.setattr(timm.models, 'save_for_hf', disk_full)
    out = tmp_path / 'deploy'
    code, last = _run(base + ['--out', out], capsys)
    assert code == 2 and 'No space left on device' in last, last
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary folder


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f'{path} did not appear in {timeout} s'
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_training_run_leaves_no_model_and_resumes_from_its_last_checkpoint(hostile, tmp_path):
    from timm_infodrop.train.state import load_training_state

    run = tmp_path / 'run'
    argv = [CLI, 'train', '--model', 'resnet18_infodrop', '--data-dir', str(hostile / 'data'), '--output', str(tmp_path),
            '--experiment', 'run', '-b', '4', '-j', '0', '--img-size', '32', '--no-progress', '--seed', '0']
    process = subprocess.Popen(argv + ['--epochs', '500'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        _wait_for(run / 'last.safetensors', process)
        time.sleep(0.5)  # into a later epoch, possibly mid-save
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (run / 'model.safetensors').exists() and not (run / 'config.json').exists()
    model = timm.create_model('resnet18_infodrop', num_classes=2)
    state = load_training_state(run / 'last.safetensors', model)  # complete, whatever the kill hit
    assert state.epoch >= 1
    done = subprocess.run(argv + ['--epochs', str(state.epoch + 1), '--resume', str(run / 'last.safetensors')],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = timm.create_model(f'local-dir:{run}', pretrained=True)
    assert resumed.num_classes == 2
    assert load_training_state(run / 'last.safetensors', model).epoch == state.epoch + 1


@pytest.mark.slow
def test_a_killed_conversion_leaves_no_output(hostile, tmp_path):
    out = tmp_path / 'deploy'
    argv = [CLI, 'convert', '--model', 'resnet18_infodrop', '--checkpoint', str(hostile / 'good.safetensors'),
            '--data-dir', str(hostile / 'data'), '--out', str(out), '--img-size', '32', '--batch-size', '2',
            '--finetune-epochs', '1000']
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # imports, load, recalibration, then finetuning
        assert process.poll() is None, process.communicate()[1][-2000:]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- determinism
def test_make_data_is_byte_identical_for_a_seed(tmp_path):
    sizes = ['--size', '32', '--train', '6', '--val', '3', '--cue-conflict', '3', '--silhouette', '3',
             '--texture-only', '3']
    for name in ('a', 'b'):
        assert main(['make-data', str(tmp_path / name), *sizes, '--seed', '5']) == 0
    assert main(['make-data', str(tmp_path / 'c'), *sizes, '--seed', '6']) == 0
    assert _tree_digest(tmp_path / 'a') == _tree_digest(tmp_path / 'b') != _tree_digest(tmp_path / 'c')


# ---------------------------------------------------------------------------------------------- CLI fuzzing
NUMBERS = ['-1', '0', '1', '3', '2.5', 'nan', 'inf', '-inf', '1e309', 'abc', '', '99999999999999999999']
MODELS = ['resnet18', 'resnet18_infodrop', 'nope', '', 'resnet18_infodrop.shapes64', 'hf-hub:']


def _fuzz_pools(hostile: Path, out: Path):
    """Inputs: every one hostile (so no command gets as far as real work). Outputs: fresh paths, existing
    files and folders, paths under a file."""
    inputs = [str(hostile / name) for name in (
        'nothing', 'empty', 'empty_splits', 'missing_class', 'class_without_images', 'not_images', 'notes.txt',
        'fake.png', 'truncated.safetensors', 'garbage.safetensors', 'payload.pth', 'other_arch.safetensors')]
    inputs += [f'local-dir:{hostile / name}' for name in ('truncated_dir', 'bad_config_dir', 'empty', 'nothing')]
    inputs += ['-', '\x00', 'hf-hub:', 'local-dir:']
    outputs = [str(out / 'fresh'), str(hostile / 'notes.txt'), str(hostile / 'notes.txt' / 'below'),
               str(hostile / 'empty'), str(out / 'fresh.png'), str(out / 'fresh.json')]
    return inputs, outputs


def _subcommand_specs(inputs, outputs):
    """Per subcommand: arguments always given (drawn from the hostile inputs) and optional ones."""
    num, path, outp, model = st.sampled_from(NUMBERS), st.sampled_from(inputs), st.sampled_from(outputs), \
        st.sampled_from(MODELS)
    flag = st.just(None)
    return {
        'train': ({'--data-dir': path, '--output': outp},
                  {'--model': model, '-b': num, '--epochs': num, '--lr': num, '--img-size': num, '-j': num,
                   '--resume': path, '--initial-checkpoint': path, '-c': path, '--texture-suppression-prob': num,
                   '--model-kwargs': st.sampled_from(['temperature=-1', 'bogus=1', 'x', '=']), '--seed': num,
                   '--amp': flag, '--channels-last': flag}),
        'convert': ({'--checkpoint': path, '--data-dir': path, '--out': outp},
                    {'--model': model, '--recalibrate-batches': num, '--finetune-epochs': num, '--finetune-lr': num,
                     '--finetune-params': st.sampled_from(['bn', 'all', 'x']), '--img-size': num,
                     '--batch-size': num, '--workers': num, '--seed': num, '--export': st.sampled_from(['onnx', 'x']),
                     '--no-aug': flag, '--overwrite': flag}),
        'eval': ({'--checkpoint': path, '--data': path, '--out': outp},
                 {'--model': model, '--baseline': path, '--corruption-images': num, '--pgd-images': num,
                  '--seed': num, '--overwrite': flag}),
        'cue-conflict': ({'--stimuli': path, '--out': outp},
                         {'--model': model, '--checkpoint': path, '--batch-size': num, '--overwrite': flag}),
        'infomap': ({'': path, '-o': outp},
                    {'--size': num, '--temperature': num, '--drop-rate': num, '--radius': num, '--num-offsets': num,
                     '--seed': num, '--overwrite': flag}),
        'make-data': ({'': st.sampled_from(outputs[1:4])},  # existing or under a file: refused, never written
                      {'--size': num, '--train': num, '--val': num, '--seed': num,
                       '--set': st.sampled_from(['x=1', 'size=', '=', 'shapes=[]'])}),
        'suppress-texture': ({'--method': st.sampled_from(['anisotropic', 'bilateral', 'cartoon', 'x']),
                              '--in': path, '--out': outp},
                             {'--double': flag, '--batch-size': num, '--overwrite': flag, '--preview': outp}),
        'zoo': ({'': st.sampled_from(['run', 'report', 'card', 'drop-sites', 'x']), '--recipes': path,
                 '--results': path, '--work': outp, '--card': outp},
                {'--quick': flag, '--seeds': num, '--models': model, '--images': num,
                 '--setting': st.sampled_from(['0.03,1.5,3', 'x', '1,2'])}),
        'hub': ({'': st.sampled_from(['render', 'x']), '--results': path, '--out': outp}, {}),
        'publish': ({'--model-dir': path, '--repo-id': st.sampled_from(['a/b', 'x', '', 'a/b/c', '../..']),
                     '--staging': outp},
                    {'--card': path, '--revision': st.sampled_from(['main', '', 'x y']), '--dry-run': flag,
                     '--private': flag}),
        'flops': ({'-o': st.sampled_from(outputs[1:4])}, {'--archs': model}),  # no input: never --overwrite
        'import-weights': ({'_name': st.sampled_from(['efficientnet-lite0', 'x', '']), '_out': outp},
                           {'--source': path, '--overwrite': flag}),
        'study': ({'': st.sampled_from(['calibrate', 'doc', 'x']), '--out': outp},
                  {'--data': path, '--records': path, '--epochs': num, '--model': model, '--seed': num,
                   '--model-kwargs': st.sampled_from(['{}', '[1]', 'x'])}),
    }


@st.composite
def _argv(draw, specs):
    command = draw(st.sampled_from(sorted(specs)))
    required, optional = specs[command]
    argv = [command]
    for name, values in required.items():
        argv += ([name] if name and not name.startswith('_') else []) + [draw(values)]  # '' and '_*': positional
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)) if optional else []:
        value = draw(optional[name])
        argv += [name] + ([] if value is None else [value])
    return argv


@pytest.mark.slow
def test_cli_fuzz_gives_no_tracebacks(hostile, tmp_path):
    """FUZZ_EXAMPLES random argument lists over the subcommands, inputs drawn from the hostile files: each
    ends in a usage error or a one-line error (exit 2), or succeeds where the input suits that command
    (an image folder for suppress-texture), never in a traceback; at least 200 distinct lists are
    refused, and no input changes."""
    inputs, outputs = _fuzz_pools(hostile, tmp_path)
    specs = _subcommand_specs(inputs, outputs)
    before = _tree_digest(hostile)
    tried, refused = [], set()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(argv=_argv(specs))
    def one(argv):
        tried.append(argv)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse: a usage line and exit 2
                code = exit.code
        lines = stderr.getvalue().strip().splitlines()
        assert 'Traceback' not in stderr.getvalue(), argv
        assert code in (0, 2), (argv, code, lines[-3:])  # 0: an input that is fine for this command
        if code == 2:
            refused.add(tuple(argv))
            assert lines and re.match(rf'timm-infodrop( {re.escape(argv[0])})?: error: ', lines[-1]), (argv, lines[-3:])

    one()
    assert len(tried) >= FUZZ_EXAMPLES and len(refused) >= 200
    assert _tree_digest(hostile) == before
    assert {a[0] for a in tried} == set(specs) == set(SUBCOMMANDS)


# ---------------------------------------------------------------------------------------------- numbers and files
# every command's numeric flags with values out of range (sizes, batch sizes, epochs, counts, fractions, rates):
# (flag, bad values, what the one-line error says)
BAD_NUMBERS = {
    'train': [('--img-size', ['-5', '0'], '--img-size must be >= 1'), ('-b', ['0', '-1'], '--batch-size must be >= 1'),
              ('--epochs', ['0'], '--epochs must be >= 1'), ('-j', ['-1'], '--workers must be >= 0'),
              ('--lr', ['-1', 'nan'], '--lr must be > 0'), ('--crop-pct', ['0', '1.5'], '--crop-pct must be in (0, 1]'),
              ('-vb', ['0'], '--validation-batch-size must be >= 1'), ('--smoothing', ['1'], '--smoothing must be in'),
              ('--hflip', ['2'], '--hflip must be in [0, 1]'), ('--num-classes', ['0'], '--num-classes must be >= 1')],
    'convert': [('--img-size', ['-5', '0'], '--img-size must be >= 1'), ('--batch-size', ['0'], '--batch-size must be'),
                ('--finetune-epochs', ['-1'], '--finetune-epochs must be >= 0'),
                ('--recalibrate-batches', ['-1'], '--recalibrate-batches must be >= 0'),
                ('--finetune-lr', ['0', 'nan'], '--finetune-lr must be > 0'), ('--workers', ['-1'], '--workers must be'),
                ('--crop-pct', ['0', '1.5'], '--crop-pct must be in (0, 1]'), ('--std', ['0'], '--std must be > 0')],
    'eval --data': [('--batch-size', ['0', '-1'], '--batch-size must be >= 1'),
                    ('--corruption-images', ['0'], '--corruption-images must be >= 1'),
                    ('--pgd-images', ['-3'], '--pgd-images must be >= 1')],
    'eval --domain-dir': [('--batch-size', ['0'], '--batch-size must be >= 1')],
    'make-data': [('--train', ['0', '-1'], '--train must be >= 1'), ('--val', ['0'], '--val must be >= 1'),
                  ('--cue-conflict', ['0'], '--cue-conflict must be >= 1'),
                  ('--size', ['0', '-5'], 'size must be >= 16')],
    'cue-conflict': [('--batch-size', ['0'], '--batch-size must be >= 1')],
    'suppress-texture': [('--batch-size', ['0'], '--batch-size must be >= 1')],
    'infomap': [('--size', ['0', '-5'], 'size must be an integer >= 16'), ('--radius', ['-1'], 'radius'),
                ('--temperature', ['0'], 'temperature')],
}
# the optional flags a command is tried with as well (the refusal must not depend on them)
OPTIONAL_FLAGS = {
    'train': ['--no-aug', '--model-ema', '--amp', '--overwrite'],
    'convert': ['--no-aug', '--overwrite', '--keep', 'finetuned'],
    'eval --data': ['--overwrite', '--seed', '3'], 'eval --domain-dir': ['--overwrite', '--seed', '3'],
    'make-data': ['--overwrite', '--seed', '2'], 'cue-conflict': ['--overwrite'],
    'suppress-texture': ['--double', '--overwrite'], 'infomap': ['--overwrite', '--seed', '1'],
}


def _command_argv(command: str, hostile: Path, benchmark: Path, out: Path):
    """``command`` with good inputs and a fresh output ``out``: only the flag under test can be refused."""
    return {
        'train': ['train', '--model', 'resnet18', '--data-dir', hostile / 'data', '--output', out, '--experiment',
                  'run'],
        'convert': ['convert', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors',
                    '--data-dir', hostile / 'data', '--out', out],
        'eval --data': ['eval', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors', '--data',
                        benchmark, '--out', out],
        'eval --domain-dir': ['eval', '--model', 'resnet18_infodrop', '--checkpoint', hostile / 'good.safetensors',
                              '--domain-dir', hostile / 'data' / 'val', '--out', out],
        'make-data': ['make-data', out],
        'cue-conflict': ['cue-conflict', '--model', 'resnet18', '--stimuli', hostile / 'data' / 'val' / 'a', '--out',
                         out.with_suffix('.json')],
        'suppress-texture': ['suppress-texture', '--method', 'bilateral', '--in', hostile / 'data' / 'train',
                             '--out', out],
        'infomap': ['infomap', '-o', out.with_suffix('.png')],
    }[command]


NUMBER_CASES = [(command, flag, value, message) for command, rows in BAD_NUMBERS.items()
                for flag, values, message in rows for value in values]


@pytest.mark.parametrize('optional', [False, True], ids=['required flags', 'with optional flags'])
@pytest.mark.parametrize('command, flag, value, message', NUMBER_CASES,
                         ids=[f'{c} {f} {v}' for c, f, v, _ in NUMBER_CASES])
@pytest.mark.slow
def test_every_command_refuses_bad_numbers_before_writing_anything(hostile, benchmark, tmp_path, capsys, command, flag,
                                                                   value, message, optional):
    """Each command x each numeric flag x out-of-range values (negative, zero, NaN), with and without the
    optional flags: exit 2, one line naming the flag, nothing written (no run folder, no output), no input
    changed."""
    argv = _command_argv(command, hostile, benchmark, tmp_path / 'out') + [flag, value]
    argv += OPTIONAL_FLAGS[command] if optional else []
    before = _tree_digest(hostile)
    code, last = _run(argv, capsys)
    assert code == 2 and last.startswith(f'timm-infodrop {argv[0]}: error: ') and message in last, last
    assert list(tmp_path.iterdir()) == [] and _tree_digest(hostile) == before


@pytest.fixture(scope='module')
def not_checkpoints(tmp_path_factory) -> Path:
    """Files a newcomer hands over as checkpoints: a text file renamed .safetensors, a run folder whose training
    never finished (a resume state, no config.json)."""
    root = tmp_path_factory.mktemp('not_checkpoints')
    (root / 'notes.safetensors').write_text('my notes, not weights\n')
    (root / 'unfinished').mkdir()
    weights = timm.create_model('resnet18_infodrop', num_classes=2).state_dict()
    save_file(weights, str(root / 'unfinished' / 'last.safetensors'))
    return root


CHECKPOINT_INPUTS = {
    'text renamed .safetensors': ('notes.safetensors', 'not a safetensors file'),
    'unfinished run folder': ('local-dir:{root}/unfinished', 'an unfinished timm-infodrop train run'),
}


@pytest.mark.parametrize('optional', [False, True], ids=['no --model', 'with --model'])
@pytest.mark.parametrize('case', list(CHECKPOINT_INPUTS))
@pytest.mark.parametrize('command', ['convert', 'eval --data', 'eval --domain-dir', 'cue-conflict'])
def test_checkpoints_that_are_not_are_named_by_their_real_cause(hostile, benchmark, not_checkpoints, tmp_path, capsys,
                                                                command, case, optional):
    """The real cause, with or without --model: a text file is "not a safetensors file" (never "does not name its
    architecture"), a run folder without config.json points at its resume state; exit 2, nothing written."""
    name, message = CHECKPOINT_INPUTS[case]
    checkpoint = name.format(root=not_checkpoints) if name.startswith('local-dir:') else not_checkpoints / name
    argv = _command_argv(command, hostile, benchmark, tmp_path / 'out')
    if '--model' in argv:
        index = argv.index('--model')
        del argv[index:index + 2]
    argv = [a for a in argv if a != hostile / 'good.safetensors']
    if '--checkpoint' in argv:
        argv.remove('--checkpoint')
    argv += ['--checkpoint', checkpoint] + (['--model', 'resnet18_infodrop'] if optional else [])
    before = _tree_digest(not_checkpoints)
    code, last = _run(argv, capsys)
    assert code == 2 and message in last and 'does not name its architecture' not in last, last
    assert list(tmp_path.iterdir()) == [] and _tree_digest(not_checkpoints) == before


# ---------------------------------------------------------------------------------------------- the table
def _defined_tests() -> set:
    names = set()
    for file in (ROOT / 'tests').glob('test_*.py'):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith('test_'):
                names.add(f'{file.name}::{node.name}')
    return names


def test_every_row_names_a_test():
    """docs/RELIABILITY.md: every table row names at least one test, and every named test exists."""
    table = [line for line in (ROOT / 'docs' / 'RELIABILITY.md').read_text().splitlines()
             if line.startswith('| ') and not line.startswith('| boundary') and not line.startswith('| ---')]
    defined = _defined_tests()
    assert len(table) >= 30
    for row in table:
        named = re.findall(r'`(test_\w+\.py::test_\w+)`', row)
        assert named, f'row without a test: {row}'
        assert set(named) <= defined, f'no such test: {set(named) - defined}'
