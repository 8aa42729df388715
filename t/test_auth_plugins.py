"""The auth plugins against real peers written here: a checkpassword program,
an IMAP LOGIN server and a vpopmaild line-protocol server."""

from __future__ import annotations

import base64
import socket
import socketserver
import sys
import threading
from contextlib import contextmanager

import pytest
from qpsmtpd.testing import run_session

IP = "192.0.2.1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + b64(f"\0{user}\0{password}")


def auth_replies(plugins: list[str], lines: list[str], **extra) -> list[tuple[int, list[str]]]:
    result = run_session(["EHLO client.test", *lines, "QUIT"],
                         config={"plugins": plugins, "me": "mx.example.test", **extra})
    return result.replies()[2:-1]


# -- checkpassword ----------------------------------------------------------------------
CHECKPASSWORD = f'''#!{sys.executable}
"""A checkpassword-compatible program: user NUL password NUL timestamp NUL on fd 3."""
import os, sys
data = b""
while True:
    chunk = os.read(3, 512)
    if not chunk:
        break
    data += chunk
parts = data.split(b"\\0")
if len(parts) < 4 or parts[3] != b"" or not parts[2].isdigit():
    sys.exit(2)
users = {{b"good@example.test": b"secret", b"\\xc3\\xa9t\\xc3\\xa9@example.test": b"\\xc3\\xa9t\\xc3\\xa9"}}
print("noise on stdout that must not reach the client")
if users.get(parts[0]) != parts[1]:
    sys.exit(1)
with open(os.environ["CHECKPW_LOG"], "ab") as log:
    log.write(parts[0] + b"\\n")
os.execv(sys.argv[1], sys.argv[1:])
'''


@pytest.fixture
def checkpw(tmp_path, monkeypatch):
    program = tmp_path / "checkpw"
    program.write_text(CHECKPASSWORD)
    program.chmod(0o755)
    monkeypatch.setenv("CHECKPW_LOG", str(tmp_path / "log"))
    return str(program)


def test_checkpassword_success_and_failure(checkpw, tmp_path):
    plugin = f"auth/auth_checkpassword checkpw {checkpw} true /bin/true"
    replies = auth_replies([plugin], [plain("good@example.test", "secret"), "NOOP"])
    assert replies == [(235, ["2.7.0 PLAIN authentication successful for good@example.test - auth_checkpassword"]),
                       (250, ["OK"])]
    assert (tmp_path / "log").read_bytes() == b"good@example.test\n"
    replies = auth_replies([plugin], ["AUTH LOGIN", b64("good@example.test"), b64("wrong")])
    assert replies[-1] == (535, [f"5.7.8 LOGIN authentication failed for good@example.test from {IP}"])


def test_checkpassword_utf8_and_true_failing(checkpw):
    replies = auth_replies([f"auth/auth_checkpassword checkpw {checkpw} true /bin/true"],
                           [plain("été@example.test", "été")])
    assert replies[0][0] == 235
    replies = auth_replies([f"auth/auth_checkpassword checkpw {checkpw} true /bin/false"],
                           [plain("good@example.test", "secret")])
    assert replies[0][0] == 535


def test_checkpassword_from_config_file(checkpw):
    replies = auth_replies(["auth/auth_checkpassword"], [plain("good@example.test", "secret")],
                           **{"smtpauth-checkpassword": f"{checkpw} /bin/true"})
    assert replies[0][0] == 235


def test_checkpassword_unconfigured_offers_nothing(tmp_path):
    result = run_session(["EHLO client.test", plain("good@example.test", "secret"), "QUIT"],
                         config={"plugins": [f"auth/auth_checkpassword checkpw {tmp_path}/missing true /bin/true"],
                                 "me": "mx.example.test"})
    assert result.replies()[1][1][-1] == "CHUNKING"  # no AUTH after the last extension
    assert result.replies()[2] == (500, ["Unrecognized command"])


def test_checkpassword_nul_in_login_name_never_reaches_program(checkpw, tmp_path):
    replies = auth_replies([f"auth/auth_checkpassword checkpw {checkpw} true /bin/true"],
                           [f"AUTH LOGIN {b64('good@example.test' + chr(0) + 'x')}", b64("secret")])
    assert replies[-1][0] == 535
    assert not (tmp_path / "log").exists()


def test_checkpassword_offers_no_cram_md5(checkpw):
    result = run_session(["EHLO client.test", "QUIT"],
                         config={"plugins": [f"auth/auth_checkpassword checkpw {checkpw} true /bin/true"]})
    assert result.replies()[1][1][-1] == "AUTH PLAIN LOGIN"


# -- IMAP ---------------------------------------------------------------------------------
class ImapHandler(socketserver.StreamRequestHandler):
    """Just enough IMAP4rev1: greeting, LOGIN (quoted strings or literals), LOGOUT."""

    users = {b"good@example.test": b"se\"cr\\et", b"\xc3\xa9@example.test": b"p w\xc3\xa9"}
    seen: list[bytes] = []

    def read_string(self, line: bytes) -> tuple[bytes, bytes]:
        if line.startswith(b'"'):
            out, index = bytearray(), 1
            while line[index:index + 1] != b'"':
                if line[index:index + 1] == b"\\":
                    index += 1
                out += line[index:index + 1]
                index += 1
            return bytes(out), line[index + 1:].lstrip(b" ")
        if line.startswith(b"{"):
            size = int(line[1:line.index(b"}")])
            self.wfile.write(b"+ go ahead\r\n")
            value = self.rfile.read(size)
            return value, self.rfile.readline().rstrip(b"\r\n").lstrip(b" ")
        word, _sep, rest = line.partition(b" ")
        return word, rest

    def handle(self) -> None:
        self.wfile.write(b"* OK IMAP4rev1 test server ready\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            line = line.rstrip(b"\r\n")
            tag, _sep, rest = line.partition(b" ")
            command, _sep, args = rest.partition(b" ")
            type(self).seen.append(line)
            if command.upper() == b"LOGIN":
                user, rest_args = self.read_string(args)
                if rest_args == b"" and args.startswith(b"{"):
                    rest_args = self.rfile.readline().rstrip(b"\r\n")
                password, _rest = self.read_string(rest_args)
                if self.users.get(user) == password:
                    self.wfile.write(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK LOGIN completed\r\n")
                else:
                    self.wfile.write(tag + b" NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
            elif command.upper() == b"LOGOUT":
                self.wfile.write(b"* BYE\r\n" + tag + b" OK LOGOUT completed\r\n")
                return
            else:
                self.wfile.write(tag + b" BAD unknown\r\n")


@contextmanager
def tcp_server(handler):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_imap_login_ok_and_no():
    with tcp_server(ImapHandler) as port:
        plugin = f"auth/auth_imap 127.0.0.1 {port}"
        replies = auth_replies([plugin], [plain("good@example.test", 'se"cr\\et'),
                                          ], max_auth_failures="0")
        assert replies == [(235, ["2.7.0 PLAIN authentication successful for good@example.test - auth_imap/plain"])]
        replies = auth_replies([plugin], ["AUTH LOGIN", b64("good@example.test"), b64("nope")])
        assert replies[-1] == (535, [f"5.7.8 LOGIN authentication failed for good@example.test from {IP} - "
                                     f"auth_imap - invalid password for good@example.test at 127.0.0.1:{port}"])


def test_imap_literal_for_non_ascii():
    with tcp_server(ImapHandler) as port:
        replies = auth_replies([f"auth/auth_imap 127.0.0.1 {port}"], [plain("é@example.test", "p wé")])
    assert replies[0][0] == 235
    assert any(line.startswith(b"A001 LOGIN {") for line in ImapHandler.seen)


def test_imap_unreachable():
    port = closed_port()
    replies = auth_replies([f"auth/auth_imap 127.0.0.1 {port}"], [plain("good@example.test", "x")])
    assert replies == [(535, [f"5.7.8 PLAIN authentication failed for good@example.test from {IP} - "
                              f"auth_imap - could not connect to 127.0.0.1:{port}"])]


def test_imap_requires_server_argument():
    result = run_session(["EHLO client.test", "QUIT"], config={"plugins": ["auth/auth_imap"]})
    assert result.codes() == [421]  # a plugin that fails to load: no session without it
    assert "No IMAP server specified" in "\n".join(result.log)
    result = run_session(["EHLO client.test", "QUIT"], config={"plugins": ["auth/auth_imap bad/host"]})
    assert result.codes() == [421]
    assert "Bad data in imap server" in "\n".join(result.log)


# -- vpopmaild ----------------------------------------------------------------------------
class VpopmaildHandler(socketserver.StreamRequestHandler):
    lines: list[bytes] = []

    def handle(self) -> None:
        self.wfile.write(b"+OK \r\n")
        line = self.rfile.readline()
        type(self).lines.append(line)
        words = line.split()
        if words[:1] == [b"login"] and words[1:] == [b"good@example.test", b"secret"]:
            self.wfile.write(b"+OK+\r\nvpopmail_dir /home/vpopmail\r\n.\r\n")
        else:
            self.wfile.write(b"-ERR login failed\r\n")


class BadGreetingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"-ERR busy\r\n")


def test_vpopmaild_ok_and_err():
    VpopmaildHandler.lines = []
    with tcp_server(VpopmaildHandler) as port:
        plugin = f"auth/auth_vpopmaild host 127.0.0.1 port {port}"
        assert auth_replies([plugin], [plain("good@example.test", "secret")]) == [
            (235, ["2.7.0 PLAIN authentication successful for good@example.test - auth_vpopmaild"])]
        assert auth_replies([plugin], ["AUTH LOGIN", b64("good@example.test"), b64("bad")])[-1] == \
            (535, [f"5.7.8 LOGIN authentication failed for good@example.test from {IP}"])
    assert VpopmaildHandler.lines == [b"login good@example.test secret\r\n", b"login good@example.test bad\r\n"]


def test_vpopmaild_refuses_protocol_injection():
    VpopmaildHandler.lines = []
    with tcp_server(VpopmaildHandler) as port:
        replies = auth_replies([f"auth/auth_vpopmaild host 127.0.0.1 port {port}"],
                               [plain("good@example.test", "secret\r\nadd_user x")])
    assert replies[0][0] == 535
    assert VpopmaildHandler.lines == []


def test_vpopmaild_unreachable_and_bad_greeting():
    port = closed_port()
    assert auth_replies([f"auth/auth_vpopmaild host 127.0.0.1 port {port}"],
                        [plain("good@example.test", "secret")])[0][0] == 535
    with tcp_server(BadGreetingHandler) as port:
        assert auth_replies([f"auth/auth_vpopmaild host 127.0.0.1 port {port}"],
                            [plain("good@example.test", "secret")])[0][0] == 535


# -- authdeny -----------------------------------------------------------------------------
def test_authdeny():
    replies = auth_replies(["auth/authdeny"], [plain("x@example.test", "y")])
    assert replies == [(535, [f"5.7.8 PLAIN authentication failed for x@example.test from {IP} - "
                              "x@example.test is not free to abuse my relay"])]


def test_first_plugin_to_accept_wins(checkpw):
    replies = auth_replies([f"auth/auth_checkpassword checkpw {checkpw} true /bin/true", "auth/authdeny"],
                           [plain("good@example.test", "secret")])
    assert replies[0][0] == 235
