"""plugins/rspamd.py: rspamd's /checkv2 over TCP and a unix socket.

The real rspamd (marked ``components``, started once for the module by
``components_filters.rspamd()``) answers GTUBE with reject; the Lua rules of
its private config let a test ask for any other action, for milter header
changes, and echo the connection facts it received (symbol QPT_FROM, QPT_USER).

:class:`FakeRspamd` is an HTTP server written in this test, for what the real
rspamd does not do on demand: being slow, answering garbage, a 500, JSON
that is not an object, a chunked answer, and dropping the connection.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import pytest
from qpsmtpd.testing import REPO_DIR, run_session

TEST_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins_for_tests")
PLUGIN_DIRS = [TEST_PLUGINS, os.path.join(REPO_DIR, "plugins")]
MESSAGE = ["From: a@example.com", "To: x@example.test", "Subject: hi there", "", "hello"]


def session(plugin_line: str, message: list[str] = MESSAGE, before_mail: list[str] | None = None,
            config: dict | None = None, **kwargs):
    lines = ["EHLO client.test", *(before_mail or []), "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>",
             "RCPT TO:<y@example.test>", "DATA", *message, ".", "QUIT"]
    full_config = {"plugins": [plugin_line, "notes_to_header rspamd spam", "rcpt_ok"],
                   "rcpthosts": ["example.test"], "enhancedstatuscodes": ["1"], "loglevel": ["6"],
                   **(config or {})}
    return run_session(lines, config=full_config, plugin_dirs=PLUGIN_DIRS, capture_queue=True, **kwargs)


def header_of(result) -> str:
    assert len(result.queued) == 1, result.replies()
    return result.queued[0].message.decode().split("\n\n")[0]


def notes_of(result) -> dict:
    header = header_of(result)
    line = next(line for line in header.split("\n") if line.startswith("X-Test-Notes: "))
    return json.loads(line[len("X-Test-Notes: "):])


# --------------------------------------------------------------------------
# The real rspamd
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rspamd_daemon():
    from components_filters import rspamd
    with rspamd() as daemon:
        yield daemon


@pytest.mark.components
def test_gtube_is_rejected_with_rspamds_message(rspamd_daemon):
    from components import GTUBE

    result = session(f"rspamd port {rspamd_daemon.port}", message=["Subject: spam", "", GTUBE])
    assert result.replies()[-2] == (554, ["5.7.1 Gtube pattern"])
    assert not result.queued
    assert any("rspamd: reject from 192.0.2.1" in line for line in result.log)


@pytest.mark.components
def test_ham_over_the_unix_socket_gets_score_headers_and_notes(rspamd_daemon):
    result = session(f"rspamd socket {rspamd_daemon.socket_path}")
    header = header_of(result)
    assert "\nX-Spam-Action: no action\n" in header
    assert "\nX-Spam-Score: 0.00 / 15.00\n" in header
    assert "QPT_FROM(0.00)" in header
    notes = notes_of(result)
    assert notes["rspamd"]["action"] == "no action" and notes["spam"] is False
    facts = notes["rspamd"]["options"]["QPT_FROM"][0].split(",")
    assert {"from=a@example.com", "rcpt=x@example.test", "rcpt=y@example.test", "ip=192.0.2.1",
            "helo=client.test"} <= set(facts)
    assert any(fact.startswith("qid=") and len(fact) > 4 for fact in facts)


@pytest.mark.components
def test_client_supplied_spam_headers_are_replaced(rspamd_daemon):
    message = ["Subject: hi", "X-Spam-Score: -100", "X-Spam: No", "", "hello"]
    header = header_of(session(f"rspamd port {rspamd_daemon.port}", message=message))
    assert "-100" not in header and "X-Spam: No" not in header


@pytest.mark.components
@pytest.mark.parametrize("action, code, text", [
    ("soft reject", 451, "4.7.1 test action soft reject"),
    ("reject", 554, "5.7.1 test action reject"),
])
def test_refusing_actions(rspamd_daemon, action, code, text):
    message = ["Subject: hi", f"X-Test-Action: {action}", "", "hello"]
    result = session(f"rspamd port {rspamd_daemon.port}", message=message)
    assert result.replies()[-2] == (code, [text]) and not result.queued


@pytest.mark.components
def test_soft_reject_and_reject_can_be_turned_off(rspamd_daemon):
    for action, option in (("soft reject", "soft_reject"), ("reject", "reject")):
        message = ["Subject: hi", f"X-Test-Action: {action}", "", "hello"]
        header = header_of(session(f"rspamd port {rspamd_daemon.port} {option} 0", message=message))
        assert f"X-Spam-Action: {action}" in header


@pytest.mark.components
def test_marking_actions(rspamd_daemon):
    port = rspamd_daemon.port
    header = header_of(session(f"rspamd port {port}", message=["Subject: hi there", "X-Test-Action: rewrite subject",
                                                                "", "x"]))
    assert "\nSubject: ***SPAM*** hi there\n" in header and "\nX-Spam: Yes\n" in header
    header = header_of(session(f"rspamd port {port}", message=["Subject: hi", "X-Test-Spammy: 1", "", "x"]))
    assert "\nX-Spam: Yes\n" in header and "X-Spam-Action: add header" in header and "QPT_SCORE(7.00)" in header
    header = header_of(session(f"rspamd port {port} spam_header X-Is-Spam",
                               message=["Subject: hi", "X-Test-Spammy: 1", "", "x"]))
    assert "\nX-Is-Spam: Yes\n" in header
    header = header_of(session(f"rspamd port {port}", message=["Subject: hi", "X-Test-Action: greylist", "", "x"]))
    assert "X-Spam-Action: greylist" in header and "X-Spam: Yes" not in header


@pytest.mark.components
def test_milter_header_changes_are_applied(rspamd_daemon):
    message = ["Subject: hi", "X-Test-Milter: 1", "X-Remove-Me: a", "X-Remove-Me: b", "", "hello"]
    header = header_of(session(f"rspamd port {rspamd_daemon.port}", message=message))
    assert "\nX-Rspamd-Test: added\n" in header and "X-Remove-Me" not in header
    header = header_of(session(f"rspamd port {rspamd_daemon.port} milter_headers 0", message=message))
    assert "X-Rspamd-Test" not in header and "X-Remove-Me: b" in header


@pytest.mark.components
def test_authenticated_user_and_settings_id(rspamd_daemon):
    plain = base64.b64encode(b"\0user@example.test\0secret").decode()
    result = session(f"rspamd port {rspamd_daemon.port} settings_id_relay outbound",
                     before_mail=[f"AUTH PLAIN {plain}"],
                     config={"plugins": ["auth/auth_flat_file", f"rspamd port {rspamd_daemon.port}",
                                         "notes_to_header rspamd", "rcpt_ok"],
                             "flat_auth_pw": ["user@example.test:secret"]})
    assert result.codes()[2] == 235
    assert notes_of(result)["rspamd"]["options"]["QPT_USER"] == ["user@example.test"]


@pytest.mark.components
def test_relay_clients_can_be_skipped(rspamd_daemon):
    from components import GTUBE

    result = session(f"rspamd port {rspamd_daemon.port} relay_clients skip", message=["Subject: s", "", GTUBE],
                     connection={"relay_client": "1"})
    assert result.codes()[-2] == 250
    result = session(f"rspamd port {rspamd_daemon.port}", message=["Subject: s", "", GTUBE],
                     connection={"relay_client": "1"})
    assert result.codes()[-2] == 554


@pytest.mark.components
def test_size_limit_skips_big_messages_without_asking(rspamd_daemon):
    from components import GTUBE

    result = session(f"rspamd port {rspamd_daemon.port} size_limit 100", message=["Subject: s", "", GTUBE])
    assert "X-Spam-Action: unscanned" in header_of(result)


@pytest.mark.components
def test_big_message_is_streamed_and_scanned(rspamd_daemon):
    body = [f"line {n:06d} of a long message with some words in it" for n in range(60_000)]  # ~3 MB
    result = session(f"rspamd port {rspamd_daemon.port}", message=["Subject: big", "", *body])
    assert "X-Spam-Action: no action" in header_of(result)


# --------------------------------------------------------------------------
# An rspamd that is down, slow or answers garbage
# --------------------------------------------------------------------------


class FakeRspamd:
    """An HTTP server written in this test: it reads the request, then sends ``answer`` (after ``delay``).

    ``answer`` of None closes the connection without a word.  The request
    received last is kept in ``request``.
    """

    def __init__(self, answer: bytes | None, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.request = b""
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(5)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _sep, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                self.request = head + b"\r\n\r\n" + body
                time.sleep(self.delay)
                if self.answer is not None:
                    try:
                        conn.sendall(self.answer)
                    except OSError:
                        pass

    def close(self) -> None:
        self.listener.close()


def http(body: bytes, status: str = "200 OK", chunked: bool = False) -> bytes:
    if chunked:
        middle = len(body) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:middle], body[middle:]))
        return f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


REJECT_JSON = json.dumps({"action": "reject", "score": 20.5, "required_score": 15,
                          "symbols": {"BAD": {"score": 20.5}}, "messages": {"smtp_message": "Go away"}}).encode()


@pytest.fixture
def fake():
    made = []

    def make(*args, **kwargs):
        server = FakeRspamd(*args, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_request_carries_the_connection_facts_and_the_whole_message(fake):
    server = fake(http(REJECT_JSON, chunked=True))
    result = session(f"rspamd port {server.port} settings_id inbound")
    assert result.replies()[-2] == (554, ["5.7.1 Go away"])
    head, _sep, body = server.request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /checkv2 HTTP/1.1"
    for expected in ("IP: 192.0.2.1", "Helo: client.test", "From: a@example.com", "Rcpt: x@example.test",
                     "Rcpt: y@example.test", "Settings-ID: inbound"):
        assert expected in lines
    assert any(line.startswith("Queue-Id: ") for line in lines)
    assert body.endswith(b"Subject: hi there\n\nhello\n") and body.startswith(b"Authentication-Results:")


@pytest.mark.parametrize("answer, delay, reason", [
    (b"SPAMD/1.1 0 EX_OK\r\n\r\n", 0, "garbage"),
    (http(b"oops", "500 Internal Server Error"), 0, "HTTP 500"),
    (http(b"[1, 2]"), 0, "not an object"),
    (http(b"{not json"), 0, "not JSON"),
    (None, 0, "closed the connection"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"action\"", 0, "closed the connection"),
    (http(REJECT_JSON), 1.5, "timed out"),
])
def test_failures_get_the_default_action(fake, answer, delay, reason):
    server = fake(answer, delay)
    started = time.monotonic()
    result = session(f"rspamd port {server.port} timeout 0.5")
    assert time.monotonic() - started < 1.4
    assert result.replies()[-2] == (451, ["4.7.1 Message could not be scanned - try again later"])
    assert not result.queued
    assert any(reason in line and "default_action tempfail" in line for line in result.log), result.log


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_down_with_default_action_accept_and_reject():
    port = closed_port()
    result = session(f"rspamd port {port} default_action accept")
    assert "X-Spam-Action: unscanned" in header_of(result)
    result = session(f"rspamd port {port} default_action reject")
    assert result.replies()[-2] == (554, ["5.7.1 Message could not be scanned"])


def test_relay_clients_get_their_own_settings_id(fake):
    server = fake(http(json.dumps({"action": "no action", "score": 0, "required_score": 15}).encode()))
    session(f"rspamd port {server.port} settings_id inbound settings_id_relay outbound",
            connection={"relay_client": "1"})
    assert b"\r\nSettings-ID: outbound\r\n" in server.request
    session(f"rspamd port {server.port} settings_id inbound settings_id_relay outbound")
    assert b"\r\nSettings-ID: inbound\r\n" in server.request


def test_discard_answers_250_and_queues_nothing(fake):
    server = fake(http(json.dumps({"action": "discard", "score": 30, "required_score": 15}).encode()))
    result = session(f"rspamd port {server.port}")
    assert result.codes()[-2] == 250 and not result.queued


def test_dkim_signature_from_rspamd_goes_on_top(fake):
    answer = {"action": "no action", "score": 0, "required_score": 15,
              "dkim-signature": "v=1; a=rsa-sha256; d=example.com;\r\n\tb=abc"}
    server = fake(http(json.dumps(answer).encode()))
    result = session(f"rspamd port {server.port}")
    assert result.queued[0].message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\n\tb=abc\n")


def test_json_reader_matches_the_json_package():
    """The plugin reads rspamd's JSON without the json package (whose import costs ~5 ms)."""
    from qpsmtpd.rspamd import loads

    text = ('{"score":-0.5e1,"action":"no action","symbols":{"A":{"score":0.0,"options":["x\\u00e9\\"y",'
            '"\\ud83d\\ude00"]}},"milter":{"add_headers":{"Y":{"value":"v","order":-1}}},"n":null,"t":true,'
            '"f":false,"l":[ 1 , [ ], { } ]}')
    assert loads(text) == json.loads(text)
    for bad in ("{", '{"a" 1}', "[1,]", "{not json", "", '{"a":1}x', "nul", '{"a":"\x01"}', "[" * 100000):
        with pytest.raises((ValueError, RecursionError)):
            loads(bad)
