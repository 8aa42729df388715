"""auth/auth_cvm_unix_local against a real CVM module: Debian's cvm-pwfile on a
cvm-local: socket in a private directory, with a private password file."""

from __future__ import annotations

import base64
import socket

import pytest
from components_ported import cvm_pwfile
from qpsmtpd.testing import run_session

pytestmark = pytest.mark.components

PASSWD = ["alice:s3cret:1000:1000:Alice:/home/alice:/bin/sh",
          "bob:hunter2:1001:1001:Bob:/home/bob:/bin/sh"]


@pytest.fixture(scope="module")
def cvm():
    with cvm_pwfile(PASSWD) as daemon:
        yield daemon


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + b64(f"\0{user}\0{password}")


def session(plugin_line: str, lines: list[str], port: str = "465", **config):
    return run_session(["EHLO client.test", *lines, "QUIT"],
                       config={"plugins": [plugin_line], "me": "mx.example.test", "loglevel": "7", **config},
                       connection={"local_port": port})


@pytest.mark.components
def test_right_password_authenticates(cvm):
    result = session(f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}",
                     [plain("alice@example.test", "s3cret")])
    code, lines = result.replies()[2]
    assert code == 235
    assert lines == [("2.7.0 PLAIN authentication successful for alice@example.test - "
                      "auth success for alice@example.test")]
    assert any("pass: authentication for: alice@example.test" in line for line in result.log)


@pytest.mark.components
def test_auth_login_and_a_user_without_domain(cvm):
    result = session(f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}",
                     ["AUTH LOGIN", b64("bob"), b64("hunter2")])
    assert [code for code, _ in result.replies()[2:5]] == [334, 334, 235]


@pytest.mark.components
def test_wrong_password_and_unknown_user_are_refused(cvm):
    for user, password in (("alice@example.test", "wrong"), ("nobody@example.test", "s3cret")):
        result = session(f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}", [plain(user, password)])
        code, lines = result.replies()[2]
        assert code == 535, (user, result.output)
        assert lines[0].endswith(" - auth failure (100)")
        assert any(f"fail: authentication failure for: {user}" in line for line in result.log)


@pytest.mark.components
def test_password_with_nul_is_refused_without_asking(cvm):
    result = session(f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}",
                     ["AUTH PLAIN " + base64.b64encode(b"\0alice\0s3cret\0x").decode()])
    # PLAIN itself rejects a fourth field; a NUL inside LOGIN's password reaches the plugin
    assert result.replies()[2][0] == 535
    result = session(f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}",
                     ["AUTH LOGIN", b64("alice"), base64.b64encode(b"s3cret\0\0x").decode()])
    code, lines = result.replies()[4]
    assert code == 535 and lines[0].endswith("authcvm, invalid password")


@pytest.mark.components
def test_port_25_needs_enable_smtp(cvm):
    line = f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}"
    result = session(line, [plain("alice@example.test", "s3cret")], port="25")
    assert not any("AUTH" in text for text in result.replies()[1][1])
    assert result.replies()[2][0] == 500
    result = session(line + " enable_smtp yes", [plain("alice@example.test", "s3cret")], port="587")
    assert result.replies()[2][0] == 235


@pytest.mark.components
def test_port_465_can_be_disabled(cvm):
    result = session(f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path} enable_ssmtp no",
                     [plain("alice@example.test", "s3cret")])
    assert result.replies()[2][0] == 500


def test_missing_socket_registers_nothing(tmp_path):
    result = session(f"auth/auth_cvm_unix_local cvm_socket {tmp_path}/nothing.sock",
                     [plain("alice@example.test", "s3cret")])
    assert result.replies()[2][0] == 500
    assert any("cvm_socket missing or not usable" in line for line in result.log)


def test_dead_socket_is_connection_failed(tmp_path):
    path = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the socket file stays, nobody listens: a crashed cvm
    result = session(f"auth/auth_cvm_unix_local cvm_socket {path}", [plain("alice@example.test", "s3cret")])
    code, lines = result.replies()[2]
    assert code == 535 and lines[0].endswith("authcvm, connection failed")


def test_forkserver_decides_per_connection(cvm):
    """`qpsmtpd.py --listen` loads the plugins once for both ports: 587 declines, another port authenticates."""
    import smtplib

    from test_forkserver import forkserver
    line = f"auth/auth_cvm_unix_local cvm_socket {cvm.socket_path}"
    with forkserver(plugins=[line, "rcpt_ok"], listen=["127.0.0.1:587", "127.0.0.1:{port}"]) as server:
        for port, expected in ((587, 535), (server.port, 235)):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo("client.test")
                code, _text = client.docmd("AUTH", "PLAIN " + b64("\0alice@example.test\0s3cret"))
                assert code == expected, (port, server.log())
