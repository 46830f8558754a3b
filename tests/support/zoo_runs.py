"""A zoo run killed and restarted, for the tests of the one run path every benchmark shares (the synthetic zoo in
test_zoo.py, the PACS zoo in test_pacs.py): a killed run leaves no half-written record, and the rerun skips
what was finished and does the rest."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]


def kill_after_first_run_then_restart(script: str, results: Path, rows: Sequence[str], seeds: Sequence[int],
                                      timeout: float = 900) -> str:
    """Run ``script`` (a zoo run over ``rows`` x ``seeds``) in a fresh interpreter, kill it (SIGKILL) as soon as
    its first run's record is written, check that nothing else was recorded, run it again to the end, and check
    that the finished run was skipped, its record untouched, every run recorded and summarised over every seed;
    returns the second output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + str(ROOT / 'tests'))
    command = [sys.executable, '-c', textwrap.dedent(script)]
    process = subprocess.Popen(command, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not list(results.glob('*/*/seed*/run.json')):
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, 'no run finished in time'
            time.sleep(0.2)
        first = list(results.glob('*/*/seed*/run.json'))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    assert len(first) == 1
    finished, content, stamp = first[0], first[0].read_bytes(), first[0].stat().st_mtime_ns
    assert not list(results.glob('*/*/seed*/.*'))  # no half-written record left behind
    done = subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    assert finished.read_bytes() == content and finished.stat().st_mtime_ns == stamp  # skipped, not rerun
    total = len(rows) * len(seeds)
    # only the runs still to do, counted from the progress headers (paths in the output hold digits and slashes)
    headers = re.findall(r'^== \w+ zoo (\d+)/(\d+):', done.stdout, flags=re.MULTILINE)
    assert headers == [(str(i), str(total - 1)) for i in range(1, total)], done.stdout
    records = sorted(results.glob('*/*/seed*/run.json'))
    assert len(records) == total
    assert {(r.parts[-4], int(r.parts[-2][4:])) for r in records} == {(row, s) for row in rows for s in seeds}
    summary = json.loads((results / 'summary.json').read_text())
    for row in rows:
        for stats in summary[row].values():
            assert stats['top1']['n'] == len(seeds) and stats['top1']['seeds'] == list(seeds)
    return done.stdout
