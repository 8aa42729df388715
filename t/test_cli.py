"""qpsmtpd.py --help / --version / --check-config [DIR], run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from deploy_support import REPO, private_install, remove_install


def cli(*args: str, install: Path = REPO, env: dict | None = None, user: str | None = None):
    full_env = {k: v for k, v in os.environ.items() if k != "QPSMTPD_CONFIG"}
    full_env.update(env or {})
    python = "/usr/bin/python3" if user else sys.executable
    kwargs = {"user": user, "group": "nogroup", "extra_groups": []} if user else {}
    return subprocess.run([python, str(install / "qpsmtpd.py"), *args], capture_output=True,
                          text=True, env=full_env, timeout=20, **kwargs)


def test_help_and_version():
    from qpsmtpd import __version__

    result = cli("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: qpsmtpd.py")
    assert "--check-config [DIR]" in result.stdout and result.stderr == ""
    version = cli("--version")
    assert version.returncode == 0 and version.stdout == f"qpsmtpd.py {__version__}\n"
    bad = cli("--frobnicate")
    assert bad.returncode == 2 and "unknown option --frobnicate" in bad.stderr and bad.stdout == ""


@pytest.fixture
def install():
    base = private_install({"plugins": ["rcpt_ok", "queue/qmail-queue /bin/true"],
                            "logging": ["logging/warn LOGINFO"], "loglevel": "4",
                            "rcpthosts": ["example.test"]})
    yield base
    remove_install(base)


def test_check_config_good(install):
    result = cli("--check-config", install=install)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok     plugins: rcpt_ok\n" in result.stdout
    assert "ok     logging: logging/warn LOGINFO\n" in result.stdout
    assert result.stdout.rstrip().endswith("no problems")
    assert result.stderr == "", "the check must not write log lines"


@pytest.mark.components
def test_check_config_reports_every_problem(install):
    other = Path(tempfile.mkdtemp(prefix="qpcheck-"))
    try:
        (other / "plugins").write_text("rcpt_ok\nno_such_plugin\nlogging/syslog facility LOG_BOGUS\n"
                                       "relay\nrcpt_ok:1\n")
        (other / "logging").write_text("logging/file loglevel LOGWHAT /tmp/x.log\n")
        (other / "loglevel").write_text("loud\n")
        secret = other / "badhelo"
        secret.write_text("x\n")
        secret.chmod(0o000)
        os.chown(other, 65534, 65534)
        other.chmod(0o755)
        result = cli("--check-config", str(other), install=install, user="nobody")
    finally:
        remove_install(other)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "ok     plugins: rcpt_ok\n" in out and "ok     plugins: relay\n" in out
    assert "ok     plugins: rcpt_ok:1\n" in out
    assert "ERROR  plugins: no_such_plugin: Plugin no_such_plugin not found" in out
    assert "ERROR  plugins: logging/syslog facility LOG_BOGUS:" in out and "unknown facility" in out
    assert "ERROR  logging: logging/file loglevel LOGWHAT /tmp/x.log:" in out
    assert "not a log level 0-7: 'loud'" in out
    assert "badhelo: cannot read: Permission denied" in out
    assert "spool: not writable by this user" in out  # the install's spool dir belongs to root
    assert out.rstrip().endswith("6 problem(s)"), out


def test_check_config_without_plugins_and_bad_dir(tmp_path):
    base = private_install({})
    try:
        empty = cli("--check-config", install=base)
        assert empty.returncode == 1 and "no plugins configured" in empty.stdout
        missing = cli("--check-config", str(tmp_path / "nope"), install=base)
        assert missing.returncode == 2 and "not a directory" in missing.stderr
    finally:
        remove_install(base)
