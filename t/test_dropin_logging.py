"""Logging levels outside 0..7 in old configs (`logging/warn 9`, the Perl samples up to 0.84) are
accepted as Perl accepts them: above 7 means everything (issue 16)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from qpsmtpd.logline import parse_level
from qpsmtpd.testing import make_install


def test_parse_level_clamps_numbers():
    assert parse_level("9") == 7 and parse_level("7") == 7 and parse_level("0") == 0
    assert parse_level("LOGINFO") == 6
    with pytest.raises(ValueError):
        parse_level("LOUD")


@pytest.mark.parametrize("line", ["logging/warn 9", "logging/adaptive accept 9 reject 12",
                                  "logging/file loglevel 9 {dir}/qp.log"])
def test_old_sample_logging_lines_load_and_log_everything(line, tmp_path):
    line = line.replace("{dir}", str(tmp_path))
    install = make_install({"logging": [line], "plugins": ["rcpt_ok"], "rcpthosts": ["example.test"],
                            "loglevel": "9"}, runnable=True)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QPSMTPD", "TCP"))}
        result = subprocess.run([sys.executable, os.path.join(install, "qpsmtpd.py")],
                                input=b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nQUIT\r\n",
                                capture_output=True, env=env, timeout=20)
    finally:
        shutil.rmtree(install, ignore_errors=True)
    assert result.stdout.startswith(b"220 "), result.stdout + result.stderr
    logged = result.stderr if "file" not in line else (tmp_path / "qp.log").read_bytes()
    if "adaptive" not in line:  # adaptive writes its lines at the end of a transaction
        assert b"dispatching HELO c" in logged, logged  # LOGDEBUG lines: everything is logged
