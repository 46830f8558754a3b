"""timm's scripts with the plugin: ``python -m timm_infodrop.run SCRIPT ...`` for those without --device-modules."""
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_run_route_registers_the_plugin_and_runs_the_script_as_main(tmp_path):
    script = tmp_path / 'validate.py'
    script.write_text(STAND_IN.format(folder=str(tmp_path)))
    result = _run('-m', 'timm_infodrop.run', str(script), '--model', 'resnet18_infodrop', '--num-classes', '7')
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == ['ResNet', 'resnet18_infodrop', '7', '1']
    # without the route, timm does not know the model: what the route is for
    plain = _run(str(script), '--model', 'resnet18_infodrop', cwd=tmp_path)
    assert plain.returncode != 0 and 'Unknown model' in plain.stderr


@pytest.mark.slow
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

from timm_infodrop.cli import build_parser, main  # noqa: E402

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


@pytest.mark.slow
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


# --- the documented recipes for timm's validate.py / inference.py, run as the docs write them ----------------
#
# timm's scripts are in its git repository, not in its wheel: these stand-ins (our code) take the same flags
# with the same defaults and evaluate with timm's public API as the scripts do (create_model, then the
# checkpoint; resolve_data_config with the test size unless --use-train-size; create_dataset/create_loader), so a
# flag the docs get wrong is refused and a preprocessing they get wrong measures another top-1 and crop.
import csv  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402

COMMON_FLAGS = '''
import argparse, json, os, sys
import torch, timm
from timm.data import create_dataset, create_loader, resolve_data_config

parser = argparse.ArgumentParser()
parser.add_argument('data', nargs='?', metavar='DIR', const=None)
parser.add_argument('--data-dir', metavar='DIR')
parser.add_argument('--dataset', default='')
parser.add_argument('--split', default='validation')
parser.add_argument('--class-map', default='')
parser.add_argument('--pretrained', action='store_true')
parser.add_argument('-b', '--batch-size', type=int, default=256)
parser.add_argument('--img-size', type=int, default=None)
parser.add_argument('--in-chans', type=int, default=None)
parser.add_argument('--input-size', type=int, nargs=3, default=None)
parser.add_argument('--use-train-size', action='store_true')
parser.add_argument('--crop-pct', type=float, default=None)
parser.add_argument('--crop-mode', default=None)
parser.add_argument('--mean', type=float, nargs='+', default=None)
parser.add_argument('--std', type=float, nargs='+', default=None)
parser.add_argument('--interpolation', default='')
parser.add_argument('--num-classes', type=int, default=None)
parser.add_argument('--checkpoint', default='')
parser.add_argument('--log-freq', type=int, default=10)
parser.add_argument('--num-gpu', type=int, default=1)
parser.add_argument('--channels-last', action='store_true')
parser.add_argument('--device', default='cuda')
parser.add_argument('--amp', action='store_true')
parser.add_argument('--amp-dtype', default='float16')
'''

VALIDATE_PY = COMMON_FLAGS + '''
parser.add_argument('--model', '-m', default='dpn92')
parser.add_argument('-j', '--workers', type=int, default=4)
parser.add_argument('--use-ema', action='store_true')
parser.add_argument('--no-prefetcher', action='store_true')
parser.add_argument('--results-file', default='')
parser.add_argument('--results-format', default='csv')
args = parser.parse_args()
pretrained = args.pretrained or not args.checkpoint  # as validate.py: no checkpoint, the model's own weights
model = timm.create_model(args.model, pretrained=pretrained, num_classes=args.num_classes)
if args.checkpoint:
    timm.models.load_checkpoint(model, args.checkpoint, args.use_ema)
cfg = resolve_data_config(vars(args), model=model, use_test_size=not args.use_train_size)
dataset = create_dataset(root=args.data or args.data_dir, name=args.dataset, split=args.split,
                         class_map=args.class_map)
loader = create_loader(dataset, input_size=cfg['input_size'], batch_size=args.batch_size,
                       use_prefetcher=not args.no_prefetcher, interpolation=cfg['interpolation'], mean=cfg['mean'],
                       std=cfg['std'], num_workers=args.workers, crop_pct=cfg['crop_pct'], crop_mode=cfg['crop_mode'],
                       device=torch.device(args.device))
correct = total = 0
with torch.inference_mode():
    for images, targets in loader:
        correct += (model.to(args.device).eval()(images).argmax(1) == targets).sum().item()
        total += len(targets)
results = dict(model=args.model, top1=round(100 * correct / total, 4), img_size=cfg['input_size'][-1],
               crop_pct=cfg['crop_pct'], interpolation=cfg['interpolation'], plugin='timm_infodrop' in sys.modules)
if args.results_file:
    with open(args.results_file, 'w') as f:
        json.dump(results, f)
print('--result')
print(json.dumps(results, indent=4))
'''

INFERENCE_PY = COMMON_FLAGS + '''
parser.add_argument('--model', '-m', default='resnet50')
parser.add_argument('-j', '--workers', type=int, default=2)
parser.add_argument('--results-dir', default=None)
parser.add_argument('--results-file', default=None)
parser.add_argument('--results-format', nargs='+', default=['csv'])
parser.add_argument('--topk', type=int, default=1)
parser.add_argument('--fullname', action='store_true')
parser.add_argument('--filename-col', default='filename')
parser.add_argument('--index-col', default='index')
parser.add_argument('--output-type', default='prob')
args = parser.parse_args()
pretrained = args.pretrained or not args.checkpoint
model = timm.create_model(args.model, pretrained=pretrained, num_classes=args.num_classes,
                          checkpoint_path=args.checkpoint).eval()
cfg = resolve_data_config(vars(args), model=model, use_test_size=not args.use_train_size)
dataset = create_dataset(root=args.data or args.data_dir, name=args.dataset, split=args.split,
                         class_map=args.class_map)
loader = create_loader(dataset, batch_size=args.batch_size, use_prefetcher=True, num_workers=args.workers,
                       device=torch.device(args.device), **cfg)
indices = []
with torch.inference_mode():
    for images, _ in loader:
        out = model.to(args.device)(images)
        out = out.softmax(-1) if args.output_type == 'prob' else out
        indices += out.topk(min(args.topk, out.shape[-1]))[1][:, 0].tolist()
names = loader.dataset.filenames(basename=not args.fullname)
# inference.py's output name: --results-file without a known extension, else '<model>-<img size>'; a
# 'local-dir:RUN/deploy' model names a file in a folder 'local-dir:RUN' that does not exist
name = args.results_file or f"{args.model}-{cfg['input_size'][1]}"
stem, ext = os.path.splitext(name)
name = stem if ext in ('.csv', '.json', '.parquet') else name
if args.results_dir:
    os.makedirs(args.results_dir, exist_ok=True)
    name = os.path.join(args.results_dir, name)
rows = {args.filename_col: names, args.index_col: indices}
for fmt in args.results_format:
    assert fmt == 'csv', fmt  # the formats the docs use
    try:
        import pandas  # inference.py imports it first thing (docs: pip install pandas)
        pandas.DataFrame(rows).to_csv(name + '.csv', index=False)
    except ImportError:
        import csv
        with open(name + '.csv', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(list(rows))
            writer.writerows(zip(*rows.values()))
print('--result', json.dumps({'written': name + '.csv', 'plugin': 'timm_infodrop' in sys.modules}))
'''

DOCS = ('README.md', 'docs/models.md', 'docs/deploy.md')
SCRIPTS = ('validate.py', 'inference.py')


def documented_commands(names=DOCS):
    """Every complete command of the docs that runs ``validate.py``, ``inference.py`` or ``timm-infodrop convert``:
    the lines of their fenced code blocks (continuations joined, comments dropped) and the inline code spans of
    their prose that start with ``python``; ``[(doc, argv)]``."""
    found = []
    for name in names:
        text = (ROOT / name).read_text()
        shell, prose, fence = [], [], None
        for line in text.splitlines():
            if line.startswith('```'):
                fence = None if fence is not None else line[3:].strip()
            elif fence in ('bash', 'sh', 'shell', ''):
                shell.append(line)
            elif fence is None:
                prose.append(line)
        lines = '\n'.join(shell).replace('\\\n', ' ').splitlines()
        lines += [' '.join(span.split()) for span in re.findall(r'`(python [^`]+)`', '\n'.join(prose))]
        for line in lines:
            if not any(word in line for word in (*SCRIPTS, 'timm-infodrop convert')):
                continue  # other commands
            argv = shlex.split(line, comments=True)
            if '...' in argv:
                continue  # a pointer at a recipe, not one
            if any(a in SCRIPTS for a in argv) or argv[:2] == ['timm-infodrop', 'convert']:
                found.append((name, argv))
    return found


def _placed(argv, run, data):
    """``argv`` with the docs' placeholders replaced: ``output/train/RUN`` and ``RUN`` by the run folder, ``DATA``
    by the data folder."""
    out = []
    for arg in argv:
        arg = arg.replace('output/train/RUN', str(run))
        arg = re.sub(r'(^|(?<=:))RUN(?=/|$)', str(run), arg)
        out.append(str(data) if arg == 'DATA' else arg)
    return out


@pytest.fixture(scope='module')
def data10(tmp_path_factory):
    """A tiny ImageFolder at 64 px with the docs' 10 classes (each a square of its own grey level on noise, at a
    place of its own, so that crop and scale change some predictions), train/ and val/."""
    root = tmp_path_factory.mktemp('data10')
    rng = np.random.default_rng(1)
    for split, count in (('train', 3), ('val', 3)):
        for label in range(10):
            (root / split / f'c{label}').mkdir(parents=True)
            for i in range(count):
                image = (rng.random((SIZE, SIZE, 3)) * 120).astype(np.uint8)
                at = 2 + 5 * label
                image[at:at + 14, at:at + 14] = 130 + 12 * label
                Image.fromarray(image).save(root / split / f'c{label}' / f'{i}.png')
    return root


def _script(argv, cwd):
    """Run a documented command: ``python`` is this interpreter, with this checkout importable for the
    ``-m timm_infodrop.run`` route only (the deploy-folder route runs without the plugin)."""
    assert argv[0] == 'python', argv
    env = dict(os.environ, PYTHONPATH=str(ROOT)) if argv[1:3] == ['-m', 'timm_infodrop.run'] else \
        {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, cwd=cwd, env=env)
    return result


def _result(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split('--result', 1)[1])


@pytest.mark.slow
def test_the_docs_recipes_for_timms_scripts_reproduce_the_run_and_the_convert_report(tmp_path, data10, capsys):
    """A train.py run as the docs train it (--img-size 64, nothing else), converted by the docs' convert
    command; each documented validate.py/inference.py command, placeholders filled in, runs through the route it
    is documented with against stand-ins named validate.py/inference.py. The training variant's validate.py
    top-1 and crop are the run's (the convert report's source top-1, train.py's evaluation crop); the deploy
    folder's are the report's top-1 and crop, without the plugin; inference.py writes its results file."""
    commands = documented_commands()
    by_kind = {}
    for doc, argv in commands:
        kind = ('convert' if argv[0] == 'timm-infodrop' else
                next(a for a in argv if a in SCRIPTS) + (' variant' if 'timm_infodrop.run' in argv else ' deploy'))
        by_kind.setdefault(kind, []).append((doc, argv))
    assert set(by_kind) == {'convert', 'validate.py variant', 'inference.py variant', 'validate.py deploy',
                            'inference.py deploy'}, by_kind
    # the run: as train.py writes it for `--img-size 64` (no crop, mean, std or interpolation of its own)
    run = tmp_path / 'output' / 'train' / 'run'
    args = dict(TRAIN_ARGS, num_classes=10, input_size=None, img_size=SIZE, crop_pct=None, mean=None, std=None,
                interpolation='')
    checkpoint = train_py_run(run, data10, args)
    shutil.copy2(checkpoint, run / 'model_best.pth.tar')
    for script in SCRIPTS:
        (tmp_path / script).write_text(VALIDATE_PY if script == 'validate.py' else INFERENCE_PY)
    for doc, argv in by_kind['convert']:  # every documented convert parses; the deploy docs' one makes the folder
        build_parser().parse_args(_placed(argv, run, data10)[1:])
    doc, convert = next(c for c in by_kind['convert'] if c[0] == 'docs/deploy.md')
    assert main(_placed(convert, run, data10)[1:]) == 0, doc
    capsys.readouterr()
    report = json.loads((run / 'deploy' / 'convert_report.json').read_text())
    deployed = json.loads((run / 'deploy' / 'config.json').read_text())['pretrained_cfg']
    run_crop = timm.get_pretrained_cfg('resnet18').crop_pct  # train.py evaluates at the model's crop
    assert deployed['crop_pct'] == deployed['test_crop_pct'] == run_crop

    for doc, argv in by_kind['validate.py variant']:
        validated = _result(_script(_placed(argv, run, data10), tmp_path))
        assert validated['plugin'] and (validated['img_size'], validated['crop_pct']) == (SIZE, run_crop), doc
        assert validated['top1'] == round(100 * report['top1_source'], 4), doc  # the run's top-1, exactly
    for doc, argv in by_kind['validate.py deploy']:
        assert '--checkpoint' not in argv and not any('crop' in a for a in argv), (doc, argv)  # the folder's own
        validated = _result(_script(_placed(argv, run, data10), tmp_path))
        assert not validated['plugin'] and (validated['img_size'], validated['crop_pct']) == (SIZE, run_crop), doc
        assert validated['top1'] == round(100 * report['top1'], 4), doc  # the report's top-1, exactly
    for doc, argv in by_kind['inference.py variant'] + by_kind['inference.py deploy']:
        placed = _placed(argv, run, data10)
        written = tmp_path / _result(_script(placed, tmp_path))['written']
        with written.open() as f:
            assert len(list(csv.DictReader(f))) == 10 * 3, doc
        written.unlink()
        if 'local-dir:' in ' '.join(argv):  # inference.py names its output after --model: not for a local-dir:
            without = placed[:placed.index('--results-file')] + placed[placed.index('--results-file') + 2:]
            assert _script(without, tmp_path).returncode != 0, doc


@pytest.mark.slow
def test_the_stand_ins_refuse_what_timms_scripts_refuse(tmp_path):
    """A flag timm's scripts do not have is an error, so a recipe with a wrong flag fails the test above."""
    for script in SCRIPTS:
        (tmp_path / script).write_text(VALIDATE_PY if script == 'validate.py' else INFERENCE_PY)
        result = subprocess.run([sys.executable, str(tmp_path / script), '--model', 'resnet18', '--center-crop', '0.9'],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 2 and 'unrecognized arguments: --center-crop' in result.stderr, script
