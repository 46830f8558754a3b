"""A newcomer's first hour (issue 26): every checkpoint our trainer and timm's train.py write converts, numbers
are refused before anything is written, a few unreadable images are skipped and named by convert and eval,
outputs get the umask's modes, and the pictures name their model."""
import argparse
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from timm_infodrop.cli import main

SIZE = 32


def _image_folder(root: Path, per_class: int, splits=('train', 'val'), size: int = SIZE) -> Path:
    """Two classes (dark noise, a bright square), ``per_class`` PNGs each per split."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label in ('noise', 'square'):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = (rng.random((size, size, 3)) * 120).astype(np.uint8)
                if label == 'square':
                    image[size // 4:3 * size // 4, size // 4:3 * size // 4] = 255
                Image.fromarray(image).save(folder / f'{i}.png')
    return root


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> Path:
    return _image_folder(tmp_path_factory.mktemp('data'), per_class=4)


@pytest.fixture(scope='module')
def our_run(tmp_path_factory, data_dir) -> Path:
    """A finished ``timm-infodrop train`` run (one epoch): args.yaml, last.safetensors, model.safetensors,
    config.json."""
    from timm_infodrop.train import TrainConfig, train

    output = tmp_path_factory.mktemp('runs')
    train(TrainConfig(data_dir=str(data_dir), model='resnet18_infodrop', img_size=SIZE, batch_size=4, epochs=1,
                      workers=0, output=str(output), experiment='run', no_progress=True, seed=0))
    return output / 'run'


def _convert(checkpoint, data_dir, out, **kwargs):
    from timm_infodrop.deploy import convert_folder

    return convert_folder(str(checkpoint), data_dir, out, recalibrate_batches=1, batch_size=4, seed=0, **kwargs)


@pytest.mark.slow
def test_convert_takes_every_checkpoint_our_trainer_writes(our_run, data_dir, tmp_path):
    """RUN/model.safetensors, the resume state RUN/last.safetensors (its model.* weights) and local-dir:RUN
    convert to the same model, without --model (the run's args.yaml names it); local-dir:RUN converts into
    RUN/deploy, inside the run folder, which overwrites no input."""
    assert (our_run / 'last.safetensors').is_file() and (our_run / 'model.safetensors').is_file()
    before = {p.name: p.read_bytes() for p in our_run.iterdir() if p.is_file()}
    outs = {'model': tmp_path / 'from_model', 'last': tmp_path / 'from_last', 'folder': our_run / 'deploy'}
    reports = {
        'model': _convert(our_run / 'model.safetensors', data_dir, outs['model']),
        'last': _convert(our_run / 'last.safetensors', data_dir, outs['last']),
        'folder': _convert(f'local-dir:{our_run}', data_dir, outs['folder']),
    }
    weights = {name: load_file(str(out / 'model.safetensors')) for name, out in outs.items()}
    for name in ('last', 'folder'):
        assert reports[name]['top1_source'] == reports['model']['top1_source'], name
        assert weights[name].keys() == weights['model'].keys()
        assert all(torch.equal(weights[name][k], weights['model'][k]) for k in weights['model']), name
    assert {r['source_model'] for r in reports.values()} == {'resnet18_infodrop'}
    assert {p.name: p.read_bytes() for p in our_run.iterdir() if p.is_file()} == before  # no input touched
    timm.create_model(f'local-dir:{our_run / "deploy"}', pretrained=True)  # a plain timm model folder


@pytest.mark.parametrize('name', ['last.pth.tar', 'model_best.pth.tar'])
def test_convert_takes_the_checkpoints_timm_train_py_writes(tmp_path, data_dir, name):
    """timm's train.py writes RUN/last.pth.tar and RUN/model_best.pth.tar (arch, state_dict, state_dict_ema,
    args): both convert without --model, the EMA weights preferred, into RUN/deploy."""
    torch.manual_seed(0)
    model, ema = (timm.create_model('resnet18_infodrop', num_classes=2) for _ in range(2))
    run = tmp_path / 'run'
    run.mkdir()
    args = argparse.Namespace(model='resnet18_infodrop', img_size=SIZE, num_classes=2)
    torch.save({'epoch': 1, 'arch': 'resnet18_infodrop', 'state_dict': model.state_dict(),
                'state_dict_ema': ema.state_dict(), 'args': args, 'version': 2}, run / name)
    report = _convert(run / name, data_dir, run / 'deploy')
    assert report['source_model'] == 'resnet18_infodrop' and report['input_size'] == [3, SIZE, SIZE]
    shipped = load_file(str(run / 'deploy' / 'model.safetensors'))
    assert torch.equal(shipped['conv1.weight'], ema.state_dict()['conv1.weight'])  # EMA, not the raw weights


def test_eval_takes_a_train_py_checkpoint_without_model(tmp_path, data_dir):
    """eval names the model as convert does: a timm train.py checkpoint's arch (its pickled args allowed, nothing
    else), so --model is not needed; a --model that contradicts the arch is refused in one line."""
    from timm_infodrop.errors import CheckpointError
    from timm_infodrop.eval.domain_folder import evaluate_domain_folder

    torch.manual_seed(0)
    model = timm.create_model('resnet18_infodrop', num_classes=2)
    checkpoint = tmp_path / 'run' / 'last.pth.tar'
    checkpoint.parent.mkdir()
    torch.save({'epoch': 1, 'arch': 'resnet18_infodrop', 'state_dict': model.state_dict(), 'version': 2,
                'args': argparse.Namespace(model='resnet18_infodrop', num_classes=2)}, checkpoint)
    checkpoint = str(checkpoint)
    results = evaluate_domain_folder(None, data_dir / 'val', tmp_path / 'eval', checkpoint=checkpoint, progress=False)
    assert results['model'] == 'resnet18_infodrop' and results['images'] == 8
    assert main(['eval', '--checkpoint', checkpoint, '--domain-dir', str(data_dir / 'val'), '--out',
                 str(tmp_path / 'eval2')]) == 0
    with pytest.raises(CheckpointError, match='--model resnet18 but the checkpoint'):
        evaluate_domain_folder('resnet18', data_dir / 'val', tmp_path / 'eval3', checkpoint=checkpoint)


def test_a_text_file_named_safetensors_is_named_as_such(tmp_path, data_dir, capsys):
    """Without --model, a text file renamed .safetensors is "not a safetensors file", not a checkpoint that
    "does not name its architecture"; the same from eval."""
    fake = tmp_path / 'ckpt' / 'model.safetensors'
    fake.parent.mkdir()
    fake.write_text('these are my notes, not weights\n')
    runs = [['convert', '--checkpoint', fake, '--data-dir', data_dir, '--out', tmp_path / 'deploy'],
            ['eval', '--checkpoint', fake, '--domain-dir', data_dir / 'val', '--out', tmp_path / 'eval']]
    for argv in runs:
        assert main([str(a) for a in argv]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert 'not a safetensors file' in last and str(fake) in last and 'architecture' not in last, last
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt']


def test_an_unfinished_run_folder_points_at_its_resume_state(our_run, tmp_path, data_dir):
    from timm_infodrop.deploy import convert_folder

    unfinished = tmp_path / 'unfinished'
    unfinished.mkdir()
    (unfinished / 'last.safetensors').write_bytes((our_run / 'last.safetensors').read_bytes())
    with pytest.raises(FileNotFoundError, match=r'has no config.json .*--checkpoint .*unfinished/last.safetensors'):
        convert_folder(f'local-dir:{unfinished}', data_dir, tmp_path / 'deploy')


# ---------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize('size', ['-5', '0'])
def test_train_refuses_a_bad_image_size_before_any_folder(tmp_path, data_dir, capsys, size):
    code = main(['train', '--model', 'resnet18', '--data-dir', str(data_dir), '--output', str(tmp_path / 'runs'),
                 '--experiment', 'run', '-b', '2', '-j', '0', '--img-size', size])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f'timm-infodrop train: error: --img-size must be >= 1, got {size}'], err
    assert not (tmp_path / 'runs').exists()


def test_eval_refuses_a_zero_batch_size_for_either_data_source(tmp_path, data_dir, capsys):
    bench = tmp_path / 'bench'
    assert main(['make-data', str(bench), '--size', '16', '--train', '2', '--val', '2']) == 0
    capsys.readouterr()
    for source in (['--data', bench], ['--domain-dir', data_dir / 'val']):
        code = main(['eval', '--model', 'resnet18', *map(str, source), '--out', str(tmp_path / 'eval'),
                     '--batch-size', '0'])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == ['timm-infodrop eval: error: --batch-size must be >= 1, got 0'], err
    assert not (tmp_path / 'eval').exists()


# ---------------------------------------------------------------------------------------------- unreadable images
@pytest.fixture(scope='module')
def one_bad_jpeg(tmp_path_factory) -> Path:
    """An ImageFolder of 100 small PNGs a split plus one zero-byte .jpg in a class folder of each (under 1%)."""
    root = _image_folder(tmp_path_factory.mktemp('bad'), per_class=50, size=8)
    for split in ('train', 'val'):
        (root / split / 'square' / 'empty.jpg').write_bytes(b'')
    return root


@pytest.mark.slow
def test_convert_skips_and_names_a_few_unreadable_images(tmp_path, one_bad_jpeg, capsys):
    """A zero-byte .jpg that train skips: convert skips it too (recalibration, finetuning and evaluation), names
    it and lists it in OUT/unreadable_images.txt, exit 0, never a traceback."""
    from safetensors.torch import save_file

    checkpoint = tmp_path / 'ckpt' / 'model.safetensors'
    checkpoint.parent.mkdir()
    save_file(timm.create_model('resnet18_infodrop', num_classes=2).state_dict(), str(checkpoint))
    out = tmp_path / 'deploy'
    code = main(['convert', '--model', 'resnet18_infodrop', '--checkpoint', str(checkpoint), '--data-dir',
                 str(one_bad_jpeg), '--out', str(out), '--img-size', str(SIZE), '--finetune-epochs', '1',
                 '--batch-size', '16'])
    captured = capsys.readouterr()
    bad = [one_bad_jpeg / split / 'square' / 'empty.jpg' for split in ('train', 'val')]
    assert code == 0, captured.err[-2000:]
    assert f'2 unreadable image(s) skipped (listed in {out / "unreadable_images.txt"})' in captured.out
    assert (out / 'unreadable_images.txt').read_text().splitlines() == [str(p) for p in bad]
    assert json.loads((out / 'convert_report.json').read_text())['unreadable_images'] == [str(p) for p in bad]


@pytest.mark.slow
def test_eval_skips_and_names_a_few_unreadable_images(tmp_path, one_bad_jpeg, capsys, monkeypatch):
    """eval --data (a benchmark whose val/ has one zero-byte file in 101) and eval --domain-dir (one in 101):
    skipped, named and listed, exit 0."""
    bench = tmp_path / 'bench'
    assert main(['make-data', str(bench), '--size', '32', '--train', '2', '--val', '100']) == 0
    metadata = json.loads((bench / 'val' / 'metadata.json').read_text())
    broken = bench / 'val' / metadata['samples'][3]['file']
    broken.write_bytes(b'')
    code = main(['eval', '--model', 'resnet18', '--data', str(bench), '--out', str(tmp_path / 'eval'),
                 '--corruption-images', '2', '--pgd-images', '2'])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert '1 unreadable image(s) skipped' in captured.out and str(broken) in captured.out
    assert (tmp_path / 'eval' / 'unreadable_images.txt').read_text().splitlines() == [str(broken)]
    assert json.loads((tmp_path / 'eval' / 'results.json').read_text())['unreadable_images'] == [str(broken)]

    monkeypatch.setenv('TIMM_INFODROP_CACHE', str(tmp_path / 'cache'))
    code = main(['eval', '--model', 'resnet18', '--domain-dir', str(one_bad_jpeg / 'val'), '--out',
                 str(tmp_path / 'domain')])
    captured = capsys.readouterr()
    bad = one_bad_jpeg / 'val' / 'square' / 'empty.jpg'
    assert code == 0, captured.err[-2000:]
    assert (tmp_path / 'domain' / 'unreadable_images.txt').read_text().splitlines() == [str(bad)]
    assert json.loads((tmp_path / 'domain' / 'results.json').read_text())['images'] == 100


# ---------------------------------------------------------------------------------------------- modes
@pytest.fixture
def umask():
    """Set the process umask for a test, and restore it."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize('mask, file_mode, folder_mode', [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_get_the_modes_of_a_plain_open_under_the_umask(tmp_path, data_dir, umask, mask, file_mode,
                                                               folder_mode):
    """A deploy folder, its model and report, and a file written by the atomic helper (how REPORT.md, run.json
    and args.yaml are written) get 0o666/0o777 less the umask, not the temporary files' private 0600/0700."""
    from safetensors.torch import save_file

    from timm_infodrop.io import atomic_output

    umask(mask)
    checkpoint = tmp_path / 'ckpt' / 'model.safetensors'
    checkpoint.parent.mkdir()
    save_file(timm.create_model('resnet18_infodrop', num_classes=2).state_dict(), str(checkpoint))
    out = tmp_path / 'deploy'
    _convert(checkpoint, data_dir, out, model='resnet18_infodrop', img_size=SIZE)
    assert _mode(out) == folder_mode
    for name in ('model.safetensors', 'config.json', 'convert_report.json'):
        assert _mode(out / name) == file_mode, name
    with atomic_output(tmp_path / 'reports' / 'REPORT.md') as tmp:
        tmp.write_text('# report\n')
    assert _mode(tmp_path / 'reports' / 'REPORT.md') == file_mode


def test_a_training_run_is_readable_by_others(our_run):
    """The run folder's files (args.yaml, last.safetensors, model.safetensors, config.json, summary.csv) have
    the umask's modes, like the folder itself."""
    from timm_infodrop.io import default_mode

    assert _mode(our_run) == default_mode(directory=True)
    for name in ('args.yaml', 'last.safetensors', 'model.safetensors', 'config.json', 'summary.csv'):
        assert _mode(our_run / name) == default_mode(), name


# ---------------------------------------------------------------------------------------------- pictures
@pytest.mark.slow
def test_every_picture_is_titled_with_its_model(tmp_path, monkeypatch):
    """A deployed model's architecture is the plain one (resnet18 for every zoo row): the pictures are titled
    with the row (the deploy folder's name), or --name, never the bare architecture."""
    from timm.models import save_for_hf

    from timm_infodrop.eval import saliency
    from timm_infodrop.eval.suite import picture_name

    bench = tmp_path / 'bench'
    assert main(['make-data', str(bench), '--size', '32', '--train', '2', '--val', '4']) == 0
    deploy = tmp_path / 'deploy' / 'resnet18_infodrop-seed0'
    save_for_hf(timm.create_model('resnet18', num_classes=10), str(deploy), safe_serialization=True)
    titles = []
    for plot in ('plot_severity', 'plot_saliency_grid', 'plot_shape_bias'):
        original = getattr(saliency, plot)

        def spy(*args, _original=original, _names=1 if plot == 'plot_saliency_grid' else 0, **kwargs):
            titles.append(list(args[_names]))  # the names the picture shows: its legend, columns or bars
            return _original(*args, **kwargs)
        monkeypatch.setattr(saliency, plot, spy)
    base = ['eval', '--checkpoint', f'local-dir:{deploy}', '--data', str(bench), '--corruption-images', '1',
            '--pgd-images', '1']
    assert main(base + ['--out', str(tmp_path / 'a')]) == 0
    assert titles == [['resnet18_infodrop-seed0']] * 3
    titles.clear()
    assert main(base + ['--out', str(tmp_path / 'b'), '--name', 'InfoDrop (seed 0)']) == 0
    assert titles == [['InfoDrop (seed 0)']] * 3
    assert picture_name('resnet18_infodrop', 'x.safetensors') == 'resnet18_infodrop'
    assert picture_name(None, 'runs/r1/last.safetensors') == 'r1/last'
    assert picture_name(None, 'hf-hub:org/resnet18_infodrop.shapes64') == 'resnet18_infodrop.shapes64'
    assert picture_name(None, None) is None
