"""CHUNKING / BDAT (RFC 3030, issue 17): chunks and LAST give the same stored message as DATA
whatever the cuts (also a CR LF split across chunks), pipelined with other commands; the same
data hooks, header parsing and limits as DATA; refused chunks are read to their end and never
run as commands; smuggling attempts through chunk contents and boundaries.  In-process sessions,
then smtplib (BDAT sent with `send`/`getreply`) against qpsmtpd.py under a real tcpserver with
a message big enough to be spooled."""

from __future__ import annotations

import hashlib
import smtplib
import sys
import tempfile
from pathlib import Path

import pytest

from components import QMAIL_QUEUE_DOUBLE, qq_double_messages, tcpserver
from deploy_support import private_install, remove_install
from qpsmtpd.testing import run_session

CONFIG = {"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"], "me": "mx.example.test"}
ENVELOPE = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\n"
MESSAGE = (b"Subject: chunked\r\nX-Folded: one\r\n two\r\n\r\nbody line\r\n.\r\n"
           b"..two dots stay two\r\nMAIL FROM:<evil@example.test>\r\nlast line without end")


def bdat(*chunks: bytes, last_empty: bool = False) -> bytes:
    out = b""
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1 and not last_empty
        out += b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk
    if last_empty:
        out += b"BDAT 0 LAST\r\n"
    return out


def session(data: bytes, config: dict | None = None, **kwargs):
    return run_session(data, config={**CONFIG, **(config or {})}, capture_queue=True, **kwargs)


def body_of(result) -> bytes:
    [message] = result.queued
    return message.message.split(b"\n", 3)[3]  # without our Authentication-Results and Received


def codes(result) -> list[int]:
    return [code for code, _lines in result.replies()]


def test_advertised_and_one_chunk():
    result = session(ENVELOPE + bdat(MESSAGE) + b"QUIT\r\n")
    assert "CHUNKING" in result.replies()[1][1]
    assert codes(result) == [220, 250, 250, 250, 250, 221]
    assert result.replies()[4][1][0].startswith("Queued")
    assert body_of(result) == (b"Subject: chunked\nX-Folded: one\n two\n\nbody line\n.\n"
                               b"..two dots stay two\nMAIL FROM:<evil@example.test>\nlast line without end\n")


def test_every_cut_gives_the_same_message_as_one_chunk():
    whole = body_of(session(ENVELOPE + bdat(MESSAGE) + b"QUIT\r\n"))
    for cut in range(1, len(MESSAGE)):  # including between the CR and LF of every line end
        result = session(ENVELOPE + bdat(MESSAGE[:cut], MESSAGE[cut:]) + b"QUIT\r\n")
        assert codes(result) == [220, 250, 250, 250, 250, 250, 221], cut
        assert body_of(result) == whole, cut


def test_data_and_bdat_store_the_same_bytes():
    text = b"Subject: same\r\n\r\nline\r\n..dot\r\n"
    via_data = session(ENVELOPE + b"DATA\r\n" + text + b".\r\nQUIT\r\n")
    via_bdat = session(ENVELOPE + bdat(text.replace(b"\r\n..", b"\r\n."), b"", last_empty=True) + b"QUIT\r\n")
    assert body_of(via_data) == body_of(via_bdat)


def test_bdat_zero_last_and_many_small_chunks_pipelined_with_the_next_transaction():
    chunks = [MESSAGE[i:i + 3] for i in range(0, len(MESSAGE), 3)]
    data = ENVELOPE + bdat(*chunks, last_empty=True) + b"MAIL FROM:<b@b.test>\r\nRCPT TO:<y@example.test>\r\n"
    data += b"DATA\r\nSubject: second\r\n\r\nx\r\n.\r\nQUIT\r\n"
    result = session(data)
    assert codes(result)[-5:] == [250, 250, 354, 250, 221]
    assert [m.recipients for m in result.queued] == [["x@example.test"], ["y@example.test"]]


def test_chunk_contents_never_become_commands():
    """Smuggling: a chunk holding an end-of-data and commands, a BDAT line inside a chunk, and a
    refused chunk (no MAIL) holding commands: all stay content or are discarded."""
    evil = b"Subject: s\r\n\r\nx\r\n.\r\nRCPT TO:<victim@elsewhere.test>\r\nBDAT 4 LAST\r\nabcd"
    result = session(ENVELOPE + bdat(evil) + b"BDAT 20\r\nRSET\r\nQUIT\r\nNOOP\r\n\r\n" + b"QUIT\r\n")
    assert codes(result) == [220, 250, 250, 250, 250, 503, 221]  # the refused chunk's lines ran nothing
    [message] = result.queued
    assert message.recipients == ["x@example.test"]
    assert b"RCPT TO:<victim@elsewhere.test>\nBDAT 4 LAST\nabcd\n" in message.message


def test_bare_cr_at_a_chunk_end_is_not_a_line_end_unless_lf_follows():
    one = body_of(session(ENVELOPE + bdat(b"Subject: a\r\n\r\nx\ry\r\n") + b"QUIT\r\n"))
    two = body_of(session(ENVELOPE + bdat(b"Subject: a\r\n\r\nx\r", b"y\r\n") + b"QUIT\r\n"))
    assert one == two == b"Subject: a\n\nx\ry\n"


@pytest.mark.parametrize("data, reply", [
    (b"EHLO c.test\r\nBDAT 4 LAST\r\nQUIT", (503, ["MAIL first"])),
    (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nBDAT 4 LAST\r\nQUIT", (503, ["RCPT first"])),
    (ENVELOPE + b"BDAT x\r\n", (501, ["Syntax error in BDAT parameters (BDAT <size> [LAST])"])),
    (ENVELOPE + b"BDAT 4 MORE\r\n", (501, ["Syntax error in BDAT parameters (BDAT <size> [LAST])"])),
    (ENVELOPE + b"BDAT -4\r\n", (501, ["Syntax error in BDAT parameters (BDAT <size> [LAST])"])),
])
def test_refusals(data, reply):
    result = session(data + b"\r\nQUIT\r\n")
    assert reply in result.replies()
    assert result.replies()[-1][0] == 221 and result.queued == []


def test_refused_chunk_then_mail_works_again():
    data = b"EHLO c.test\r\nBDAT 6\r\nQUIT\r\n" + ENVELOPE[len(b"EHLO c.test\r\n"):] + bdat(b"a: b\r\n\r\nc") + b"QUIT\r\n"
    result = session(data)
    assert codes(result) == [220, 250, 503, 250, 250, 250, 221]
    assert len(result.queued) == 1


def test_databytes_refused_at_the_chunk_and_the_rest_of_the_transaction_refused():
    data = ENVELOPE + b"BDAT 60\r\n" + b"x" * 60 + b"BDAT 60\r\n" + b"y" * 60 + b"BDAT 6 LAST\r\nRSET\r\n"
    result = session(data + b"MAIL FROM:<a@b.test>\r\nQUIT\r\n", config={"databytes": "100"})
    assert codes(result)[4:] == [250, 552, 503, 250, 221]
    assert result.replies()[5] == (552, ["Message too big!"]) and result.queued == []


def test_header_limit_and_data_hooks_apply():
    big_header = b"X-Big: " + b"h" * 300 + b"\r\n\r\nbody\r\n"
    too_big = session(ENVELOPE + bdat(big_header) + b"QUIT\r\n", config={"max_header_size": "100"})
    assert (552, ["Message header too big!"]) in too_big.replies() and too_big.queued == []
    # the headers plugin judges the parsed header, with the same reply as for DATA
    text = b"Subject: no date or from\r\n\r\nx\r\n"
    config = {"plugins": ["headers", "rcpt_ok"]}
    chunked = session(ENVELOPE + bdat(text[:10], text[10:]) + b"QUIT\r\n", config=config)
    dotted = session(ENVELOPE + b"DATA\r\n" + text + b".\r\nQUIT\r\n", config=config)
    assert chunked.replies()[5] == dotted.replies()[5] == (552, ["We require a valid From header"])
    assert chunked.queued == []


def test_a_refusing_data_hook_answers_the_first_chunk_and_the_chunk_is_discarded():
    plugins_dir = str(Path(__file__).parent / "plugins_for_tests")
    result = session(ENVELOPE + b"BDAT 6 LAST\r\nNOOP\r\n" + b"QUIT\r\n",
                     config={"plugins": ["rcpt_ok", "reply data 554 - no data today"]},
                     plugin_dirs=[plugins_dir, "plugins"])
    assert result.replies()[4][0] == 554
    assert codes(result)[-1] == 221 and len(result.replies()) == 6  # NOOP inside the chunk never ran


def test_off_by_config_and_not_after_helo():
    off = session(b"EHLO c.test\r\nBDAT 0 LAST\r\nQUIT\r\n", config={"chunking": "0"})
    helo = session(b"HELO c.test\r\nBDAT 0 LAST\r\nQUIT\r\n")
    assert "CHUNKING" not in off.replies()[1][1]
    assert off.replies()[2] == (500, ["Unrecognized command"]) and helo.replies()[2] == (500, ["Unrecognized command"])


def test_binarymime_is_not_offered():
    result = session(b"EHLO c.test\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nQUIT\r\n")
    assert result.replies()[2] == (555, ["BINARYMIME not supported"])


def test_enhanced_status_codes_on_chunk_replies():
    result = session(ENVELOPE + bdat(b"a: b\r\n", b"\r\nc\r\n") + b"QUIT\r\n", config={"enhancedstatuscodes": "1"})
    assert result.replies()[4] == (250, ["2.0.0 6 octets received"])


# -- smtplib against the real program under tcpserver -----------------------------------
@pytest.mark.components
def test_smtplib_bdat_big_spooled_message_under_tcpserver():
    queue_dir = Path(tempfile.mkdtemp(prefix="qq-"))
    base = private_install({**CONFIG, "plugins": ["rcpt_ok", "queue/qmail-queue"]})
    env = {"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(queue_dir)}
    body = b"".join(b"line %07d of a big chunked message\r\n" % n for n in range(60_000))  # ~2.3 MB
    message = b"Subject: big\r\n\r\n" + body
    try:
        with tcpserver([sys.executable, str(base / "qpsmtpd.py")], env=env) as server:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
                client.ehlo("client.test")
                assert client.has_extn("chunking")
                client.mail("a@b.test")
                client.rcpt("x@example.test")
                step = 100_003  # chunks that cut lines and CR LF pairs
                chunks = [message[i:i + step] for i in range(0, len(message), step)]
                for chunk in chunks[:-1]:  # all pipelined, then the replies
                    client.send(b"BDAT %d\r\n" % len(chunk) + chunk)
                client.send(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1])
                replies = [client.getreply() for _ in chunks]
        assert [code for code, _text in replies] == [250] * len(chunks)
        assert replies[-1][1].startswith(b"Queued")
        [queued] = qq_double_messages(queue_dir)
        stored_body = queued.message.split(b"\n\n", 1)[1]
        assert hashlib.sha256(stored_body).digest() == hashlib.sha256(body.replace(b"\r\n", b"\n")).digest()
    finally:
        remove_install(base)
        remove_install(queue_dir)
