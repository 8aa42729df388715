"""The benchmark harness works (no timing asserted), and `--compile` caches plugin bytecode.

`bench/run.py --self-check` builds the C qmail-queue double and the rusage
launcher, runs `python3 -c pass` through the launcher, and runs one small
and one 2 MB session with the minimal and the typical stack, checking the
replies and that the double received each message with a well-formed
envelope.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from qpsmtpd.compile import compile_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


@pytest.mark.components
def test_bench_self_check() -> None:
    result = subprocess.run([PYTHON, os.path.join(REPO, "bench", "run.py"), "--self-check"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={k: v for k, v in os.environ.items() if k != "QPSMTPD_PERL"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "qmail-queue double: C" in result.stdout
    assert "self-check ok" in result.stdout


def _install(tmp_path, plugins: dict[str, str]) -> str:
    install = tmp_path / "install"
    (install / "config").mkdir(parents=True)
    (install / "lib").symlink_to(os.path.join(REPO, "lib"))
    with open(os.path.join(REPO, "qpsmtpd.py")) as source:
        (install / "qpsmtpd.py").write_text(source.read())
    for name, text in plugins.items():
        path = install / "plugins" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(install)


def test_compile_writes_bytecode_the_loader_uses(tmp_path) -> None:
    plugin = "def hook_rcpt(self, transaction, recipient, *args):\n    return OK\n"
    install = _install(tmp_path, {"sub/noext": plugin, "notes.txt": "not a plugin\n"})
    assert compile_all(install, []) == 0
    cached = importlib.util.cache_from_source(os.path.join(install, "plugins", "sub", "noext"))
    assert os.path.exists(cached)
    assert not os.path.exists(importlib.util.cache_from_source(os.path.join(install, "plugins", "notes.txt")))
    (tmp_path / "install" / "config" / "plugins").write_text("sub/noext\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TCPREMOTEIP": "127.0.0.1"}
    env.pop("QPSMTPD_CONFIG", None)
    session = b"HELO a\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nQUIT\r\n"
    result = subprocess.run([PYTHON, "-v", os.path.join(install, "qpsmtpd.py")], input=session,
                            capture_output=True, env=env, timeout=30, check=False)
    assert b"250 x@y.test" in result.stdout or b"250 <x@y.test>" in result.stdout, result.stdout
    assert f"{cached} matches".encode() in result.stderr


def test_compile_reports_a_broken_plugin(tmp_path, capsys) -> None:
    install = _install(tmp_path, {"good.py": "def hook_connect(self, transaction):\n    return DECLINED\n",
                                  "broken.py": "def hook_connect(self:\n"})
    assert compile_all(install, []) == 1
    captured = capsys.readouterr()
    assert "broken.py" in captured.err
    assert "1 failed" in captured.out
