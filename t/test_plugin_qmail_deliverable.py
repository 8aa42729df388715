"""qmail_deliverable against a qmail-deliverabled peer written here.

qmail-deliverabled needs qmail (and usually vpopmail) installed, which
Debian does not package, so the peer below speaks its HTTP protocol
(`GET /qd1/deliverable?<escaped address>`, a 200 whose body is the decimal
result, 204 for "undef") and misbehaves on demand: HTTP 500, a body that
is not a number, 204, a hang past the plugin's time-out, nobody listening.
"""

from __future__ import annotations

import http.server
import threading
import time
from contextlib import contextmanager

import pytest
from components import free_port
from qpsmtpd.testing import run_session

# address -> what the peer answers: an int (the result), or "500", "204", "garbage", "hang"
ANSWERS = {
    "alice@example.test": 0xF1,
    "nobody@example.test": 0,
    "list@example.test": 0x14,
    "broken@example.test": "500",
    "undef@example.test": "204",
    "garbage@example.test": "garbage",
    "slow@example.test": "hang",
    "vuser@sub.example.net": 0xF5,
    "gone@sub.example.net": 0,
}


class Peer:
    def __init__(self) -> None:
        self.requests: list[str] = []
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer.requests.append(self.path)
                from urllib.parse import unquote
                prefix = "/qd1/deliverable?"
                answer = ANSWERS.get(unquote(self.path[len(prefix):]), 0xFF) if self.path.startswith(prefix) else "404"
                if answer == "hang":
                    time.sleep(3)
                    answer = 0xF1
                if answer in ("500", "404"):
                    self.send_error(int(answer))
                    return
                if answer == "204":
                    self.send_response(204)
                    self.end_headers()
                    return
                body = b"not a number" if answer == "garbage" else str(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]


@contextmanager
def running_peer():
    peer = Peer()
    thread = threading.Thread(target=peer.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.server.shutdown()
        peer.server.server_close()


@pytest.fixture(scope="module")
def peer():
    with running_peer() as running:
        yield running


def rcpt(plugin_line: str, recipient: str, sender: str = "a@example.org", **config):
    result = run_session(["HELO client.test", f"MAIL FROM:<{sender}>", f"RCPT TO:<{recipient}>", "QUIT"],
                         config={"plugins": [plugin_line, "rcpt_ok"], "loglevel": "7",
                                 "rcpthosts": ["example.test", ".example.net"], **config})
    return result.replies()[3], result


def test_deliverable_and_undeliverable(peer):
    assert rcpt(f"qmail_deliverable server 127.0.0.1:{peer.port}", "Alice@Example.TEST")[0][0] == 250
    assert "/qd1/deliverable?alice%40example.test" in peer.requests
    reply, _result = rcpt(f"qmail_deliverable server 127.0.0.1:{peer.port}", "nobody@example.test")
    assert reply == (550, ["Sorry, no mailbox by that name. qd (#5.1.1)"])


def test_reject_0_only_logs(peer):
    reply, result = rcpt(f"qmail_deliverable server 127.0.0.1:{peer.port} reject 0", "nobody@example.test")
    assert reply[0] == 250
    assert any("fail, tolerated" in line for line in result.log)


def test_ezmlm_list_refuses_the_null_sender(peer):
    line = f"qmail_deliverable server 127.0.0.1:{peer.port}"
    assert rcpt(line, "list@example.test", sender="")[0] == (550, ["mailing lists do not accept null senders"])
    assert rcpt(line, "list@example.test")[0][0] == 250


@pytest.mark.parametrize("recipient", ["broken@example.test", "undef@example.test", "garbage@example.test",
                                       "slow@example.test"])
def test_daemon_trouble_assumes_deliverable(peer, recipient):
    started = time.monotonic()
    reply, result = rcpt(f"qmail_deliverable server 127.0.0.1:{peer.port} timeout 1", recipient)
    assert reply[0] == 250
    assert any("unreachable or broken" in line for line in result.log)
    assert time.monotonic() - started < 2.5


def test_daemon_down_assumes_deliverable():
    reply, result = rcpt(f"qmail_deliverable server 127.0.0.1:{free_port()}", "nobody@example.test")
    assert reply[0] == 250
    assert any("unreachable or broken" in line for line in result.log)


def test_smtproutes_pick_the_server(peer):
    routes = [f".example.net:127.0.0.1:{free_port()}", "example.test:[192.0.2.9]"]
    line = f"qmail_deliverable server smtproutes:{peer.port}"
    assert rcpt(line, "gone@sub.example.net", smtproutes=routes)[0][0] == 550
    assert rcpt(line, "vuser@sub.example.net", smtproutes=routes)[0][0] == 250
    # a domain without a route and no fallback host: not asked at all
    reply, result = rcpt(line, "nobody@example.test", smtproutes=routes[:1])
    assert reply[0] == 250
    assert any("No SERVER defined" in entry for entry in result.log)
    # ... with a fallback host it is asked there
    assert rcpt(f"qmail_deliverable server smtproutes:127.0.0.1:{peer.port}", "nobody@example.test",
                smtproutes=routes[:1])[0][0] == 550


def test_relay_clients_are_not_checked(peer):
    result = run_session(["HELO client.test", "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.test>", "QUIT"],
                         config={"plugins": ["relay", f"qmail_deliverable server 127.0.0.1:{peer.port}", "rcpt_ok"],
                                 "relayclients": ["192.0.2.1"], "rcpthosts": ["example.test"]})
    assert result.replies()[3][0] == 250
