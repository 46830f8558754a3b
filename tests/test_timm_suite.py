"""The runner of timm's model test-suite (tests/support/timm_suite.py): it skips loudly without a registry, fails
there under CI, and never passes on zero tests."""
import subprocess

import pytest

from support import timm_suite


@pytest.fixture
def unreachable(tmp_path, monkeypatch):
    """No sdist cached, and a version no registry has: the download fails (no network needed to fail)."""
    monkeypatch.setattr(timm_suite, 'CACHE', tmp_path)
    monkeypatch.setattr(timm_suite, 'timm_version', lambda: '0.0.0.dev404')  # no such release anywhere
    return tmp_path


@pytest.mark.parametrize('ci', [None, '', '0', 'false'])
def test_unreachable_sdist_skips_loudly_outside_ci(unreachable, monkeypatch, capsys, ci):
    if ci is None:
        monkeypatch.delenv('CI', raising=False)
    else:
        monkeypatch.setenv('CI', ci)
    assert timm_suite.main(['--models', 'resnet18_infodrop']) == 0
    err = capsys.readouterr().err
    assert 'SKIPPED' in err and 'could not download' in err
    assert list(unreachable.iterdir()) == []  # nothing half-downloaded left behind


@pytest.mark.parametrize('ci', ['true', '1'])
def test_unreachable_sdist_fails_under_ci(unreachable, monkeypatch, capsys, ci):
    monkeypatch.setenv('CI', ci)
    assert timm_suite.main(['--models', 'resnet18_infodrop']) == timm_suite.UNAVAILABLE_UNDER_CI != 0
    err = capsys.readouterr().err
    assert 'FAILED' in err and f'CI={ci!r} is set' in err and 'SKIPPED' not in err
    assert list(unreachable.iterdir()) == []


@pytest.mark.slow
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


def test_the_cache_is_in_the_checkout_where_git_ignores_it_and_make_clean_removes_it():
    """The downloaded sdist stays in the checkout (found again by every run, wherever it starts) in a folder git
    ignores, so nothing of it is committed, and that `make clean` removes, so a clean start fetches it again."""
    assert (timm_suite.ROOT / 'pyproject.toml').is_file()
    top = timm_suite.CACHE.relative_to(timm_suite.ROOT).parts[0]
    assert f'{top}/' in (timm_suite.ROOT / '.gitignore').read_text().split()
    clean = subprocess.run(['make', '-n', 'clean'], cwd=timm_suite.ROOT, capture_output=True, text=True)
    assert clean.returncode == 0 and top in clean.stdout.split(), clean.stdout + clean.stderr
