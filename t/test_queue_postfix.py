"""queue/postfix-queue against the cleanup(8) socket of a private Postfix instance."""

from __future__ import annotations

import os
import re
import socket
import threading

import pytest

from components import postfix_private
from qpsmtpd.testing import run_session

LONG = "y" * 2500
CLIENT_MESSAGE = ["Message-Id: <pf@client.test>", "From: alice@client.test",
                  "Date: Mon, 01 Jan 2024 00:00:00 +0000", "Subject: cleanup test", "",
                  "first", "..dot", "", LONG, "last"]


def session(sender="alice@client.test", recipients=("bob@example.test", "carol@example.test"),
            message=CLIENT_MESSAGE):
    return (["EHLO client.test", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients]
            + ["DATA"] + list(message) + [".", "QUIT"])


def run(args: str, lines=None, config=None, env=None):
    cfg = {"plugins": ["rcpt_ok", f"queue/postfix-queue {args}".strip()], "rcpthosts": ["example.test"],
           "me": "mx.example.test", **(config or {})}
    return run_session(lines or session(), config=cfg, env=env)


@pytest.fixture(scope="module")
def postfix():
    with postfix_private(qmqp=False, smtpd=False) as daemon:
        checks = daemon.conf_dir / "header_checks"
        checks.write_text("/^Subject: reject me/ REJECT content refused by test\n" + checks.read_text())
        os.utime(checks, (0, 0))
        yield daemon


@pytest.mark.components
def test_message_reaches_the_queue_byte_for_byte(pf):
    result = run(str(pf.cleanup_socket))
    code, text = result.replies()[-2]
    assert code == 250 and re.fullmatch(r"Queued! <pf@client\.test> \(Queue-Id: [0-9A-F]+\)", text[0]), text
    queue_id = text[0].split()[-1].rstrip(")")
    assert pf.queue_ids() == [queue_id]
    held = pf.read(queue_id)
    assert (held.sender, held.recipients) == ("alice@client.test", ["bob@example.test", "carol@example.test"])
    client = "\n".join(line[1:] if line.startswith("..") else line for line in CLIENT_MESSAGE).encode() + b"\n"
    assert held.content.startswith(b"Authentication-Results: mx.example.test; auth=none\nReceived: from [192.0.2.1]")
    assert held.content.endswith(b"\n" + client)


@pytest.mark.components
def test_null_sender(pf):
    result = run(str(pf.cleanup_socket), session(sender="", recipients=["bob@example.test"]))
    assert result.replies()[-2][0] == 250
    [queue_id] = pf.queue_ids()
    assert (pf.read(queue_id).sender, pf.read(queue_id).recipients) == ("", ["bob@example.test"])


@pytest.mark.components
def test_flags_and_environment(pf):
    message = CLIENT_MESSAGE[:3] + ["Subject: hold me"] + CLIENT_MESSAGE[4:]
    result = run("/nonexistent/socket FLAG_FILTER FLAG_NOPE", session(message=message),
                 env={"POSTFIXQUEUE": str(pf.cleanup_socket)})
    assert result.replies()[-2][0] == 250
    assert len(pf.held_ids()) == 1  # FLAG_FILTER: header_checks put it on hold


@pytest.mark.components
def test_content_rejected_is_permanent(pf):
    message = CLIENT_MESSAGE[:3] + ["Subject: reject me"] + CLIENT_MESSAGE[4:]
    result = run(f"{pf.cleanup_socket} FLAG_FILTER", session(message=message))
    assert result.replies()[-2] == (554, ["5.7.1 content refused by test"])
    assert pf.queue_ids() == []


@pytest.mark.components
def test_cleanup_sockets_config_tried_in_order(pf):
    result = run("", config={"cleanup_sockets": ["/nonexistent/cleanup", str(pf.cleanup_socket)]})
    assert result.replies()[-2][0] == 250
    assert len(pf.queue_ids()) == 1


def test_no_cleanup_service():
    result = run("/nonexistent/cleanup")
    assert result.replies()[-2] == (451, ["Unable to queue message (no cleanup service); try again later"])


def test_cleanup_closing_mid_conversation(tmp_path):
    path = str(tmp_path / "cleanup")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    received = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"queue_id\0ABC123\0\0")
            received.append(conn.recv(100))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = run(path)
    finally:
        listener.close()
    thread.join(5)
    assert received and received[0].startswith(b"flags\x000\x00\x00")
    assert result.replies()[-2] == (451, ["Unable to queue message (cleanup failed); try again later"])


@pytest.mark.components
def test_client_disconnects_mid_data(pf):
    result = run(str(pf.cleanup_socket), session()[:-4])
    assert 250 not in result.codes()[5:]
    assert pf.queue_ids() == []
