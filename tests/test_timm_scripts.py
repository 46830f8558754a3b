"""timm's scripts with the plugin: ``python -m timm_infodrop.run SCRIPT ...`` for those without --device-modules."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what timm's validate.py / inference.py / benchmark.py do first: parse --model, build it by name
STAND_IN = '''
import argparse, sys
import timm

parser = argparse.ArgumentParser()
parser.add_argument('--model', default='resnet50')
parser.add_argument('--num-classes', type=int, default=None)
args = parser.parse_args()
model = timm.create_model(args.model, num_classes=args.num_classes)
assert __name__ == '__main__' and sys.argv[0].endswith('validate.py'), (__name__, sys.argv)
assert sys.path[0] == {folder!r}, sys.path[:2]
print(type(model).__name__, model.pretrained_cfg['architecture'], model.num_classes,
      sum(type(m).__name__ == 'InfoDropConv2d' for m in model.modules()))
sys.exit(3)  # the script's own status comes back
'''


def _run(*argv, cwd=ROOT):
    # from the repository root, so that this checkout's timm_infodrop is the one imported
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd)


def test_run_route_registers_the_plugin_and_runs_the_script_as_main(tmp_path):
    script = tmp_path / 'validate.py'
    script.write_text(STAND_IN.format(folder=str(tmp_path)))
    result = _run('-m', 'timm_infodrop.run', str(script), '--model', 'resnet18_infodrop', '--num-classes', '7')
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == ['ResNet', 'resnet18_infodrop', '7', '1']
    # without the route, timm does not know the model: what the route is for
    plain = _run(str(script), '--model', 'resnet18_infodrop', cwd=tmp_path)
    assert plain.returncode != 0 and 'Unknown model' in plain.stderr


def test_run_route_errors(tmp_path):
    missing = _run('-m', 'timm_infodrop.run', str(tmp_path / 'validate.py'), '--model', 'resnet18')
    assert missing.returncode == 2 and 'no such script' in missing.stderr
    usage = _run('-m', 'timm_infodrop.run')
    assert usage.returncode == 2 and 'usage: python -m timm_infodrop.run SCRIPT' in usage.stderr


# --- a timm train.py run, converted with nothing but its files, evaluated as validate.py does --------------

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from timm_infodrop.cli import main  # noqa: E402

SIZE = 64
# what timm's train.py writes into args.yaml (the keys that matter here, and a few that do not);
# preprocessing unlike resnet18's defaults (224 px, crop 0.95, bicubic, ImageNet mean/std)
TRAIN_ARGS = {
    'model': 'resnet18_infodrop', 'num_classes': 2, 'input_size': [3, SIZE, SIZE], 'img_size': None,
    'crop_pct': 0.875, 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25], 'interpolation': 'bilinear',
    'in_chans': None, 'model_kwargs': {}, 'pretrained': False, 'epochs': 3, 'batch_size': 4, 'lr': 0.05,
    'train_interpolation': 'random', 'no_aug': False, 'output': '', 'experiment': '',
}

# timm validate.py's evaluation, in vanilla timm (no plugin): model and preprocessing from the folder alone
VALIDATE = '''
import sys, json, timm, torch
from torchvision.datasets import ImageFolder
model = timm.create_model('local-dir:{deploy}', pretrained=True).eval()
cfg = timm.data.resolve_data_config(model=model)
assert cfg == timm.data.resolve_data_config({{}}, model=model, use_test_size=True), cfg  # validate.py's default
dataset = ImageFolder('{val}', transform=timm.data.create_transform(**cfg))
loader = torch.utils.data.DataLoader(dataset, batch_size={batch_size})
correct = total = 0
with torch.no_grad():
    for images, targets in loader:
        correct += (model(images).argmax(1) == targets).sum().item()
        total += len(targets)
assert 'timm_infodrop' not in sys.modules
print(json.dumps({{'top1': correct / total, 'cfg': {{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}}}))
'''


@pytest.fixture(scope='module')
def data64(tmp_path_factory):
    """A tiny ImageFolder at 64 px: two classes (dark noise, bright square), train/ and val/."""
    root = tmp_path_factory.mktemp('data64')
    rng = np.random.default_rng(0)
    for split, count in (('train', 6), ('val', 5)):
        for label in ('noise', 'square'):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                image = (rng.random((SIZE, SIZE, 3)) * 140).astype(np.uint8)
                if label == 'square':
                    image[16:48, 16:48] = 200 + rng.integers(0, 55)
                Image.fromarray(image).save(root / split / label / f'{i}.png')
    return root


def train_py_run(run, data, args=TRAIN_ARGS):
    """``run/last.pth.tar`` and ``run/args.yaml`` laid out as timm's train.py writes them, after a few
    full-batch steps on ``data/train`` at the run's preprocessing (so the model's predictions depend on it)."""
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    torch.manual_seed(0)
    model = timm.create_model(args['model'], num_classes=args['num_classes']).train()
    transform = create_transform(**resolve_data_config(args, model=model))
    images, labels = zip(*ImageFolder(data / 'train', transform=transform))
    images, labels = torch.stack(images), torch.tensor(labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    run.mkdir(parents=True)
    torch.save({'epoch': 2, 'arch': args['model'], 'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'version': 2, 'args': argparse.Namespace(**args), 'metric': 50.0}, run / 'last.pth.tar')
    (run / 'args.yaml').write_text(yaml.safe_dump(args, default_flow_style=False))
    return run / 'last.pth.tar'


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def test_convert_a_train_py_run_and_validate_the_deployed_folder_as_timm_does(tmp_path, data64, capsys):
    run = tmp_path / 'output' / 'train' / 'run'
    checkpoint = train_py_run(run, data64)
    before = _digest(run)
    deploy = run / 'deploy'
    argv = ['convert', '--checkpoint', str(checkpoint), '--data-dir', str(data64), '--out', str(deploy),
            '--batch-size', '4', '--finetune-epochs', '1', '--keep', 'finetuned']
    assert main(argv) == 0  # neither --model nor --img-size
    stdout = capsys.readouterr().out
    assert f'preprocessing from {run / "args.yaml"}' in stdout and 'input_size (3, 64, 64)' in stdout
    assert 'kept finetuned (--keep finetuned)' in stdout.splitlines()[-1]
    assert _digest(run) == {**before, **{f'deploy/{k}': v for k, v in _digest(deploy).items()}}  # inputs untouched
    report = json.loads((deploy / 'convert_report.json').read_text())
    assert report['source_model'] == 'resnet18_infodrop' and report['architecture'] == 'resnet18'
    assert report['kept'] == 'finetuned' and report['keep'] == 'finetuned' and report['top1'] == report['top1_finetuned']
    cfg = json.loads((deploy / 'config.json').read_text())['pretrained_cfg']
    expected = {'input_size': [3, SIZE, SIZE], 'test_input_size': [3, SIZE, SIZE], 'crop_pct': 0.875,
                'test_crop_pct': 0.875, 'mean': [0.5] * 3, 'std': [0.25] * 3, 'interpolation': 'bilinear'}
    assert {k: cfg.get(k) for k in expected} == expected

    script = VALIDATE.format(deploy=deploy, val=data64 / 'val', batch_size=4)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    validated = json.loads(result.stdout)
    assert validated['top1'] == report['top1']  # exactly: the same preprocessing, the same weights
    assert {k: validated['cfg'][k] for k in ('input_size', 'crop_pct', 'mean', 'std', 'interpolation')} == {
        k: expected[k] for k in ('input_size', 'crop_pct', 'mean', 'std', 'interpolation')}

    # the output rule, end to end: an output that is, or contains, an input is refused even with --overwrite
    deployed = _digest(run)
    for checkpoint_arg, out in ((str(checkpoint), run), (str(checkpoint), run.parent), (str(checkpoint), data64),
                                (str(checkpoint), data64.parent), (f'local-dir:{deploy}', deploy)):
        code = main(['convert', '--checkpoint', checkpoint_arg, '--data-dir', str(data64), '--out', str(out),
                     '--overwrite'])
        assert code == 2, out
        last = capsys.readouterr().err.splitlines()[-1]
        assert 'is also an input' in last or 'holds the input' in last, last  # io.check_inputs_untouched's words
    assert _digest(run) == deployed


def test_args_yaml_is_read_by_its_keys_and_flags_override(tmp_path, data64, capsys):
    """train.py's args.yaml with img_size (input_size null) and defaults left null; --img-size and
    --interpolation override; the model name comes from args.yaml when the checkpoint has no arch."""
    args = dict(TRAIN_ARGS, input_size=None, img_size=SIZE, mean=None, std=None, crop_pct=1.0, interpolation='')
    run = tmp_path / 'run'
    checkpoint = train_py_run(run, data64, args)
    state = torch.load(checkpoint, weights_only=False)
    del state['arch']
    torch.save(state, checkpoint)
    argv = ['convert', '--checkpoint', str(checkpoint), '--data-dir', str(data64), '--batch-size', '4',
            '--recalibrate-batches', '1']
    assert main(argv + ['--out', str(run / 'a')]) == 0
    cfg = json.loads((run / 'a' / 'config.json').read_text())['pretrained_cfg']
    default = timm.get_pretrained_cfg('resnet18')
    assert cfg['input_size'] == [3, SIZE, SIZE] and cfg['crop_pct'] == 1.0
    assert cfg['mean'] == list(default.mean) and cfg['interpolation'] == default.interpolation
    assert main(argv + ['--out', str(run / 'b'), '--img-size', '48', '--interpolation', 'nearest']) == 0
    assert 'overridden by --img-size --interpolation' in capsys.readouterr().out
    cfg = json.loads((run / 'b' / 'config.json').read_text())['pretrained_cfg']
    assert cfg['test_input_size'] == [3, 48, 48] and cfg['interpolation'] == 'nearest' and cfg['crop_pct'] == 1.0
