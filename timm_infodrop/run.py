"""Run one of timm's scripts with the plugin imported: ``python -m timm_infodrop.run SCRIPT [ARGS...]``.

timm's ``train.py`` imports a plugin with ``--device-modules timm_infodrop``; ``validate.py``,
``inference.py`` and ``benchmark.py`` have no such option, so ``--model resnet18_infodrop`` is unknown
to them. This route imports :mod:`timm_infodrop` (registering every ``*_infodrop`` and
``*_infodropout`` model) and then runs SCRIPT as ``__main__``, as ``python SCRIPT ARGS...`` would:
``sys.argv`` is ``[SCRIPT, ARGS...]`` and the script's folder is first on ``sys.path``. The script's
exit status is this command's.

A deployed model (``timm-infodrop convert``: the plain architecture) needs none of this: plain timm
loads it.
"""
import runpy
import sys
from pathlib import Path
from typing import List, Optional

__all__ = ['main', 'run_script']

USAGE = 'usage: python -m timm_infodrop.run SCRIPT [ARGS...]   (e.g. validate.py --model resnet18_infodrop ...)'


def run_script(script: str, args: List[str]) -> None:
    """Import the plugin, then run ``script`` as ``__main__`` with ``sys.argv = [script, *args]``."""
    import timm_infodrop  # noqa: F401  registers the variants before the script builds its model

    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(f'{script!r}: no such script (timm\'s validate.py, inference.py and benchmark.py '
                                'are in its git repository, not in the wheel)')
    sys.argv = [script, *args]
    folder = str(path.resolve().parent)
    if sys.path and sys.path[0] in ('', str(Path.cwd())):  # python -m put the working directory first
        sys.path[0] = folder
    else:
        sys.path.insert(0, folder)
    runpy.run_path(script, run_name='__main__')


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        out = sys.stdout if argv else sys.stderr
        print(USAGE, file=out)
        print('imports timm_infodrop (registering the *_infodrop and *_infodropout models), then runs SCRIPT as '
              '__main__ with sys.argv = [SCRIPT, ARGS...]', file=out)
        return 0 if argv else 2
    if not Path(argv[0]).is_file():
        print(f'timm_infodrop.run: error: {argv[0]!r}: no such script (timm\'s validate.py, inference.py and '
              'benchmark.py are in its git repository, not in the wheel)', file=sys.stderr)
        return 2
    run_script(argv[0], argv[1:])  # the script's SystemExit passes through: its status is ours
    return 0


if __name__ == '__main__':
    sys.exit(main())
