"""The systemd units: `systemd-analyze verify`, and the Accept=yes contract
(the connection on fds 0 and 1, stderr elsewhere) exercised for real with
systemd-socket-activate and with a socket the test accepts itself."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from components import QMAIL_QUEUE_DOUBLE, find_binary, free_port, qq_double_messages
from deploy_support import REPO, private_install, remove_install

UNITS = REPO / "deploy" / "systemd"


@pytest.mark.components
def test_units_verify(tmp_path):
    service = (UNITS / "qpsmtpd@.service").read_text()
    assert "ExecStart=/usr/bin/python3 /opt/qpsmtpd/qpsmtpd.py" in service
    (tmp_path / "qpsmtpd@.service").write_text(service.replace("/opt/qpsmtpd/", f"{REPO}/"))
    shutil.copy(UNITS / "qpsmtpd.socket", tmp_path / "qpsmtpd.socket")
    result = subprocess.run([find_binary("systemd-analyze"), "verify", "--man=no",
                             str(tmp_path / "qpsmtpd.socket"), str(tmp_path / "qpsmtpd@.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr
    socket_unit = (UNITS / "qpsmtpd.socket").read_text()
    assert "Accept=yes" in socket_unit
    for needed in ("StandardInput=socket", "StandardOutput=socket", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert needed in service


@pytest.fixture
def install():
    queue_dir = Path(tempfile.mkdtemp(prefix="qq-"))
    base = private_install({"plugins": ["rcpt_ok", "queue/qmail-queue"], "rcpthosts": ["example.test"],
                            "logging": ["logging/warn LOGINFO"]})
    env = {"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(queue_dir)}
    yield base, queue_dir, env
    remove_install(base)
    remove_install(queue_dir)


def send(port: int, subject: str, source: str = "127.0.0.1") -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10,
                      source_address=(source, 0)) as smtp:
        smtp.sendmail("alice@sender.test", ["bob@example.test"],
                      f"Subject: {subject}\r\n\r\nbody\r\n".encode())


@pytest.mark.components
def test_systemd_socket_activate_accept(install):
    base, queue_dir, env = install
    port = free_port()
    log = base / "stderr.log"
    argv = [find_binary("systemd-socket-activate"), "--listen", f"127.0.0.1:{port}", "--accept", "--inetd"]
    for key, value in env.items():
        argv += ["-E", f"{key}={value}"]
    argv += [sys.executable, str(base / "qpsmtpd.py")]
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
        send(port, "socket-activated", source="127.0.0.2")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    [stored] = [m for m in qq_double_messages(queue_dir) if b"Subject: socket-activated" in m.message]
    assert b"(127.0.0.2)" in stored.message
    assert "dispatching mail from:<alice@sender.test>" in log.read_text().lower(), "stderr is the log"


def test_program_on_an_accepted_socket(install):
    """What systemd does for Accept=yes: the connection on fd 0 and 1, stderr to the journal."""
    base, queue_dir, env = install
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn, _ = listener.accept()
    err_path = base / "journal.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(base / "qpsmtpd.py")], stdin=conn, stdout=conn, stderr=err,
                                env={**os.environ, **env, "REMOTE_ADDR": "127.0.0.1"})
    conn.close()
    listener.close()
    with client:
        client.sendall(b"HELO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
                       b"Subject: accepted-socket\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    assert proc.wait(10) == 0
    assert data.startswith(b"220 ") and b"250 Queued!" in data and data.endswith(b"221 mx.example.test closing "
                                                                                  b"connection. Have a wonderful day.\r\n")
    assert b"dispatching" not in data
    assert "dispatching HELO client.test" in err_path.read_text()
    assert [m.recipients for m in qq_double_messages(queue_dir)] == [["b@example.test"]]
