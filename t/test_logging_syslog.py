"""logging/syslog through the real qpsmtpd.py: datagrams captured on a test socket."""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

import pytest

from deploy_support import private_install, remove_install, run_pipe

LOCAL = re.compile(r"^<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) ([\w.-]+)\[(\d+)\]: (\d{10})\.(\d+) (.*)$",
                   re.S)


@pytest.fixture
def unix_log():
    base = Path(tempfile.mkdtemp(prefix="qpsyslog-"))
    path = base / "log.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0)
    yield sock, path
    sock.close()
    remove_install(base)


def drain(sock: socket.socket) -> list[bytes]:
    packets = []
    while True:
        try:
            packets.append(sock.recv(65536))
        except BlockingIOError:
            return packets


def install(logging: str) -> Path:
    return private_install({"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"], "logging": [logging]})


def test_unix_socket_datagrams(unix_log):
    sock, path = unix_log
    base = install(f"logging/syslog loglevel LOGINFO facility local3 ident smtptest socket {path}")
    try:
        result = run_pipe(base, ["HELO client.test", "NOOP x\ry", "QUIT"])
    finally:
        remove_install(base)
    assert result.stderr == b""
    packets = drain(sock)
    assert len(packets) >= 6
    for packet in packets:
        match = LOCAL.match(packet.decode())
        assert match, packet
        priority, _stamp, ident, pid, _time, id_pid, message = match.groups()
        assert ident == "smtptest" and int(pid) == result.pid == int(id_pid)
        assert int(priority) // 8 == 19 and int(priority) % 8 <= 6
        assert "\n" not in message and "\r" not in message
    texts = [p.decode() for p in packets]
    assert any(t.startswith("<158>") and t.endswith(" dispatching HELO client.test") for t in texts), texts
    assert any(t.startswith("<157>") and "Connection from" in t for t in texts), texts
    assert not any("running plugin" in t for t in texts)


def test_fixed_priority_and_level(unix_log):
    sock, path = unix_log
    base = install(f"logging/syslog loglevel LOGNOTICE priority LOG_ERR socket {path}")
    try:
        run_pipe(base, ["HELO client.test", "QUIT"])
    finally:
        remove_install(base)
    packets = [p.decode() for p in drain(sock)]
    assert packets, "the LOGNOTICE connection line should be sent"
    assert all(p.startswith("<19>") for p in packets), packets   # mail.err
    assert not any("dispatching" in p for p in packets)            # LOGINFO lines filtered


def test_udp_transport():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    base = install(f"logging/syslog loglevel 6 logsock udp host 127.0.0.1 port {port} ident qp-udp")
    try:
        result = run_pipe(base, ["HELO client.test", "QUIT"])
        packet = server.recv(65536).decode()
    finally:
        server.close()
        remove_install(base)
    host = re.escape(os.uname().nodename)
    assert re.match(rf"<2\d>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d {host} qp-udp\[{result.pid}\]: \d{{10}}\.{result.pid} ",
                    packet), packet


def test_missing_socket_does_not_stop_mail(tmp_path):
    base = install(f"logging/syslog loglevel 7 socket {tmp_path}/nothing-here")
    try:
        result = run_pipe(base, ["HELO client.test", "QUIT"])
    finally:
        remove_install(base)
    assert result.codes() == [220, 250, 221] and result.stderr == b""


@pytest.mark.parametrize("args", ["facility LOG_NOPE", "priority loud", "logsock tcp", "loglevel", "colour red"])
def test_bad_arguments(args):
    base = install(f"logging/syslog {args}")
    try:
        assert run_pipe(base, ["HELO client.test", "QUIT"]).codes() == [421]
    finally:
        remove_install(base)
