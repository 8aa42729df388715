"""queue/maildir: delivery, per-recipient templates, modes, and failures (as root and as nobody)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from components import REPO_ROOT, SYSTEM_PYTHON
from qpsmtpd.testing import run_session
from sessionfile import shield_shipped_config

RECIPIENTS = ("bob@example.test", "carol@other.test")
LINES = (["EHLO client.test", "MAIL FROM:<alice@client.test>"] + [f"RCPT TO:<{r}>" for r in RECIPIENTS]
         + ["DATA", "Message-Id: <md@client.test>", "Subject: maildir", "", "body", "..dot", ".", "QUIT"])


def run(args: str, lines=LINES):
    config = {"plugins": ["rcpt_ok", f"queue/maildir {args}"], "rcpthosts": ["example.test", "other.test"],
              "me": "mx.example.test"}
    return run_session(lines, config=config)


def files(directory: Path, sub: str = "new") -> list[Path]:
    return sorted(directory.glob(f"**/{sub}/*"))


def test_one_file_for_all_recipients(tmp_path):
    result = run(str(tmp_path / "Maildir"))
    assert result.replies()[-2] == (250, ["Queued! <md@client.test>"])
    [path] = files(tmp_path)
    assert re.fullmatch(r"\d+\.P\d+M\d+Q\d+\.[\w.-]+", path.name)
    data = path.read_bytes()
    assert data.startswith(b"Return-Path: <alice@client.test>\nDelivered-To: carol@other.test\n"
                           b"Delivered-To: bob@example.test\nAuthentication-Results: mx.example.test; auth=none\n")
    assert data.endswith(b"\nMessage-Id: <md@client.test>\nSubject: maildir\n\nbody\n.dot\n")
    assert files(tmp_path, "tmp") == [] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {p.name for p in (tmp_path / "Maildir").iterdir()} == {"cur", "new", "tmp"}


def test_one_copy_per_recipient_with_template_and_mode(tmp_path):
    result = run(f"{tmp_path} %d/%l 770")
    assert result.replies()[-2][0] == 250
    bob = files(tmp_path / "example.test" / "bob")
    carol = files(tmp_path / "other.test" / "carol")
    assert len(bob) == 1 and len(carol) == 1
    assert b"Delivered-To: bob@example.test\nAuthentication" in bob[0].read_bytes()
    assert b"Delivered-To: carol@other.test\nAuthentication" in carol[0].read_bytes()
    assert stat.S_IMODE(bob[0].stat().st_mode) == 0o660
    assert stat.S_IMODE((tmp_path / "example.test" / "bob" / "new").stat().st_mode) == 0o770


def test_template_cannot_climb_out(tmp_path):
    lines = ["HELO c", "MAIL FROM:<>", 'RCPT TO:<"../x/../y"@example.test>', 'RCPT TO:<".."@example.test>',
             "DATA", "Subject: x", "", "x", ".", "QUIT"]
    base = tmp_path / "base"
    result = run(f"{base} %l", lines)
    assert result.replies()[-2][0] == 250
    delivered = files(tmp_path)
    assert len(delivered) == 2
    assert all(base in path.parents for path in delivered)
    assert (base / "__").is_dir()
    assert b"Return-Path: <>\n" in delivered[0].read_bytes()


def test_relative_path_is_below_the_install_dir(tmp_path):
    result = run_session(LINES, config={"plugins": ["rcpt_ok", "queue/maildir Maildir"],
                                        "rcpthosts": ["example.test", "other.test"]}, keep_install=True)
    install = Path(result.smtp.install_dir)
    try:
        assert result.replies()[-2][0] == 250
        assert len(files(install / "Maildir")) == 1
    finally:
        import shutil
        shutil.rmtree(install)


def test_directory_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    result = run(str(tmp_path / "file" / "Maildir"))
    assert result.replies()[-2] == (451, ["queue error (mkdir)"])
    assert result.codes()[-1] == 221


def test_second_recipient_fails_nothing_delivered(tmp_path):
    (tmp_path / "other.test").write_text("a file where carol's domain directory should be")
    result = run(f"{tmp_path} %d/%l")
    assert result.replies()[-2] == (451, ["queue error (mkdir)"])
    assert files(tmp_path) == [] and files(tmp_path, "tmp") == []


def test_new_is_not_a_directory(tmp_path):
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new").write_text("oops")
    result = run(str(maildir))
    assert result.replies()[-2][0] == 451
    assert list((maildir / "tmp").iterdir()) == []


def test_client_disconnects_mid_data(tmp_path):
    result = run(str(tmp_path / "Maildir"), LINES[:-3])
    assert 250 not in result.codes()[5:]
    assert files(tmp_path) == [] and files(tmp_path, "tmp") == []


@pytest.mark.components
def test_unwritable_maildir_as_nobody():
    """The real server run as nobody, delivering into a root-owned maildir it cannot write."""
    private = Path(tempfile.mkdtemp(prefix="maildir-nobody-"))
    private.chmod(0o755)
    maildir = private / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, mode=0o755)
    spool = private / "spool"
    spool.mkdir(mode=0o700)
    os.chown(spool, 65534, 65534)
    config = private / "config"
    config.mkdir()
    (config / "plugins").write_text(f"rcpt_ok\nqueue/maildir {maildir}\n")
    (config / "rcpthosts").write_text("example.test\nother.test\n")
    (config / "spool_dir").write_text(f"{spool}\n")
    (config / "me").write_text("mx.example.test\n")
    shield_shipped_config(str(config))
    data = "".join(line + "\r\n" for line in LINES).encode()
    env = {"PATH": "/usr/bin:/bin", "QPSMTPD_CONFIG": str(config)}
    proc = subprocess.run([SYSTEM_PYTHON, str(REPO_ROOT / "qpsmtpd.py")], input=data, capture_output=True,
                          env=env, user="nobody", group="nogroup", extra_groups=[], cwd="/", timeout=20)
    replies = proc.stdout.decode().split("\r\n")
    assert "451 queue error (open)" in replies, replies
    assert not any(line.startswith("250 Queued") for line in replies)
    assert files(maildir) == [] and files(maildir, "tmp") == []
    assert b"Traceback" not in proc.stderr
    import shutil
    shutil.rmtree(private)
