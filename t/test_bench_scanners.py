"""bench/scanners.py works end to end (a short run; the figures are not asserted, the checks inside are:
every session answered 250, the qmail-queue double got each message, the scanners added their fields)."""

import os
import subprocess

import pytest

pytestmark = pytest.mark.components

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_scanners_short_run(tmp_path):
    result = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "bench", "scanners.py"), "--runs", "2",
                             "--big-mb", "2", "--big-runs", "1", "--json", str(tmp_path / "out.json")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert "our time on top of the daemons" in result.stdout, result.stdout + result.stderr
    assert "scan: 2 MB minus 1 MB" in result.stdout
    assert (tmp_path / "out.json").exists()
    assert result.returncode in (0, 1), result.stderr  # 1: a target missed on a busy machine, not a crash
