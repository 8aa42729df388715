"""The real qpsmtpd.py process: inherited signal dispositions, SIGTERM/HUP/INT, time limits.

Each test starts qpsmtpd.py on pipes or a socket pair with a private config
and plays a client that misbehaves on purpose (never reads, trickles bytes,
is signalled mid-DATA); the qmail-queue test double stands in for qmail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from components import QMAIL_QUEUE_DOUBLE, qq_double_messages
from sessionfile import QPSMTPD, write_config

ENVELOPE = b"HELO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"


@pytest.fixture
def install(tmp_path):
    """(env, spool dir, qmail-queue double dir) for a private config; `make(**files)` writes it."""
    spool, qq = tmp_path / "spool", tmp_path / "qq"
    qq.mkdir()

    def make(**files):
        config = {"me": "mx.example.test", "rcpthosts": ["example.test"], "spool_dir": str(spool),
                  "plugins": ["rcpt_ok", "queue/qmail-queue"], "loglevel": "7", **files}
        write_config(str(tmp_path / "config"), config, str(tmp_path))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAYCLIENT", "QQ_"))}
        env.update(QPSMTPD_CONFIG=str(tmp_path / "config"), QMAILQUEUE=str(QMAIL_QUEUE_DOUBLE), QQ_DOUBLE_DIR=str(qq))
        return env
    return make, spool, qq


def reply_codes(output: bytes) -> list[str]:
    return [line[:3].decode() for line in output.split(b"\r\n") if line]


def ignore_sigchld():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def test_inherited_ignored_sigchld_does_not_turn_a_queued_message_into_451(install):
    """swaks --pipe leaves SIGCHLD ignored: the wait for qmail-queue failed after it accepted (a duplicate)."""
    make, _spool, qq = install
    session = ENVELOPE + b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    result = subprocess.run([sys.executable, QPSMTPD], input=session, capture_output=True, env=make(),
                            preexec_fn=ignore_sigchld, timeout=30)
    assert reply_codes(result.stdout) == ["220", "250", "250", "250", "354", "250", "221"], result.stdout
    assert len(qq_double_messages(qq)) == 1


def test_inherited_blocked_signals_are_unblocked(install):
    make, spool, _qq = install

    def block_term():
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    proc = subprocess.Popen([sys.executable, QPSMTPD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=make(), preexec_fn=block_term)
    proc.stdout.read(3)  # the greeting has started: signals are set up
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    proc.stdin.close()
    proc.stdout.close()
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_mid_data_leaves_no_spool_file_and_no_traceback(install, signum):
    make, spool, qq = install
    proc = subprocess.Popen([sys.executable, QPSMTPD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=make())
    proc.stdin.write(ENVELOPE + b"Subject: x\r\n\r\n" + b"body line\r\n" * 5000)
    proc.stdin.flush()
    deadline = time.monotonic() + 10
    while not (spool.is_dir() and os.listdir(spool)):
        assert time.monotonic() < deadline, "no spool file appeared"
        time.sleep(0.01)
    proc.send_signal(signum)
    status = proc.wait(timeout=10)
    out, err = proc.stdout.read(), proc.stderr.read()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()
    assert status == 128 + signum
    assert os.listdir(spool) == []
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err[-2000:]
    assert reply_codes(out)[-1] == "354"  # nothing after the go-ahead: no verdict the client could misread
    assert f"signal {int(signum)} received".encode() in err
    assert qq_double_messages(qq) == []


def spawn_on_socket(env: dict) -> tuple[socket.socket, subprocess.Popen]:
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    proc = subprocess.Popen([sys.executable, QPSMTPD], stdin=theirs.fileno(), stdout=theirs.fileno(),
                            stderr=subprocess.PIPE, env=env)
    theirs.close()
    return ours, proc


def test_client_that_never_reads_cannot_block_the_server(install):
    make, _spool, _qq = install
    client, proc = spawn_on_socket(make(timeout_write="1"))
    started = time.monotonic()
    client.setblocking(False)
    try:
        for _ in range(20000):  # pipelined NOOPs; the replies fill the buffers, then the server must give up
            try:
                client.send(b"NOOP\r\n" * 50)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server gave up on us and closed: what the test waits for
            if proc.poll() is not None:
                break
        status = proc.wait(timeout=15)
    finally:
        client.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert status == 0
    assert time.monotonic() - started < 15
    assert b"read no reply for 1 s" in err


def test_session_time_limit(install):
    make, _spool, _qq = install
    client, proc = spawn_on_socket(make(timeout_session="2"))
    started = time.monotonic()
    try:
        client.settimeout(10)
        client.recv(1000)
        while proc.poll() is None and time.monotonic() - started < 10:
            client.sendall(b"NOOP\r\n")  # a busy client: every command answered, the session still ends
            time.sleep(0.2)
        data = b""
        try:
            while chunk := client.recv(65536):
                data += chunk
        except OSError:
            pass
    finally:
        client.close()
    assert proc.wait(timeout=5) == 0
    assert 1.5 < time.monotonic() - started < 6
    assert b"421 " in data
    proc.stderr.close()


def test_command_time_limit_for_a_trickling_client(install):
    make, _spool, _qq = install
    client, proc = spawn_on_socket(make(timeout_command="1"))
    started = time.monotonic()
    try:
        client.settimeout(10)
        assert client.recv(1000).startswith(b"220")
        for byte in b"HELO slow.example.test\r\n":
            if proc.poll() is not None:
                break
            try:
                client.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
        data = client.recv(65536)
    finally:
        client.close()
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert data.startswith(b"421 ")
    proc.stderr.close()


@pytest.mark.components  # swaks (Debian package)
def test_swaks_pipe_queues_exactly_once(install):
    """The real case of point 6: swaks --pipe runs the server with SIGCHLD ignored."""
    make, _spool, qq = install
    result = subprocess.run(["swaks", "--pipe", f"{sys.executable} {QPSMTPD}", "-f", "a@client.test",
                             "-t", "b@example.test", "--helo", "client.test", "--body", "once"],
                            env=make(), capture_output=True, timeout=30)
    assert b"<-  250 Queued!" in result.stdout, result.stdout[-2000:]
    assert len(qq_double_messages(qq)) == 1
