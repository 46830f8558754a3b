"""The trainer: timm train.py arguments, recipes, KL counted once, resume, determinism, DDP, safetensors."""
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from support.processes import popen_interruptible
from timm_infodrop.cli import build_parser, main
from timm_infodrop.cli.train import config_from_args
from timm_infodrop.train import train
from timm_infodrop.layers import aux_loss, set_kl_to_gradient
from timm_infodrop.train import prepare_for_training, train_one_epoch

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
BASE = ['--img-size', str(SIZE), '-b', '8', '--no-aug', '-j', '0', '--warmup-epochs', '0', '--lr', '0.05',
        '--no-progress']
# timm's training augmentation on: random resized crops at a random interpolation and flips (Python's random),
# colour jitter (torch's), Mixup and CutMix (numpy's)
AUG = [arg for arg in BASE if arg != '--no-aug'] + ['--mixup', '0.4', '--cutmix', '0.4']
CLI = str(Path(sys.executable).parent / 'timm-infodrop')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes') / 'data'
    assert main(['make-data', str(root), '--size', str(SIZE), '--train', '32', '--val', '16', '--cue-conflict', '10',
                 '--silhouette', '10', '--texture-only', '10']) == 0
    return root


def run_train(data_dir, out: Path, *extra: str, base=BASE):
    args = build_parser().parse_args(['train', '--data-dir', str(data_dir), '--output', str(out.parent),
                                      '--experiment', out.name, *base, *extra])
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


@pytest.mark.parametrize('workers', ['0', '1'])
def test_same_seed_same_weights_with_augmentation(tmp_path, data_dir, workers):
    """Augmentation on, in the training process (-j 0) or in a loader worker (-j 1): two runs with one seed write
    the same weights (every generator the pipeline draws from is seeded), another seed other weights."""
    common = ('--model', 'resnet18_infodrop', '--epochs', '1', '--train-batches-per-epoch', '2', '-j', workers)
    for name, seed in (('a', '3'), ('b', '3'), ('c', '4')):
        run_train(data_dir, tmp_path / name, *common, '--seed', seed, base=AUG)
    a, b, c = (weights(tmp_path / name / 'model.safetensors') for name in 'abc')
    assert_same_weights(a, b)
    assert not torch.equal(a['conv1.weight'], c['conv1.weight'])


def _wait_for_rows(summary: Path, rows: int, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until ``summary`` (a run's summary.csv) logs ``rows`` epochs; the process must still run."""
    deadline = time.monotonic() + timeout
    while not (summary.is_file() and len(summary.read_text().splitlines()) > rows):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f'{summary} did not log {rows} epoch(s) in {timeout} s'
        time.sleep(0.05)


@pytest.mark.slow
def test_a_run_interrupted_in_its_second_epoch_resumes_to_the_same_weights(tmp_path, data_dir):
    """Augmentation on: a run stopped by SIGINT (Ctrl-C) during its second epoch and resumed as the docs say,
    ``timm-infodrop train --resume RUN/last.safetensors`` and nothing else, writes the uninterrupted run's
    weights and log (the run's settings from its args.yaml, every generator's state from the training state)."""
    from timm_infodrop.train.state import load_training_state

    common = ['--data-dir', str(data_dir), '--output', str(tmp_path), *AUG, '--model', 'resnet18_infodrop',
              '--epochs', '3', '--seed', '3']
    assert main(['train', *common, '--experiment', 'whole']) == 0
    run = tmp_path / 'cut'
    process = popen_interruptible([CLI, 'train', *common, '--experiment', 'cut'], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(run / 'summary.csv', 1, process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and 'interrupted' in stderr, stderr[-3000:]
    assert not (run / 'model.safetensors').exists()
    state = load_training_state(run / 'last.safetensors', timm.create_model('resnet18_infodrop', num_classes=10))
    assert state.epoch == 1  # stopped in the second epoch
    resumed = subprocess.run([CLI, 'train', '--resume', str(run / 'last.safetensors')], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(weights(tmp_path / 'whole' / 'model.safetensors'), weights(run / 'model.safetensors'))
    whole, cut = (list(csv_rows(folder / 'summary.csv')) for folder in (tmp_path / 'whole', run))
    assert [row['epoch'] for row in cut] == ['1', '2', '3']
    assert [row['train_loss'] for row in cut] == [row['train_loss'] for row in whole]


def csv_rows(path: Path):
    import csv

    with path.open() as f:
        yield from csv.DictReader(f)


def test_resume_takes_the_runs_settings_and_refuses_a_flag_that_contradicts_them(tmp_path, data_dir, capsys,
                                                                              monkeypatch):
    """``--resume RUN/last.safetensors`` continues RUN with the settings of its args.yaml (a flag left out is
    the run's, not the default: 32 px stays 32 px); a flag that contradicts them is one line naming the flag,
    its value and args.yaml, exit 2, and nothing of the run changes. ``--epochs`` may change (a longer run)."""
    monkeypatch.chdir(tmp_path)  # a resume that forgot the run's folder would write into ./output/train
    run = tmp_path / 'run'
    run_train(data_dir, run, '--model', 'resnet18_infodrop', '--epochs', '1', '--seed', '0',
              '--train-batches-per-epoch', '1', base=AUG)
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    state = str(run / 'last.safetensors')
    capsys.readouterr()
    for flag in (['--seed', '5'], ['--img-size', '48'], ['--model', 'resnet18'], ['--no-aug'],
                 ['--data-dir', str(tmp_path)], ['--experiment', 'elsewhere'], ['--lr', '0.1']):
        assert main(['train', '--resume', state, *flag]) == 2, flag
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('timm-infodrop train: error: --resume'), err
        assert ' '.join(flag) in err[0] and 'args.yaml' in err[0], err
        assert {p.name: p.read_bytes() for p in run.iterdir()} == files and not (tmp_path / 'output').exists()

    assert main(['train', '--resume', state, '--epochs', '2']) == 0
    settings = yaml.safe_load((run / 'args.yaml').read_text())
    assert settings['input_size'] == [3, SIZE, SIZE] and settings['seed'] == 0 and settings['epochs'] == 2
    assert [row['epoch'] for row in csv_rows(run / 'summary.csv')] == ['1', '2']
    assert not (tmp_path / 'output').exists()


@pytest.mark.slow
def test_a_run_folder_in_use_is_refused_and_overwrite_replaces_it_whole(tmp_path, data_dir, capsys):
    """While a run holds its folder, a second run into it is refused in one line, with --overwrite too, and so is
    a --resume of it (nothing of the first's changes); once it is gone, --overwrite replaces the folder whole (no
    row or file of the old run is left)."""
    common = ['--data-dir', str(data_dir), '--output', str(tmp_path), '--experiment', 'run', *BASE,
              '--model', 'resnet18_infodrop']
    run = tmp_path / 'run'
    first = popen_interruptible([CLI, 'train', *common, '--epochs', '500'], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(run / 'summary.csv', 1, first)
        for argv in (['train', *common, '--epochs', '1', '--overwrite'],
                     ['train', '--resume', str(run / 'last.safetensors')]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and str(run) in err[0] and 'in use' in err[0], err
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    epochs = [int(row['epoch']) for row in csv_rows(run / 'summary.csv')]
    assert epochs == list(range(1, len(epochs) + 1))  # the first run's rows only
    (run / 'deploy').mkdir()  # what a convert --out RUN/deploy of the old run leaves
    assert main(['train', *common, '--epochs', '1', '--overwrite']) == 0
    assert [row['epoch'] for row in csv_rows(run / 'summary.csv')] == ['1']
    assert not (run / 'deploy').exists()


def test_no_progress_draws_no_bar(tmp_path, data_dir, capsys):
    """--no-progress: neither the training nor the evaluation after each epoch draws a progress bar."""
    assert main(['train', '--data-dir', str(data_dir), '--output', str(tmp_path), '--experiment', 'run', *BASE,
                 '--model', 'resnet18', '--epochs', '1', '--train-batches-per-epoch', '1']) == 0
    captured = capsys.readouterr()
    assert 'val top-1' in captured.out  # it evaluated
    assert '%|' not in captured.err + captured.out and 'evaluating' not in captured.err, captured.err


def test_a_class_folder_with_one_image_is_named_in_a_warning(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, counts in (('train', {'a': 4, 'b': 1, 'c': 3}), ('val', {'a': 1, 'b': 1, 'c': 1})):
        for label, count in counts.items():
            (tmp_path / 'data' / split / label).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    tmp_path / 'data' / split / label / f'{i}.png')
    assert main(['train', '--data-dir', str(tmp_path / 'data'), '--model', 'resnet18', '--img-size', '16', '-b', '4',
                 '--epochs', '1', '-j', '0', '--no-progress', '--output', str(tmp_path), '--experiment', 'run']) == 0
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if 'one image' in line]
    single = str(tmp_path / 'data' / 'train' / 'b')
    assert len(lines) == 1 and single in lines[0] and 'warning' in lines[0], captured
    assert str(tmp_path / 'data' / 'train' / 'c') not in lines[0] and 'val' not in lines[0].replace(single, '')


def test_pretrained_path_takes_what_the_readme_says_for_each_trainer(tmp_path):
    """timm's train.py hands --pretrained-path to timm as the weights file (``pretrained_cfg_overlay=dict(file=...,
    num_classes=-1)``): a timm model folder is not one, its model.safetensors is. ``timm-infodrop train`` takes
    both. README's sentence says which takes what."""
    from timm_infodrop.train.distributed import DistributedContext
    from timm_infodrop.train.trainer import _build_model
    from timm_infodrop.train import TrainConfig

    folder = tmp_path / 'weights'
    torch.manual_seed(0)
    source = timm.create_model('resnet18', num_classes=5)
    timm.models.save_for_hf(source, str(folder), safe_serialization=True)

    def train_py(path):  # what timm's train.py does with --pretrained-path PATH
        return timm.create_model('resnet18_infodrop', pretrained=True, num_classes=3,
                                 pretrained_cfg_overlay=dict(file=str(path), num_classes=-1))

    assert torch.equal(train_py(folder / 'model.safetensors').conv1.weight, source.conv1.weight)
    with pytest.raises(Exception):
        train_py(folder)
    for path in (folder, folder / 'model.safetensors'):
        ours = _build_model(TrainConfig(model='resnet18_infodrop', pretrained_path=str(path)), DistributedContext(), 3)
        assert torch.equal(ours.conv1.weight, source.conv1.weight) and ours.num_classes == 3
    paragraphs = (ROOT / 'README.md').read_text().split('\n\n')
    said = [(' '.join(span.split()), paragraph) for paragraph in paragraphs
            for span in re.findall(r'`([^`]*--pretrained-path\s[^`]*)`', paragraph)]
    assert said, 'README does not mention --pretrained-path'
    for span, _ in said:  # a folder is ours only
        if not span.split('--pretrained-path ')[1].split()[0].endswith('.safetensors'):
            assert span.startswith('timm-infodrop train'), span
    assert any(span.endswith('/model.safetensors') and 'train.py' in paragraph for span, paragraph in said), said


def test_bf16_autocast_channels_last_and_ema(tmp_path, data_dir):
    out = tmp_path / 'amp'
    model = run_train(data_dir, out, '--model', 'resnet18_infodrop', '--epochs', '1', '--amp', '--amp-dtype',
                      'bfloat16', '--channels-last', '--model-ema', '--model-ema-decay', '0.9', '--mixup', '0.2')
    assert (out / 'model_ema.safetensors').is_file()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = (out / 'summary.csv').read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(',')[1]) > 0


@pytest.mark.slow
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
