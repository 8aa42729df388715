"""Shipped defaults never mask an admin's files (issue 16): the repository has no config/, its
sample is read only when pointed at, and qmail's control files (rcpthosts, databytes, me) work
with no copy in $QPSMTPD_CONFIG.  A temp dir stands in for /var/qmail through $QMAIL."""

from __future__ import annotations

import os
import subprocess
import sys

from qpsmtpd.config import Config
from qpsmtpd.testing import REPO_DIR

QPSMTPD = os.path.join(REPO_DIR, "qpsmtpd.py")
TEST_PLUGINS = os.path.join(REPO_DIR, "t", "plugins_for_tests")


def write(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)


def test_repository_ships_no_config_dir_only_a_sample():
    assert not os.path.exists(os.path.join(REPO_DIR, "config")) or not os.listdir(os.path.join(REPO_DIR, "config"))
    sample = os.path.join(REPO_DIR, "config.sample")
    assert {"plugins", "rcpthosts", "relayclients", "logging"} <= set(os.listdir(sample))
    assert "databytes" not in os.listdir(sample)  # a sample copied whole must not hide qmail's databytes


def test_qmail_control_files_are_used_with_the_real_install(tmp_path):
    qmail = tmp_path / "qmail"
    write(str(qmail / "control"), {"rcpthosts": "example.test\n", "databytes": "1000\n", "me": "mx.example.test\n"})
    config = tmp_path / "config"
    queue = tmp_path / "queue"
    queue.mkdir()
    write(str(config), {"plugins": f"rcpt_ok\nqueue_to_dir {queue}\n", "plugin_dirs": f"{TEST_PLUGINS}\n",
                        "spool_dir": f"{tmp_path / 'spool'}\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
    env.update(QMAIL=str(qmail), QPSMTPD_CONFIG=str(config), TCPREMOTEIP="192.0.2.9")
    dialogue = (b"EHLO client.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<user@example.test>\r\n"
                b"RCPT TO:<user@localhost>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    result = subprocess.run([sys.executable, QPSMTPD], input=dialogue, capture_output=True, env=env, timeout=20,
                            cwd=str(tmp_path))
    out = result.stdout.decode()
    assert out.startswith("220 mx.example.test ESMTP"), out + result.stderr.decode()
    assert "SIZE 1000\r\n" in out  # qmail's databytes, not a shipped value
    assert "250 <user@example.test>, recipient ok\r\n550 Relaying denied" in out  # qmail's rcpthosts only
    assert len(os.listdir(queue)) == 2  # one message: envelope + body


def test_lookup_order_and_the_sample_is_not_read(tmp_path, monkeypatch):
    install = tmp_path / "install"
    write(str(install / "config"), {"me": "install\n", "timeout": "30\n"})
    write(str(install / "config.sample"), {"me": "sample\n", "databytes": "5\n", "rcpthosts": "localhost\n"})
    write(str(tmp_path / "qmail" / "control"), {"me": "qmail\n", "timeout": "40\n", "databytes": "7\n",
                                                "rcpthosts": "example.test\n"})
    write(str(tmp_path / "env"), {"me": "env\n"})
    monkeypatch.setenv("QMAIL", str(tmp_path / "qmail"))
    monkeypatch.setenv("QPSMTPD_CONFIG", str(tmp_path / "env"))
    config = Config(str(install))
    assert config.get("me") == ["env"]
    assert config.get("timeout") == ["30"]
    assert config.get("databytes") == ["7"] and config.get("rcpthosts") == ["example.test"]
    assert [label for label, _dir in config.search_dirs()] == ["$QPSMTPD_CONFIG", "install config/", "$QMAIL/control"]
    monkeypatch.delenv("QPSMTPD_CONFIG")
    assert Config(str(install)).get("me") == ["install"]


def test_readme_demo_command_on_a_copy_of_the_install(tmp_path):
    """README's command: QPSMTPD_CONFIG=config.sample qpsmtpd.py, in a copy of the install."""
    import shutil

    install = tmp_path / "install"
    install.mkdir()
    shutil.copy(QPSMTPD, install / "qpsmtpd.py")
    for name in ("lib", "plugins"):
        os.symlink(os.path.join(REPO_DIR, name), install / name)
    shutil.copytree(os.path.join(REPO_DIR, "config.sample"), install / "config.sample")
    with open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert "| QPSMTPD_CONFIG=config.sample /usr/bin/python3 qpsmtpd.py && ls Maildir/new/" in readme
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
    env.update(QPSMTPD_CONFIG="config.sample", QMAIL=str(tmp_path / "no-qmail"), HOME=str(tmp_path))
    dialogue = (b"HELO me.example\r\nMAIL FROM:<you@example.org>\r\nRCPT TO:<postmaster@localhost>\r\nDATA\r\n"
                b"Subject: hello\r\n\r\nHello, qpsmtpd!\r\n.\r\nQUIT\r\n")
    result = subprocess.run([sys.executable, "qpsmtpd.py"], input=dialogue, capture_output=True, env=env,
                            cwd=str(install), timeout=20)
    assert b"250 Queued" in result.stdout, result.stdout + result.stderr
    assert len(os.listdir(install / "Maildir" / "new")) == 1
    check = subprocess.run([sys.executable, "qpsmtpd.py", "--check-config"], capture_output=True, env=env,
                           cwd=str(install), timeout=20, text=True)
    assert check.returncode == 0, check.stdout
    assert "$QPSMTPD_CONFIG  config.sample (exists)" in check.stdout
