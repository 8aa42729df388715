"""qpsmtpd.py under a real xinetd (foreground, private config, run as nobody):
mail end to end, client addresses from the socket, and nothing written to
stderr (which is the client's socket under xinetd) reaches the client."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from components import (QMAIL_QUEUE_DOUBLE, SYSTEM_PYTHON, chown_nobody, find_binary, free_port, qq_double_messages,
                        xinetd)
from deploy_support import REPO, private_install, remove_install

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

# A plugin that writes to stderr every way it can, and crashes in a hook.
NOISY_PLUGIN = '''
import os, sys

def hook_connect(self, transaction):
    print("LEAK-print-to-stderr", file=sys.stderr, flush=True)
    os.write(2, b"LEAK-fd2\\n")
    return DECLINED

def hook_noop(self, transaction):
    raise RuntimeError("LEAK-exception-text")
'''
REPLY = re.compile(rb"^\d{3}[ -][^\r\n]*\r\n")


@pytest.fixture(scope="module")
def server():
    plugin_dir = Path(tempfile.mkdtemp(prefix="qpplugins-"))
    plugin_dir.chmod(0o755)
    (plugin_dir / "noisy.py").write_text(NOISY_PLUGIN)
    queue_dir = Path(tempfile.mkdtemp(prefix="qq-"))
    queue_dir.chmod(0o755)
    chown_nobody(queue_dir)
    install = private_install({"plugins": ["noisy", "rcpt_ok", "queue/qmail-queue"],
                               "rcpthosts": ["example.test"], "loglevel": "7",
                               "logging": ["logging/warn LOGDEBUG", "logging/connection_id LOGDEBUG"]},
                              owner="nobody")
    (install / "config" / "plugin_dirs").write_text(f"{plugin_dir}\n{install / 'plugins'}\n")
    env = {"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(queue_dir)}
    with xinetd(SYSTEM_PYTHON, [str(install / "qpsmtpd.py")], env=env, user="nobody", passenv=[]) as daemon:
        daemon.queue_dir = queue_dir
        yield daemon
    for path in (install, plugin_dir, queue_dir):
        remove_install(path)


def raw_session(port: int, commands: list[bytes], source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(b"".join(c + b"\r\n" for c in commands))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_nothing_from_stderr_reaches_the_client(server):
    data = raw_session(server.port, [b"EHLO client.test", b"NOOP", b"NOOP a\rb", b"VRFY x", b"QUIT"])
    assert b"LEAK" not in data and b"dispatching" not in data and b"Traceback" not in data
    rest = data
    while rest:
        match = REPLY.match(rest)
        assert match, f"not an SMTP reply line: {rest[:200]!r}"
        rest = rest[match.end():]
    codes = [line[:3] for line in data.split(b"\r\n") if line[3:4] == b" "]
    assert codes[0] == b"220" and codes[-1] == b"221"
    assert b"451 " in data, "the crashing NOOP hook gives a 451"


def test_mail_end_to_end_with_addresses_from_the_socket(server):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@sender.test", "bob@example.test", "via-xinetd"
    msg.set_content("hello through xinetd\n")
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=10,
                      source_address=("127.0.0.2", 0)) as smtp:
        assert smtp.send_message(msg) == {}
    swaks = subprocess.run([find_binary("swaks"), "--server", f"127.0.0.1:{server.port}", "--pipeline",
                            "--helo", "swaks.test", "-f", "carol@sender.test", "-t", "dave@example.test",
                            "--header", "Subject: swaks-via-xinetd", "--hide-all"], capture_output=True, timeout=30)
    assert swaks.returncode == 0, swaks.stdout + swaks.stderr
    stored = qq_double_messages(server.queue_dir)
    [first] = [m for m in stored if b"Subject: via-xinetd" in m.message]
    assert first.recipients == ["bob@example.test"]
    assert b"(HELO client.test) (127.0.0.2)" in first.message, first.message[:300]
    [second] = [m for m in stored if b"Subject: swaks-via-xinetd" in m.message]
    assert second.sender == "carol@sender.test"


def test_environment_is_only_what_the_service_passes(server):
    """passenv = (empty): no TCP* variables, the program still knows the client."""
    data = raw_session(server.port, [b"HELO client.test", b"QUIT"], source="127.0.0.3")
    assert b"250 mx.example.test Hi [127.0.0.3] [127.0.0.3];" in data


def children(ppid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            found.append(int(stat.parent.name))
    return found


def test_shipped_service_file(tmp_path):
    """deploy/xinetd/qpsmtpd itself, with only port, user and paths changed for the test."""
    install = private_install({"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"]}, owner="nobody")
    port = free_port()
    text = (REPO / "deploy" / "xinetd" / "qpsmtpd").read_text()
    text = text.replace("service smtp\n{", f"service smtp\n{{\n    type = UNLISTED\n    port = {port}\n"
                                             "    bind = 127.0.0.1")
    text = text.replace("= smtpd", "= nobody").replace("group           = nobody", "group           = nogroup")
    text = text.replace("/opt/qpsmtpd/qpsmtpd.py", str(install / "qpsmtpd.py"))
    conf = tmp_path / "xinetd.conf"
    conf.write_text(text)
    log = tmp_path / "xinetd.log"
    log.touch()
    proc = subprocess.Popen([find_binary("xinetd"), "-dontfork", "-f", str(conf), "-filelog", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "Started working" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert "Started working: 1 available service" in log.read_text(), log.read_text()
        data = raw_session(port, [b"HELO client.test", b"RCPT TO:<x@example.test>", b"QUIT"])
        assert data.startswith(b"220 mx.example.test ESMTP") and data.endswith(b"Have a wonderful day.\r\n")
    finally:
        for child in children(proc.pid):
            os.kill(child, signal.SIGTERM)
        proc.terminate()
        proc.wait(10)
        remove_install(install)
