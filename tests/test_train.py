"""The trainer: timm train.py arguments, recipes, KL counted once, resume, determinism, DDP, safetensors."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from timm_infodrop.cli import build_parser, main
from timm_infodrop.cli.train import config_from_args
from timm_infodrop.train import train
from timm_infodrop.layers import aux_loss, set_kl_to_gradient
from timm_infodrop.train import prepare_for_training, train_one_epoch

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
BASE = ['--img-size', str(SIZE), '-b', '8', '--no-aug', '-j', '0', '--warmup-epochs', '0', '--lr', '0.05',
        '--no-progress']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes') / 'data'
    assert main(['make-data', str(root), '--size', str(SIZE), '--train', '32', '--val', '16', '--cue-conflict', '10',
                 '--silhouette', '10', '--texture-only', '10']) == 0
    return root


def run_train(data_dir, out: Path, *extra: str):
    args = build_parser().parse_args(['train', '--data-dir', str(data_dir), '--output', str(out.parent),
                                      '--experiment', out.name, *BASE, *extra])
    return train(config_from_args(args)).model


def weights(path: Path):
    return load_file(str(path))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_writes_a_timm_model_folder(tmp_path, data_dir):
    out = tmp_path / 'run'
    model = run_train(data_dir, out, '--model', 'resnet18_infodropout', '--epochs', '2', '--seed', '0',
                      '--model-kwargs', 'infodropout_beta=0.01')
    assert {'args.yaml', 'summary.csv', 'last.safetensors', 'model.safetensors', 'config.json'} <= {
        p.name for p in out.iterdir()}
    rows = (out / 'summary.csv').read_text().splitlines()
    assert rows[0].startswith('epoch,train_loss,train_kl_loss') and len(rows) == 3
    assert all(float(r.split(',')[2]) > 0 for r in rows[1:])  # the KL term was added
    loaded = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    assert loaded.pretrained_cfg['input_size'] == (3, SIZE, SIZE)
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'resnet18_infodropout' and config['model_args']['infodropout_beta'] == 0.01
    assert not {'tag', 'paper_ids', 'origin_url', 'pool_size'} & set(config['pretrained_cfg'])
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_kl_is_counted_once():
    """One SGD step (lr 1, no momentum) moves every parameter by exactly -grad(CE + beta * KL)."""
    torch.manual_seed(0)
    model = timm.create_model('resnet18_infodropout', num_classes=3, infodropout_beta=0.5)
    reference = copy.deepcopy(model)
    x, y = torch.randn(4, 3, SIZE, SIZE), torch.tensor([0, 1, 2, 0])
    prepare_for_training(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    torch.manual_seed(1)
    train_one_epoch(model, [(x, y)], optimizer, progress=False)

    set_kl_to_gradient(reference, False)
    reference.train()
    torch.manual_seed(1)
    loss = F.cross_entropy(reference(x), y) + aux_loss(reference)
    loss.backward()
    assert aux_loss(reference).item() > 0
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), q.detach() - q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_same_seed_same_weights_and_resume_continues_exactly(tmp_path, data_dir):
    common = ('--model', 'resnet18_infodrop', '--sched', 'step', '--decay-epochs', '100', '--seed', '3')
    run_train(data_dir, tmp_path / 'a', *common, '--epochs', '2')
    run_train(data_dir, tmp_path / 'b', *common, '--epochs', '2')
    assert_same_weights(weights(tmp_path / 'a' / 'model.safetensors'), weights(tmp_path / 'b' / 'model.safetensors'))

    run_train(data_dir, tmp_path / 'c', *common, '--epochs', '1')
    run_train(data_dir, tmp_path / 'c', *common, '--epochs', '2', '--resume', str(tmp_path / 'c' / 'last.safetensors'))
    assert_same_weights(weights(tmp_path / 'a' / 'model.safetensors'), weights(tmp_path / 'c' / 'model.safetensors'))
    assert len((tmp_path / 'c' / 'summary.csv').read_text().splitlines()) == 3

    run_train(data_dir, tmp_path / 'd', '--model', 'resnet18_infodrop', '--sched', 'step', '--decay-epochs', '100',
              '--seed', '4', '--epochs', '2')
    other = weights(tmp_path / 'd' / 'model.safetensors')
    assert not torch.equal(other['conv1.weight'], weights(tmp_path / 'a' / 'model.safetensors')['conv1.weight'])


def test_bf16_autocast_channels_last_and_ema(tmp_path, data_dir):
    out = tmp_path / 'amp'
    model = run_train(data_dir, out, '--model', 'resnet18_infodrop', '--epochs', '1', '--amp', '--amp-dtype',
                      'bfloat16', '--channels-last', '--model-ema', '--model-ema-decay', '0.9', '--mixup', '0.2')
    assert (out / 'model_ema.safetensors').is_file()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = (out / 'summary.csv').read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(',')[1]) > 0


def test_ddp_on_two_cpu_processes_ends_with_identical_weights(tmp_path, data_dir):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(ROOT / 'tests' / 'support' / 'ddp_worker.py'), str(tmp_path), '--data-dir', str(data_dir), '--output',
           str(tmp_path), '--experiment', 'ddp', '--model', 'resnet18_infodropout', '--epochs', '1', *BASE]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = weights(tmp_path / 'rank0.safetensors'), weights(tmp_path / 'rank1.safetensors')
    assert_same_weights(rank0, rank1)
    # 32 images, 2 processes x batch 8: two synchronised updates moved the weights
    torch.manual_seed(42)
    init = timm.create_model('resnet18_infodropout', num_classes=10).state_dict()
    assert not torch.equal(rank0['fc.weight'], init['fc.weight'])
    assert_same_weights(rank0, weights(tmp_path / 'ddp' / 'model.safetensors'))


@pytest.mark.parametrize('argv, message', [
    (['--data-dir', '/nonexistent'], "has no train/ folder"),
    (['--epochs', '0'], '--epochs must be >= 1'),
    (['-b', '1000'], 'fewer than one global batch'),
    (['--resume', '/nonexistent/last.safetensors'], 'no such file'),
])
def test_train_bad_input_is_one_line(tmp_path, data_dir, capsys, argv, message):
    code = main(['train', '--data-dir', str(data_dir), '--output', str(tmp_path), '--experiment', 'x', *BASE,
                 '--epochs', '1', *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and 'Traceback' not in err


def test_existing_run_folder_needs_overwrite(tmp_path, data_dir, capsys):
    (tmp_path / 'x').mkdir()
    code = main(['train', '--data-dir', str(data_dir), '--output', str(tmp_path), '--experiment', 'x', *BASE])
    assert code == 2 and '--overwrite' in capsys.readouterr().err


def test_a_few_unreadable_images_are_counted_and_named(tmp_path, capsys):
    """Fewer than data.folders.MAX_BAD_FRACTION unreadable images: timm's dataset skips them, the run names
    them in its log line and in RUN/unreadable_images.txt."""
    import numpy as np
    from PIL import Image

    from timm_infodrop.data.folders import MAX_BAD_FRACTION
    from timm_infodrop.train.trainer import UNREADABLE_FILE

    rng = np.random.default_rng(0)
    count = int(2 / MAX_BAD_FRACTION)  # one bad file is half the allowed fraction
    for i in range(count):
        folder = tmp_path / 'data' / 'train' / 'ab'[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f'{i}.png')
    bad = tmp_path / 'data' / 'train' / 'a' / 'cut.png'
    bad.write_bytes((tmp_path / 'data' / 'train' / 'a' / '0.png').read_bytes()[:30])
    assert main(['train', '--data-dir', str(tmp_path / 'data'), '--model', 'resnet18', '--img-size', '16', '-b', '32',
                 '--epochs', '1', '-j', '0', '--no-progress', '--output', str(tmp_path), '--experiment', 'run']) == 0
    out = capsys.readouterr().out
    assert '1 unreadable image(s) skipped' in out and 'cut.png' in out
    assert (tmp_path / 'run' / UNREADABLE_FILE).read_text().splitlines() == [str(bad)]
    assert (tmp_path / 'run' / 'model.safetensors').is_file()
