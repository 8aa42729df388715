"""queue/smtp-forward against Postfix smtp-sink and a private Postfix smtpd."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import threading

import pytest

from components import REPO_ROOT, free_port, postfix_private, smtp_sink, strip_first_header
from qpsmtpd.testing import run_session

CLIENT_MESSAGE = ["Message-Id: <fwd@client.test>", "From: alice@client.test",
                  "Date: Mon, 01 Jan 2024 00:00:00 +0000", "Subject: forward test", "",
                  "first line", "..dot line", "..", "...", "last"]
RECIPIENTS = ("bob@example.test", "carol@example.test")


def session(message=CLIENT_MESSAGE, sender="alice@client.test") -> list[str]:
    return (["EHLO client.test", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in RECIPIENTS]
            + ["DATA"] + list(message) + [".", "QUIT"])


def run(port: int, lines=None, flags: str = "", config=None):
    cfg = {"plugins": ["rcpt_ok", f"queue/smtp-forward 127.0.0.1 {port} {flags}".strip()],
           "rcpthosts": ["example.test"], "me": "mx.example.test", **(config or {})}
    return run_session(lines or session(), config=cfg, connection={"remote_host": "client.example.test"})


def stored(message=CLIENT_MESSAGE) -> bytes:
    return "\n".join(line[1:] if line.startswith(".") else line for line in message).encode() + b"\n"


def dot_stuffer_class():
    from qpsmtpd.smtpclient import DotStuffer  # what smtp-forward (and lmtp) send DATA with

    return DotStuffer


@pytest.mark.components
def test_delivers_to_smtp_sink():
    with smtp_sink() as sink:
        result = run(sink.port)
        messages = sink.messages()
    assert result.replies()[-2][0] == 250
    assert len(messages) == 1
    message = messages[0]
    assert message.sender == "alice@client.test"
    assert message.recipients == list(RECIPIENTS)
    assert message.helo == "mx.example.test"
    assert message.data.startswith(b"Authentication-Results: mx.example.test; auth=none\nReceived: from ")
    assert message.data.endswith(b"\n" + stored())


@pytest.mark.components
def test_bare_cr_and_lf_cannot_end_data_on_the_next_hop():
    raw = (b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
           b"Subject: smuggle\r\n\r\nbefore\r.\rMAIL FROM:<evil@x>\r\nline\r\r\n..\r\nafter\r\n.\r\nQUIT\r\n")
    with smtp_sink() as sink:
        result = run(sink.port, raw)
        messages = sink.messages()
    assert result.replies()[-2][0] == 250
    assert len(messages) == 1 and messages[0].sender == "a@client.test"
    assert messages[0].data.endswith(b"Subject: smuggle\n\nbefore\n.\nMAIL FROM:<evil@x>\nline\n.\nafter\n")


@pytest.mark.parametrize("seed", range(20))
def test_dot_stuffer_is_independent_of_block_boundaries(seed):
    stuffer_class = dot_stuffer_class()
    rng = random.Random(seed)
    data = bytes(rng.choice(b"\r\n.ab") for _ in range(400))
    whole = stuffer_class()
    expected = whole.feed(data) + whole.finish()
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, 9)
        pieces.append(data[pos:pos + step])
        pos += step
    split = stuffer_class()
    got = b"".join(split.feed(piece) for piece in pieces) + split.finish()
    assert got == expected
    lines = got.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines[:-2])


@pytest.mark.parametrize("args,code,step", [
    (["-f", "ehlo,helo"], 554, "HELO"),
    (["-r", "ehlo"], 451, "EHLO"),
    (["-f", "mail"], 554, "MAIL"),
    (["-r", "mail"], 451, "MAIL"),
    (["-f", "rcpt"], 554, "RCPT bob@example.test"),
    (["-r", "rcpt"], 451, "RCPT bob@example.test"),
    (["-f", "data"], 554, "DATA"),
    (["-r", "data"], 451, "DATA"),
    (["-f", "."], 554, "end of data"),
    (["-r", "."], 451, "end of data"),
    (["-q", "mail"], 451, None),
])
@pytest.mark.components
def test_refusal_at_each_step(args, code, step):
    with smtp_sink(args) as sink:
        result = run(sink.port)
        messages = sink.messages()
    reply_code, text = result.replies()[-2]
    assert reply_code == code, text
    assert text[0].startswith("Unable to queue message (")
    if step:
        assert text[0].startswith(f"Unable to queue message ({step}: {code // 100}"), text
    if step not in ("end of data",):
        assert messages == []


@pytest.mark.parametrize("banner,code", [(b"554 go away\r\n", 554), (b"421 busy\r\n", 451),
                                         (b"220-almost\r\n", 451), (b"garbage\r\n", 451)])
def test_refused_or_broken_greeting(banner, code):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(banner)
            conn.settimeout(0.3)
            try:
                conn.recv(100)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = run(listener.getsockname()[1])
    finally:
        listener.close()
    assert result.replies()[-2][0] == code
    assert result.replies()[-2][1][0].startswith("Unable to queue message (")


@pytest.mark.components
def test_ehlo_refused_falls_back_to_helo():
    with smtp_sink(["-f", "ehlo"]) as sink:
        result = run(sink.port)
        messages = sink.messages()
    assert result.replies()[-2][0] == 250
    assert len(messages) == 1


def test_server_down():
    result = run(free_port())
    code, text = result.replies()[-2]
    assert code == 451 and text[0].startswith("Unable to queue message (cannot connect")


def test_server_too_slow():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    try:
        result = run(listener.getsockname()[1], config={"smtp_forward_timeout": "1"})
    finally:
        listener.close()
    code, text = result.replies()[-2]
    assert code == 451 and "timed out" in text[0], text


@pytest.mark.components
def test_client_disconnects_mid_data():
    with smtp_sink() as sink:
        result = run(sink.port, session()[:-4])
        messages = sink.messages()
    assert 250 not in result.codes()[5:]
    assert messages == []


@pytest.fixture(scope="module")
def postfix():
    with postfix_private(qmqp=False, smtpd=True) as daemon:
        subprocess.run(["postconf", "-c", str(daemon.conf_dir), "-e",
                        "smtpd_authorized_xclient_hosts = 127.0.0.0/8", "relay_domains = example.test"], check=True)
        os.utime(daemon.conf_dir / "main.cf", (0, 0))  # Postfix waits for a main.cf younger than 2 s
        os.kill(daemon.pid, 1)  # reload: new smtpd processes read the new setting
        yield daemon


def _queued(pf, count: int = 1):
    import time
    deadline = time.monotonic() + 5
    while len(pf.queue_ids()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return pf.queue_ids()


@pytest.mark.components
def test_private_postfix_smtpd_holds_the_exact_message(pf):
    result = run(pf.smtpd_port)
    code, text = result.replies()[-2]
    assert code == 250 and re.fullmatch(r"queued as [0-9A-F]+", text[0]), text
    [queue_id] = _queued(pf)
    assert queue_id == text[0].split()[-1]
    held = pf.read(queue_id)
    assert (held.sender, held.recipients) == ("alice@client.test", list(RECIPIENTS))
    ours = strip_first_header(held.content)
    assert ours.startswith(b"Authentication-Results: mx.example.test; auth=none\nReceived: from ")
    assert ours.endswith(b"\n" + stored())
    assert b"Received: from mx.example.test (unknown [127.0.0.1])" in held.content.split(b"\n\n")[0]


@pytest.mark.components
def test_xclient_passes_the_client(pf):
    result = run(pf.smtpd_port, flags="xclient")
    assert result.replies()[-2][0] == 250, result.replies()[-2]
    [queue_id] = _queued(pf)
    received = pf.read(queue_id).content.split(b"\n\n")[0]
    first = received.split(b"\n\t")[0]
    assert first == b"Received: from client.test (client.example.test [192.0.2.1])", received


@pytest.mark.components
def test_xclient_not_offered_is_refused():
    with smtp_sink(["-C"]) as sink:
        result = run(sink.port, flags="xclient")
        messages = sink.messages()
    assert result.replies()[-2] == (451, ["Unable to queue message (Server does not advertise XCLIENT support)"])
    assert messages == []
