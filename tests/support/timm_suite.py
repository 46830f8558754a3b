"""Run timm's own model test-suite (``tests/test_models.py`` of timm's sdist) on our variants.

    python tests/support/timm_suite.py [--models NAME ...] [-- PYTEST ARGS]

Fetches the sdist of the *installed* timm version once with ``pip download`` into
``.cache/timm-sdist/`` (the sdist carries the tests; the wheel does not), then runs
``pytest -p timm_infodrop test_models.py -k <variants>``. Without ``--models`` every registered
variant is selected. If no package registry is reachable and nothing is cached, it says so and
exits 0 (the step is skipped, loudly), except under CI (the ``CI`` environment variable set, as CI
services do, and not ``0``/``false``/``no``): there the suite must run, so it fails with exit 3. If the
selection matches no test it fails (pytest's exit 5 would otherwise pass silently).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / '.cache' / 'timm-sdist'
NO_TESTS_COLLECTED = 5
UNAVAILABLE_UNDER_CI = 3


def under_ci() -> bool:
    """Whether this runs under CI: ``$CI`` set to anything but empty, ``0``, ``false`` or ``no``."""
    return os.environ.get('CI', '').strip().lower() not in ('', '0', 'false', 'no')


def timm_version() -> str:
    from importlib.metadata import version
    return version('timm')


def fetch_suite(version: str) -> Optional[Path]:
    """Path of timm's ``tests`` folder for ``version``, downloading the sdist if needed; None if unreachable."""
    suite = CACHE / f'timm-{version}' / 'tests'
    if (suite / 'test_models.py').is_file():
        return suite
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', f'timm=={version}', '--no-deps', '--no-binary', ':all:',
               '--disable-pip-version-check', '--quiet', '-d', tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob('timm-*.tar.gz'))
        if result.returncode != 0 or not archives:
            print(f'timm_suite: could not download the timm {version} sdist (no package registry reachable?):\n'
                  + result.stderr.strip()[-2000:], file=sys.stderr)
            return None
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(f'timm-{version}/tests/')]
            archive.extractall(tmp, members=members, filter='data')
        target = CACHE / f'timm-{version}'
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / f'timm-{version}', target)  # atomic: a half-unpacked suite is never seen
    return suite


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', help='variant names (default: every registered variant)')
    parser.add_argument('pytest_args', nargs='*', help='passed to pytest (after --)')
    args = parser.parse_args(argv)

    import timm
    import timm_infodrop  # noqa: F401  registers the variants
    registered = timm.list_models('*_infodrop') + timm.list_models('*_infodropout')
    models = args.models or registered
    unknown = sorted(set(models) - set(registered))
    if unknown:
        parser.error(f'not registered variants: {unknown}')

    version = timm_version()
    suite = fetch_suite(version)
    if suite is None:
        if under_ci():
            print(f'timm_suite: FAILED: CI={os.environ["CI"]!r} is set, so timm {version}\'s model test-suite must '
                  f'run on {len(models)} variants, but no sdist is cached in {CACHE} and none could be downloaded '
                  '(make a package registry reachable, or unset CI to skip this step)', file=sys.stderr)
            return UNAVAILABLE_UNDER_CI
        print(f'timm_suite: SKIPPED timm {version} model test-suite for {len(models)} variants: '
              'no sdist cached and none downloadable (under CI this fails)', file=sys.stderr)
        return 0
    # test ids end in "[<batch size>-<model>]" or "[<model>]": the name followed by "]" matches exactly
    expression = ' or '.join(f'{name}]' for name in models)
    cmd = [sys.executable, '-m', 'pytest', '-p', 'timm_infodrop', str(suite / 'test_models.py'),
           '-k', expression, '-q', '-p', 'no:cacheprovider', '--rootdir', str(suite),
           '-o', 'addopts=',  # our pyproject's --strict-markers is for our tests; timm's suite has its own markers
           '-W', 'ignore::pytest.PytestUnknownMarkWarning', *args.pytest_args]
    print(f'timm_suite: timm {version} test_models.py on {len(models)} variants', flush=True)
    code = subprocess.run(cmd, cwd=suite).returncode
    if code == NO_TESTS_COLLECTED:
        print(f'timm_suite: the selection matched no test of timm {version}: {expression}', file=sys.stderr)
        return 1
    return code


if __name__ == '__main__':
    sys.exit(main())
