"""queue/lmtp passes the DSN parameters (RFC 3461) on to an LMTP server that offers DSN (issue 17):
with `config/dsn` on, the client's RET/ENVID reach the server's MAIL and each recipient's
NOTIFY/ORCPT reach that recipient's RCPT, unchanged (xtext stays encoded); to a server that does
not offer DSN they are left off and the message is still delivered (the plugin's page: "the
client's RET/ENVID when the server offers DSN"); with `config/dsn` off nothing is passed on;
a recipient given twice keeps the parameters of each RCPT.

The LMTP server is a peer written here, not a real one, because no LMTP server in Debian offers
DSN on demand: Dovecot 2.3's LMTP does not advertise DSN at all, and Postfix has LMTP clients
only, no LMTP server.  The peer listens on a unix socket in a temp dir, speaks LHLO, MAIL, RCPT
(one reply per recipient), DATA (one reply per accepted recipient after the dot) and QUIT, records
every command line and the message exactly as received, and -- like a strict server (RFC 5321
4.1.1.11, 555) -- refuses MAIL/RCPT parameters it did not advertise, so a parameter sent to it
that it does not offer is a failed delivery the test sees.  Sessions run through the real
qpsmtpd.py (as in test_queue_lmtp.py); nothing outside the repository is needed.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy_support import private_install, remove_install, run_pipe

BASE_EXTENSIONS = ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE")
PARAMETERS_OF = {"SIZE": ("SIZE",), "8BITMIME": ("BODY",), "DSN": ("RET", "ENVID", "NOTIFY", "ORCPT")}


@dataclass
class PeerSession:
    commands: list[str] = field(default_factory=list)
    message: bytes = b""

    def mail(self) -> str:
        return next(line for line in self.commands if line.upper().startswith("MAIL "))

    def rcpts(self) -> list[str]:
        return [line for line in self.commands if line.upper().startswith("RCPT ")]


class LmtpPeer:
    """An LMTP server on a unix socket that records what it gets; `offer_dsn` says whether LHLO lists DSN."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.offer_dsn = True
        self.refuse: set[str] = set()  # recipients refused at RCPT with 550
        self.sessions: list[PeerSession] = []
        peer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                session = PeerSession()
                peer.sessions.append(session)
                try:
                    peer.converse(session, self.rfile, self.wfile)
                except (OSError, socket.timeout):
                    pass

        self.server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def extensions(self) -> list[str]:
        return [*BASE_EXTENSIONS, *(["DSN"] if self.offer_dsn else [])]

    def unoffered_parameter(self, words: list[str]) -> str | None:
        allowed = {name for ext in self.extensions() for name in PARAMETERS_OF.get(ext, ())}
        for word in words:
            if word.split("=", 1)[0].upper() not in allowed:
                return word
        return None

    def converse(self, session: PeerSession, rfile, wfile) -> None:
        def say(*lines: str) -> None:
            wfile.write(b"".join(f"{line}\r\n".encode() for line in lines))
            wfile.flush()

        say("220 peer.test LMTP ready")
        accepted: list[str] = []
        while True:
            raw = rfile.readline(4096)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            session.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            words = line.split()
            if verb == "LHLO":
                extensions = self.extensions()
                say("250-peer.test", *[f"250-{ext}" for ext in extensions[:-1]], f"250 {extensions[-1]}")
            elif verb in ("MAIL", "RCPT"):
                unknown = self.unoffered_parameter(words[2:])
                address = words[1].split(":", 1)[1].strip("<>").lower() if ":" in words[1] else ""
                if unknown:
                    say(f"555 5.5.4 {unknown.split('=')[0]} parameter not supported")
                elif verb == "RCPT" and address in self.refuse:
                    say("550 5.1.1 no such user")
                else:
                    if verb == "RCPT":
                        accepted.append(address)
                    say("250 2.1.0 ok" if verb == "MAIL" else "250 2.1.5 ok")
            elif verb == "DATA":
                say("354 go ahead")
                body = []
                for data_line in iter(lambda: rfile.readline(65536), b""):
                    if data_line == b".\r\n":
                        break
                    body.append(data_line)
                session.message = b"".join(body)
                say(*[f"250 2.0.0 <{rcpt}> delivered" for rcpt in accepted])
            elif verb == "QUIT":
                say("221 2.0.0 bye")
                return
            else:
                say("500 5.5.1 unknown command")

    def __enter__(self) -> LmtpPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer(tmp_path):
    with LmtpPeer(tmp_path / "lmtp") as server:
        yield server


def session(peer: LmtpPeer, mail: str, rcpts: list[str], dsn: str = "1"):
    config = {"plugins": ["rcpt_ok", f"queue/lmtp {peer.socket_path}"], "rcpthosts": ["example.test"],
              "dsn": dsn, "lmtp_timeout": "5", "logging": ["logging/warn LOGINFO"]}
    base = private_install(config)
    lines = ["EHLO client.test", mail, *rcpts, "DATA", "Subject: dsn", "Message-ID: <dsn@sender.test>", "",
             "hello", ".", "QUIT"]
    try:
        return run_pipe(base, lines)
    finally:
        remove_install(base)


def mail_parameters(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split()[2:])


MAIL = "MAIL FROM:<sender@sender.test> RET=HDRS ENVID=QQ+2B314"
RCPTS = ["RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b",
         "RCPT TO:<bob@example.test> NOTIFY=NEVER",
         "RCPT TO:<carol@example.test>"]


def test_dsn_parameters_reach_a_server_that_offers_dsn(peer):
    result = session(peer, MAIL, RCPTS)
    assert "250 Delivered to 3 recipient(s)" in result.replies(), result.replies()
    [seen] = peer.sessions
    mail = seen.mail()
    assert mail.startswith("MAIL FROM:<sender@sender.test> ")
    params = mail_parameters(mail)
    assert params["RET"] == "HDRS" and params["ENVID"] == "QQ+2B314"  # xtext passed on still encoded
    assert set(params) == {"SIZE", "BODY", "RET", "ENVID"}
    assert seen.rcpts() == ["RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b",
                            "RCPT TO:<bob@example.test> NOTIFY=NEVER",
                            "RCPT TO:<carol@example.test>"]
    assert b"Subject: dsn\r\n" in seen.message and seen.message.endswith(b"\r\nhello\r\n")


def test_parameters_stay_with_their_recipient_when_one_is_refused(peer):
    peer.refuse = {"alice@example.test"}
    result = session(peer, MAIL, RCPTS)
    reply = [line for line in result.replies() if line.startswith("554 ")][-1]
    assert reply.startswith("554 Delivered to 2 of 3 recipients; refused: <alice@example.test>: 550"), reply
    assert peer.sessions[0].rcpts()[1:] == ["RCPT TO:<bob@example.test> NOTIFY=NEVER",
                                            "RCPT TO:<carol@example.test>"]


def test_not_sent_to_a_server_without_dsn_and_still_delivered(peer):
    peer.offer_dsn = False
    result = session(peer, MAIL, RCPTS)
    assert "250 Delivered to 3 recipient(s)" in result.replies(), result.replies()
    [seen] = peer.sessions
    assert set(mail_parameters(seen.mail())) == {"SIZE", "BODY"}
    assert seen.rcpts() == ["RCPT TO:<alice@example.test>", "RCPT TO:<bob@example.test>",
                            "RCPT TO:<carol@example.test>"]
    assert seen.message.endswith(b"\r\nhello\r\n")


def test_nothing_passed_on_when_config_dsn_is_off(peer):
    result = session(peer, MAIL, RCPTS, dsn="0")
    assert "250 Delivered to 3 recipient(s)" in result.replies(), result.replies()
    [seen] = peer.sessions
    assert set(mail_parameters(seen.mail())) == {"SIZE", "BODY"}
    assert all(line.split()[2:] == [] for line in seen.rcpts()), seen.rcpts()


def test_no_parameters_invented_when_the_client_gave_none(peer):
    result = session(peer, "MAIL FROM:<sender@sender.test>", ["RCPT TO:<alice@example.test>"])
    assert "250 Delivered to 1 recipient(s)" in result.replies(), result.replies()
    [seen] = peer.sessions
    assert set(mail_parameters(seen.mail())) == {"SIZE", "BODY"}
    assert seen.rcpts() == ["RCPT TO:<alice@example.test>"]


def test_a_repeated_recipient_keeps_its_own_parameters(peer):
    result = session(peer, MAIL, ["RCPT TO:<alice@example.test> NOTIFY=NEVER",
                                  "RCPT TO:<alice@example.test> NOTIFY=SUCCESS ORCPT=rfc822;alice+2Bx@example.test"])
    assert "250 Delivered to 2 recipient(s)" in result.replies(), result.replies()
    assert peer.sessions[0].rcpts() == [
        "RCPT TO:<alice@example.test> NOTIFY=NEVER",
        "RCPT TO:<alice@example.test> NOTIFY=SUCCESS ORCPT=rfc822;alice+2Bx@example.test"]
