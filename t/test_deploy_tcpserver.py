"""qpsmtpd.py under a real tcpserver: swaks and smtplib clients, PIPELINING,
several messages per connection, tcprules RELAYCLIENT for one address, -c
concurrency, and an smtp-source load of 500 messages over 10 sessions
(into a real Postfix queue over QMQP: the qmail-queue double's interpreter
start per message would make the load test itself the bottleneck)."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from components import QMAIL_QUEUE_DOUBLE, find_binary, postfix_qmqp, qq_double_messages, tcpserver
from deploy_support import private_install, remove_install

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

RULES = '127.0.0.2:allow,RELAYCLIENT=""\n127.0.0.4:deny\n:allow\n'
CONFIG = {"plugins": ["relay", "rcpt_ok", "queue/qmail-queue"], "rcpthosts": ["example.test"],
          "logging": ["logging/warn LOGINFO"]}


class Server:
    def __init__(self, daemon, queue_dir: Path) -> None:
        self.daemon = daemon
        self.port = daemon.port
        self.queue_dir = queue_dir

    def queued(self):
        return qq_double_messages(self.queue_dir)

    def wait_queued(self, count: int, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while len(self.queued()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.queued()


def start(concurrency: int = 10):
    queue_dir = Path(tempfile.mkdtemp(prefix="qq-"))
    install = private_install(CONFIG)
    env = {"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(queue_dir)}
    return install, queue_dir, tcpserver([sys.executable, str(install / "qpsmtpd.py")], env=env,
                                         rules=RULES, concurrency=concurrency)


@pytest.fixture(scope="module")
def server():
    install, queue_dir, context = start()
    with context as daemon:
        yield Server(daemon, queue_dir)
    remove_install(install)
    remove_install(queue_dir)


def message(subject: str, sender: str = "alice@sender.test", to: str = "bob@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(f"body of {subject}\n.leading dot line\n")
    return msg


def by_subject(server: Server, subject: str):
    return [m for m in server.queued() if f"Subject: {subject}\n".encode() in m.message]


def swaks(server: Server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([find_binary("swaks"), "--server", f"127.0.0.1:{server.port}", "--helo", "client.test",
                           "-f", "alice@sender.test", "--hide-all", *args], capture_output=True, timeout=30)


def test_swaks_plain_and_pipelining(server):
    plain = swaks(server, "-t", "bob@example.test", "--header", "Subject: swaks-plain")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    piped = swaks(server, "--pipeline", "-t", "carol@example.test,dave@example.test",
                  "--header", "Subject: swaks-pipelined")
    assert piped.returncode == 0, piped.stdout + piped.stderr
    server.wait_queued(2)
    [first] = by_subject(server, "swaks-plain")
    assert first.sender == "alice@sender.test" and first.recipients == ["bob@example.test"]
    assert b"(HELO client.test) (127.0.0.1)" in first.message
    [second] = by_subject(server, "swaks-pipelined")
    assert second.recipients == ["carol@example.test", "dave@example.test"]


def test_smtplib_several_messages_per_connection(server):
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=10) as smtp:
        assert "pipelining" in smtp.ehlo()[1].decode().lower()
        for n in range(3):
            assert smtp.send_message(message(f"multi-{n}")) == {}
    server.wait_queued(3)
    for n in range(3):
        [stored] = by_subject(server, f"multi-{n}")
        assert b"\n..leading dot line\n" not in stored.message and b"\n.leading dot line\n" in stored.message


def rcpt_from(server: Server, source: str, rcpt: str) -> int:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=10,
                      source_address=(source, 0)) as smtp:
        smtp.ehlo()
        smtp.mail("alice@sender.test")
        code, _ = smtp.rcpt(rcpt)
        if code == 250:
            smtp.data(message(f"relay-from-{source}", to=rcpt).as_bytes())
        return code


def test_tcprules_relayclient_only_for_one_address(server):
    assert rcpt_from(server, "127.0.0.2", "someone@elsewhere.test") == 250
    assert rcpt_from(server, "127.0.0.3", "someone@elsewhere.test") in (550, 553, 554)
    assert rcpt_from(server, "127.0.0.1", "someone@elsewhere.test") in (550, 553, 554)
    assert rcpt_from(server, "127.0.0.3", "local@example.test") == 250
    server.wait_queued(1)
    [relayed] = by_subject(server, "relay-from-127.0.0.2")
    assert relayed.recipients == ["someone@elsewhere.test"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.4", 0)) as sock:
        assert sock.recv(100) == b"", "a deny rule closes the connection before any banner"


def test_parallel_clients(server):
    errors = []

    def send(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=20) as smtp:
                smtp.send_message(message(f"parallel-{n}"))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    for n in range(12):
        assert len(by_subject(server, f"parallel-{n}")) == 1


def test_concurrency_limit_queues_extra_connections():
    install, queue_dir, context = start(concurrency=2)
    try:
        with context as daemon:
            first = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            second = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            assert first.recv(200).startswith(b"220 ") and second.recv(200).startswith(b"220 ")
            third = socket.create_connection(("127.0.0.1", daemon.port), timeout=0.7)
            with pytest.raises(socket.timeout):
                third.recv(200)
            first.sendall(b"QUIT\r\n")
            assert first.recv(200).startswith(b"221 ")
            first.close()
            third.settimeout(5)
            assert third.recv(200).startswith(b"220 "), "served once a slot was free"
            for sock in (second, third):
                sock.sendall(b"QUIT\r\n")
                sock.recv(200)
                sock.close()
    finally:
        remove_install(install)
        remove_install(queue_dir)


def test_smtp_source_load_500_messages_10_sessions():
    """The backend is a real Postfix queue (qmqpd, hold): every message must be in it exactly once."""
    with postfix_qmqp("hold") as postfix:
        install = private_install({"plugins": ["rcpt_ok", f"queue/qmqp-forward 127.0.0.1 {postfix.qmqp_port}"],
                                   "rcpthosts": ["example.test"], "logging": ["logging/warn LOGINFO"]})
        try:
            with tcpserver([sys.executable, str(install / "qpsmtpd.py")], concurrency=10) as daemon:
                started = time.monotonic()
                load = subprocess.run([find_binary("smtp-source"), "-s", "10", "-m", "500", "-d", "-l", "2000",
                                       "-f", "load@sender.test", "-t", "sink@example.test", "-M", "client.test",
                                       f"127.0.0.1:{daemon.port}"], capture_output=True, timeout=120)
                elapsed = time.monotonic() - started
                assert load.returncode == 0, load.stdout + load.stderr
                log = daemon.log_path.read_text(errors="replace")
            queued = postfix.queue()
        finally:
            remove_install(install)
    assert log.count(": accept 127.0.0.1: 250 Queued! ") == 500, log[-2000:]  # the decision line, once each
    assert log.count("dispatching QUIT") == 10, "10 sessions, 50 messages each"
    assert len(queued) == 500 and len({m["queue_id"] for m in queued}) == 500
    assert all(m["queue_name"] == "hold" and m["sender"] == "load@sender.test"
               and [r["address"] for r in m["recipients"]] == ["sink@example.test"] for m in queued)
    print(f"smtp-source: 500 messages / 10 sessions in {elapsed:.2f}s")
