"""The runner of timm's model test-suite: it skips loudly without a registry and never passes on zero tests."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location('timm_suite', Path(__file__).with_name('timm_suite.py'))
timm_suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timm_suite)


def test_unreachable_sdist_skips_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(timm_suite, 'CACHE', tmp_path)
    monkeypatch.setattr(timm_suite, 'timm_version', lambda: '0.0.0.dev404')  # no such release anywhere
    assert timm_suite.main(['--models', 'resnet18_infodrop']) == 0
    err = capsys.readouterr().err
    assert 'SKIPPED' in err and 'could not download' in err
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded left behind


def test_zero_selected_tests_fail(tmp_path, monkeypatch, capsys):
    suite = tmp_path / 'timm-9.9.9' / 'tests'
    suite.mkdir(parents=True)
    (suite / 'test_models.py').write_text('def test_other():\n    pass\n')
    monkeypatch.setattr(timm_suite, 'CACHE', tmp_path)
    monkeypatch.setattr(timm_suite, 'timm_version', lambda: '9.9.9')
    assert timm_suite.main(['--models', 'resnet18_infodrop']) == 1
    assert 'matched no test' in capsys.readouterr().err


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit) as exit_info:
        timm_suite.main(['--models', 'resnet18_nodrop'])
    assert exit_info.value.code == 2
