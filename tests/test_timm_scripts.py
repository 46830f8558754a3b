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
