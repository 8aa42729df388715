"""queue/qmqp-forward against Postfix qmqpd in a private instance (read back with postcat),
and against a scripted QMQP peer for the answers Postfix cannot be made to give (Z, a
reply cut short, a server too slow)."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from components import free_port, postfix_private, strip_first_header
from qpsmtpd.testing import run_session

CLIENT_MESSAGE = ["Message-Id: <qmqp@client.test>", "From: alice@client.test",
                  "Date: Mon, 01 Jan 2024 00:00:00 +0000", "Subject: qmqp test", "",
                  "first line", "..dot line", "  indented", "", "last"]


def session(sender: str = "alice@client.test", recipients=("bob@example.test", "carol@example.test"),
            message=CLIENT_MESSAGE) -> list[str]:
    return (["EHLO client.test", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients]
            + ["DATA"] + list(message) + [".", "QUIT"])


def run(plugin_line: str, lines=None, config=None):
    cfg = {"plugins": ["rcpt_ok", plugin_line], "rcpthosts": ["example.test"], "me": "mx.example.test",
           **(config or {})}
    return run_session(lines or session(), config=cfg)


def client_bytes(message=CLIENT_MESSAGE) -> bytes:
    return "\n".join(line[1:] if line.startswith("..") else line for line in message).encode() + b"\n"


@pytest.fixture(scope="module")
def postfix():
    with postfix_private(qmqp=True, smtpd=False) as daemon:
        yield daemon


class ScriptedQmqp:
    """A QMQP peer on 127.0.0.1 that reads the whole package, keeps it, then answers as told."""

    def __init__(self, answer: bytes = b"", close_after: int | None = None, delay: float = 0.0) -> None:
        self.answer, self.close_after, self.delay = answer, close_after, delay
        self.packages: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                conn.settimeout(10)
                while chunk := conn.recv(65536):
                    data += chunk
                self.packages.append(data)
                time.sleep(self.delay)
                reply = self.answer if self.close_after is None else self.answer[:self.close_after]
                try:
                    conn.sendall(reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def parse_package(package: bytes) -> tuple[bytes, list[bytes]]:
    """Check the outer netstring strictly; return (message, [sender, rcpts...])."""
    length, _, rest = package.partition(b":")
    assert int(length) == len(rest) - 1 and rest.endswith(b","), "outer netstring length is wrong"
    body, items = rest[:-1], []
    while body:
        size, _, body = body.partition(b":")
        items.append(body[:int(size)])
        assert body[int(size):int(size) + 1] == b","
        body = body[int(size) + 1:]
    return items[0], items[1:]


@pytest.mark.components
def test_k_stores_message_byte_for_byte(pf):
    result = run(f"queue/qmqp-forward 127.0.0.1 {pf.qmqp_port}")
    code, text = result.replies()[-2]
    assert code == 250 and re.fullmatch(r"Queued! Ok: queued as [0-9A-F]+", text[0]), text
    queue_id = text[0].split()[-1]
    assert pf.queue_ids() == [queue_id]
    held = pf.read(queue_id)
    assert held.sender == "alice@client.test"
    assert held.recipients == ["bob@example.test", "carol@example.test"]
    ours = strip_first_header(held.content)
    assert ours.startswith(b"Authentication-Results: mx.example.test; auth=none\nReceived: from [192.0.2.1]")
    assert ours.endswith(b"\n" + client_bytes())


@pytest.mark.components
def test_null_sender_and_one_recipient(pf):
    result = run(f"queue/qmqp-forward 127.0.0.1 {pf.qmqp_port}", session(sender="", recipients=["bob@example.test"]))
    assert result.replies()[-2][0] == 250
    [queue_id] = pf.queue_ids()
    held = pf.read(queue_id)
    assert (held.sender, held.recipients) == ("", ["bob@example.test"])


@pytest.mark.components
def test_d_from_postfix_for_a_too_big_message(pf):
    big = CLIENT_MESSAGE[:5] + ["x" * 998] * 10600  # > 10 MB: qmqpd refuses before reading it all
    result = run(f"queue/qmqp-forward 127.0.0.1 {pf.qmqp_port}", session(message=big))
    code, text = result.replies()[-2]
    assert code == 554 and text[0].startswith("Denied: ") and "storage limit" in text[0], text
    assert pf.queue_ids() == []


@pytest.mark.parametrize("answer,code,text", [
    (b"16:KOk: queued as 1,", 250, "Queued! Ok: queued as 1"),
    (b"18:Zdisk is full here,", 451, "Deferred: disk is full here"),
    (b"12:Dno such box,", 554, "Denied: no such box"),
    (b"8:Xstrange,", 451, "QMQP protocol error; try again later"),
])
def test_scripted_answers(answer, code, text):
    peer = ScriptedQmqp(answer)
    try:
        result = run(f"queue/qmqp-forward 127.0.0.1 {peer.port}")
    finally:
        peer.close()
    assert result.replies()[-2] == (code, [text])
    message, addresses = parse_package(peer.packages[0])
    assert message.endswith(b"\n" + client_bytes())
    assert addresses == [b"alice@client.test", b"bob@example.test", b"carol@example.test"]


@pytest.mark.components
def test_server_down_then_next_server(pf):
    down = free_port()
    result = run("queue/qmqp-forward", config={"qmqpservers": [f"127.0.0.1:{down}", f"127.0.0.1:{pf.qmqp_port}"]})
    assert result.replies()[-2][0] == 250
    assert len(pf.queue_ids()) == 1


def test_all_servers_down():
    result = run("queue/qmqp-forward", config={"qmqpservers": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]})
    assert result.replies()[-2] == (451, ["QMQP server unavailable; try again later"])


@pytest.mark.components
def test_closing_mid_reply_is_not_retried_elsewhere(pf):
    peer = ScriptedQmqp(b"26:KOk: queued as ABCDEF1234,", close_after=10)
    try:
        result = run("queue/qmqp-forward",
                     config={"qmqpservers": [f"127.0.0.1:{peer.port}", f"127.0.0.1:{pf.qmqp_port}"]})
    finally:
        peer.close()
    assert result.replies()[-2] == (451, ["QMQP server did not confirm the message; try again later"])
    assert len(peer.packages) == 1
    assert pf.queue_ids() == []  # the first server may have it: never a second copy


@pytest.mark.components
def test_too_slow_server(pf):
    peer = ScriptedQmqp(b"4:Kok,", delay=3)
    started = time.monotonic()
    try:
        result = run("queue/qmqp-forward",
                     config={"qmqpservers": [f"127.0.0.1:{peer.port}", f"127.0.0.1:{pf.qmqp_port}"],
                             "qmqp_timeout": "1"})
    finally:
        peer.close()
    assert time.monotonic() - started < 2.5
    assert result.replies()[-2] == (451, ["QMQP server did not confirm the message; try again later"])
    assert pf.queue_ids() == []


@pytest.mark.components
def test_client_disconnects_mid_data(pf):
    lines = session()[:-3]
    result = run(f"queue/qmqp-forward 127.0.0.1 {pf.qmqp_port}", lines)
    assert 250 not in result.codes()[5:]
    assert pf.queue_ids() == []


def test_no_server_configured_fails_to_load():
    result = run("queue/qmqp-forward")
    assert result.codes() == [421]  # the plugin refuses to load: no session without a queue
