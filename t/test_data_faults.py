"""A failure while DATA is received never turns body bytes into commands.

The message below smuggles a whole second transaction (RSET, MAIL, RCPT to
a foreign domain, DATA) inside its body.  When storing fails mid-DATA
(spool dir missing, disk full), the server must read on to <CRLF>.<CRLF>
without storing, answer 451, and run none of the smuggled lines: the client
here is a relay client, so a smuggled RCPT would be relayed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qpsmtpd.testing import run_session
from sessionfile import QPSMTPD, write_config

SMUGGLED = (b"RSET\r\nMAIL FROM:<attacker@evil.test>\r\nRCPT TO:<victim@foreign.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")


def session(body_lines: int = 2000) -> bytes:
    body = b"".join(b"line %06d of a long message body ........................\r\n" % n
                    for n in range(body_lines))
    return (b"HELO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
            b"Subject: first\r\n\r\n" + body + SMUGGLED + b".\r\nQUIT\r\n")


def config(spool_dir: str) -> dict:
    return {"plugins": ["relay", "rcpt_ok"], "rcpthosts": ["example.test"], "relayclients": ["192.0.2.1"],
            "me": ["mx.example.test"], "spool_dir": [spool_dir]}


def test_unusable_spool_dir_mid_data_gives_451_and_runs_no_body_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_session(session(), config=config(str(blocker / "spool")), capture_queue=True)
    assert result.codes() == [220, 250, 250, 250, 354, 451, 221]
    assert not result.queued
    commands = [line for line in result.log if "dispatching" in line]
    assert not any("evil.test" in line or "foreign.test" in line or "RSET" in line for line in commands), commands
    assert any("storing the message failed" in line for line in result.log)


def test_write_error_mid_data(tmp_path):
    """ENOSPC from a write in the middle of the message (in-process, 512-byte reads)."""
    from qpsmtpd import transaction as txn_module

    original = txn_module.Transaction.body_write
    calls = {"n": 0}

    def failing_write(self, data):
        calls["n"] += 1
        if calls["n"] == 20:
            raise OSError(28, "No space left on device")
        return original(self, data)

    txn_module.Transaction.body_write = failing_write
    try:
        result = run_session(session(), config=config(str(tmp_path / "spool")), capture_queue=True, chunk_size=512)
    finally:
        txn_module.Transaction.body_write = original
    assert result.codes() == [220, 250, 250, 250, 354, 451, 221]
    assert not result.queued


@pytest.mark.components
def test_disk_full_through_the_real_process(tmp_path):
    """A 64 KiB tmpfs as the spool: ENOSPC in the middle of a 150 kB message (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.fail("mounting the small tmpfs needs root (run the suite as root, as .ci/run does)")
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(spool)], check=True)
    try:
        queue = tmp_path / "queue"
        queue.mkdir()
        plugin_dirs = [str(Path(QPSMTPD).parent / "t" / "plugins_for_tests"), str(Path(QPSMTPD).parent / "plugins")]
        write_config(str(tmp_path / "config"), {
            **{k: v[0] if len(v) == 1 else v for k, v in config(str(spool)).items()},
            "plugins": ["relay", "rcpt_ok", f"queue_to_dir {queue}"], "plugin_dirs": plugin_dirs,
        }, str(tmp_path))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
        env.update(QPSMTPD_CONFIG=str(tmp_path / "config"), TCPREMOTEIP="192.0.2.1")
        result = subprocess.run([sys.executable, QPSMTPD], input=session(2500), capture_output=True, env=env, timeout=30)
        codes = [line[:3] for line in result.stdout.decode().split("\r\n") if line]
        assert codes == ["220", "250", "250", "250", "354", "451", "221"], result.stdout
        assert not os.listdir(queue)
        assert os.listdir(spool) == []  # the partial spool file is gone too
        assert b"Traceback" not in result.stderr
        assert b"dispatching RSET" not in result.stderr and b"foreign.test" not in result.stderr
    finally:
        subprocess.run(["umount", str(spool)], check=True)
