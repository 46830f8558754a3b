"""The deploy converter: strip, recalibrate, finetune, and a plain model that vanilla timm loads."""
import json
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from timm_infodrop.cli import main
from timm_infodrop.convert import check_stripped, recalibrate_bn, strip

SIZE = 32


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """A tiny ImageFolder: two classes (dark noise, bright square), train/ and val/."""
    root = tmp_path_factory.mktemp('data')
    rng = np.random.default_rng(0)
    for split, count in (('train', 8), ('val', 4)):
        for label in ('noise', 'square'):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                image = (rng.random((SIZE, SIZE, 3)) * 120).astype(np.uint8)
                if label == 'square':
                    image[8:24, 8:24] = 255
                Image.fromarray(image).save(folder / f'{i}.png')
    return root


def train_a_few_steps(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=2).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        x, y = torch.randn(8, 3, SIZE, SIZE), torch.randint(0, 2, (8,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


VANILLA = '''
import sys, timm, torch
model = timm.create_model('local-dir:{out}', pretrained=True).eval()
with torch.no_grad():
    torch.save(model(torch.load('{x}')), '{y}')
assert 'timm_infodrop' not in sys.modules
print(type(model).__name__, model.pretrained_cfg['architecture'])
'''


@pytest.mark.parametrize('method', ['infodrop', 'infodropout'])
@pytest.mark.slow
def test_convert_cli_ships_a_model_vanilla_timm_loads(tmp_path, data_dir, method):
    model = train_a_few_steps(f'resnet18_{method}')
    checkpoint = tmp_path / 'ckpt' / 'model.safetensors'
    checkpoint.parent.mkdir()
    save_file(model.state_dict(), str(checkpoint))
    out = tmp_path / 'deploy'
    args = ['convert', '--model', f'resnet18_{method}', '--checkpoint', str(checkpoint), '--data-dir', str(data_dir),
            '--out', str(out), '--img-size', str(SIZE), '--batch-size', '4', '--recalibrate-batches', '3',
            '--finetune-epochs', '1']
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'convert_report.json', 'model.safetensors']
    report = json.loads((out / 'convert_report.json').read_text())
    for key in ('top1_source', 'top1_stripped', 'top1_recalibrated', 'top1_finetuned'):
        assert 0.0 <= report[key] <= 1.0
    assert report['strip_max_abs_difference'] <= 1e-5
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'resnet18' and config['label_names'] == ['noise', 'square']
    # resnet18's published weights (tag a1_in1k, their paper) and 224 px pool size are not these weights'
    assert not {'tag', 'paper_ids', 'origin_url', 'hf_hub_id', 'pool_size'} & set(config['pretrained_cfg'])

    x = torch.randn(2, 3, SIZE, SIZE)
    torch.save(x, tmp_path / 'x.pt')
    script = VANILLA.format(out=out, x=tmp_path / 'x.pt', y=tmp_path / 'y.pt')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['ResNet', 'resnet18']
    converted = timm.create_model('resnet18', num_classes=2)
    converted.load_state_dict(load_file(out / 'model.safetensors'), strict=True)
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / 'y.pt'), converted.eval()(x))
    # the source checkpoint is untouched, and a second run needs --overwrite
    assert torch.equal(load_file(checkpoint)['conv1.weight'], model.conv1.weight)
    assert main(args) == 2
    assert main(args + ['--overwrite', '--export', 'onnx']) == 0
    assert json.loads((out / 'convert_report.json').read_text())['onnx_max_abs_difference'] <= 1e-4
    import onnxruntime
    converted.load_state_dict(load_file(out / 'model.safetensors'), strict=True)
    session = onnxruntime.InferenceSession(str(out / 'model.onnx'), providers=['CPUExecutionProvider'])
    batch = torch.randn(3, 3, SIZE, SIZE)  # another batch size: the batch axis is dynamic
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {'input': batch.numpy()})[0],
                                   converted.eval()(batch).numpy(), atol=1e-4)


def test_strip_gives_the_plain_architecture():
    model = train_a_few_steps('resnet18_infodropout')
    plain = strip(model)
    assert type(plain).__name__ == 'ResNet' and plain.pretrained_cfg['architecture'] == 'resnet18'
    state = model.state_dict()
    assert set(plain.state_dict()) == {k for k in state if '.information_dropout.' not in k}
    assert all(torch.equal(v, state[k]) for k, v in plain.state_dict().items())
    x = torch.randn(2, 3, SIZE, SIZE)
    assert check_stripped(model, plain, x) <= 1e-5
    with torch.no_grad():
        plain.fc.weight.add_(1.0)
    with pytest.raises(ValueError, match='differs from the source'):
        check_stripped(model, plain, x)


def test_recalibration_is_a_cumulative_average_with_dropout_off():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=0.1)
    model = nn.Sequential(nn.Identity(), bn)
    batches = [(torch.randn(4, 3, 5, 5) * (i + 1) + i, torch.zeros(4)) for i in range(5)]
    recalibrate_bn(model, batches)
    data = torch.stack([x for x, _ in batches])  # (batches, 4, 3, 5, 5)
    assert torch.allclose(bn.running_mean, data.mean(dim=(0, 1, 3, 4)), atol=1e-5)
    per_batch_var = torch.stack([x.transpose(0, 1).reshape(3, -1).var(dim=1) for x, _ in batches])
    assert torch.allclose(bn.running_var, per_batch_var.mean(0), atol=1e-4)
    assert bn.momentum == 0.1 and not model.training
    recalibrate_bn(model, batches, num_batches=1)
    assert torch.allclose(bn.running_mean, batches[0][0].mean(dim=(0, 2, 3)), atol=1e-5)


@pytest.mark.parametrize('case, message', [
    ('other_arch', 'missing keys'),
    ('out_holds_checkpoint', 'holds the input'),
    ('pickled_object', 'weights-only'),
    ('no_val', 'val/'),
    ('no_model', 'does not name its architecture'),
    ('model_contradicts_arch', "the checkpoint's arch"),
    ('bad_args_yaml', 'not a YAML mapping'),
    ('bad_crop_pct', '--crop-pct must be in (0, 1]'),
])
def test_convert_bad_input_is_named(tmp_path, data_dir, capsys, case, message):
    checkpoint = tmp_path / 'ckpt' / 'model.safetensors'
    checkpoint.parent.mkdir()
    weights = timm.create_model('resnet34' if case == 'other_arch' else 'resnet18_infodrop', num_classes=2)
    save_file(weights.state_dict(), str(checkpoint))
    out, data = tmp_path / 'deploy', data_dir
    if case == 'out_holds_checkpoint':
        out = checkpoint.parent
    extra = ['--model', 'resnet18_infodrop', '--img-size', str(SIZE)]
    if case == 'pickled_object':
        checkpoint = tmp_path / 'ckpt' / 'model.pth.tar'
        torch.save({'state_dict': weights.state_dict(), 'object': nn.ReLU()}, checkpoint)
    if case == 'no_val':
        data = tmp_path / 'data'
        (data / 'train').mkdir(parents=True)
    if case == 'no_model':
        extra = []
    if case == 'model_contradicts_arch':
        checkpoint = tmp_path / 'ckpt' / 'last.pth.tar'
        torch.save({'arch': 'resnet18_infodrop', 'state_dict': weights.state_dict(), 'epoch': 1}, checkpoint)
        extra = ['--model', 'resnet18_infodropout']
    if case == 'bad_args_yaml':
        (checkpoint.parent / 'args.yaml').write_text('- just\n- a list\n')
    if case == 'bad_crop_pct':
        extra += ['--crop-pct', '1.5']
    code = main(['convert', '--checkpoint', str(checkpoint), '--data-dir', str(data), '--out', str(out), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert checkpoint.is_file() if case == 'out_holds_checkpoint' else not out.exists()


def test_recalibration_batches_mix_classes(data_dir):
    """ImageFolder lists images class by class: unshuffled BN batches would each hold one class."""
    from timm_infodrop.deploy import folder_loaders

    model = timm.create_model('resnet18', num_classes=2)
    loaders, classes, _ = folder_loaders(data_dir, model, img_size=SIZE, batch_size=4, workers=0, seed=0, no_aug=True)
    assert classes == ['noise', 'square']
    batches = [labels.tolist() for _, labels in loaders['recalibrate']]
    assert any(len(set(b)) > 1 for b in batches)
    assert [label for _, labels in loaders['val'] for label in labels.tolist()] == [0] * 4 + [1] * 4


def test_convert_folder_is_the_library_route_the_cli_takes(tmp_path, data_dir):
    """timm_infodrop.deploy.convert_folder, without the CLI: the report it returns is the one it writes, the
    preprocessing line goes to ``log``, and a user error is the project's exception, not an exit status."""
    from timm_infodrop.deploy import convert_folder, convert_summary
    from timm_infodrop.errors import ConfigError, OutputError

    checkpoint = tmp_path / 'ckpt' / 'model.safetensors'
    checkpoint.parent.mkdir()
    save_file(timm.create_model('resnet18_infodrop', num_classes=2).state_dict(), str(checkpoint))
    out, lines = tmp_path / 'deploy', []
    report = convert_folder(str(checkpoint), data_dir, out, model='resnet18_infodrop', img_size=SIZE, batch_size=4,
                            recalibrate_batches=2, log=lines.append)
    assert report == json.loads((out / 'convert_report.json').read_text())
    assert report['kept'] == 'recalibrated' and report['input_size'] == [3, SIZE, SIZE]
    assert len(lines) == 1 and lines[0].startswith('preprocessing from the default config of resnet18_infodrop, '
                                                   'overridden by --img-size')
    assert convert_summary(report, out).endswith(f'; wrote {out}')
    with pytest.raises(OutputError, match='exists'):
        convert_folder(str(checkpoint), data_dir, out, model='resnet18_infodrop')
    with pytest.raises(ConfigError, match='--crop-pct'):
        convert_folder(str(checkpoint), data_dir, tmp_path / 'other', model='resnet18_infodrop', crop_pct=2.0)
