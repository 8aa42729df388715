"""STARTTLS and SMTPS with the real qpsmtpd.py: smtplib with a verifying
context over a socket pair and under tcpserver, swaks over pipes, the
STARTTLS command-injection test, the session reset and tls_before_auth."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess

import components
import pytest
from tls_auth_helpers import (
    PYTHON,
    QPSMTPD,
    b64,
    finish,
    make_install,
    smtp_on_socket,
    spawn_on_socketpair,
)

GOOD = "good@example.test"
DATE = r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cert")
    directory.chmod(0o755)
    return components.make_cert(directory, "server")


def tls_install(cert, *extra_plugins, env=None, **config):
    cert_path, key_path = cert
    plugins = config.pop("plugins", [f"tls {cert_path} {key_path}", "auth/auth_flat_file", *extra_plugins,
                                     "rcpt_ok", "queue/capture"])
    return make_install({"plugins": plugins, "flat_auth_pw": [f"{GOOD}:secret"], "rcpthosts": ["example.test"],
                         "loglevel": "6", **config}, env=env)


def client_context(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def version() -> str:
    from qpsmtpd import __version__
    return __version__


def received_line(message: bytes) -> str:
    text = message.decode()
    match = re.search(r"^Received: .*\n .*\n", text, re.MULTILINE)
    assert match, text
    return match.group(0)


# -- smtplib over a socket pair ---------------------------------------------------------
@pytest.mark.components
def test_starttls_login_and_headers_byte_for_byte(cert):
    install = tls_install(cert)
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock)
    code, features = client.ehlo("client.test")
    assert features.split(b"\n")[-2:] == [b"STARTTLS", b"AUTH PLAIN LOGIN CRAM-MD5"]
    assert client.starttls(context=client_context(cert)) == (220, b"Go ahead with TLS")
    cipher = client.sock.cipher()[0]
    code, features = client.ehlo("client.test")
    assert b"STARTTLS" not in features and features.endswith(b"AUTH PLAIN LOGIN CRAM-MD5")
    assert client.login(GOOD, "secret")[0] == 235
    client.sendmail("a@b.test", ["x@elsewhere.test"], "Subject: hi\r\n\r\nbody\r\n")
    client.quit()
    log = finish(proc)
    message = install.queued()[0]
    header = message.decode().split("\n\n")[0].split("\n")
    assert header[0] == f"Authentication-Results: mx.example.test; auth=pass (cram-md5) smtp.auth={GOOD}"
    assert header[1] == "Received: from [127.0.0.1] (HELO client.test) (127.0.0.1)"
    assert re.fullmatch(rf" by mx\.example\.test \(qpsmtpd/{re.escape(version())}\) with ESMTPSA "
                        rf"\({re.escape(cipher)} encrypted\); {DATE}", header[2]), header[2]
    assert "TLS established: TLSv1.3" in log
    install.cleanup()


@pytest.mark.components
def test_starttls_without_auth_is_esmtps(cert):
    install = tls_install(cert)
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock)
    client.starttls(context=client_context(cert))
    client.sendmail("a@b.test", ["x@example.test"], "Subject: hi\r\n\r\nbody\r\n")
    cipher = client.sock.cipher()[0]
    client.quit()
    finish(proc)
    assert f" with ESMTPS ({cipher} encrypted); " in received_line(install.queued()[0])
    assert install.queued()[0].startswith(b"Authentication-Results: mx.example.test; auth=none\n")
    install.cleanup()


@pytest.mark.components
def test_session_reset_after_starttls(cert):
    install = tls_install(cert, tls_before_auth="0")
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock)
    client.ehlo("client.test")
    assert client.docmd("AUTH", "PLAIN " + b64(f"\0{GOOD}\0secret"))[0] == 235
    assert client.docmd("MAIL", "FROM:<a@b.test>")[0] == 250
    client.starttls(context=client_context(cert))
    assert client.docmd("MAIL", "FROM:<a@b.test>") == (503, b"please say hello first ...")
    client.ehlo("client.test")
    assert client.docmd("MAIL", "FROM:<a@b.test>")[0] == 250
    assert client.docmd("RCPT", "TO:<x@elsewhere.test>") == (550, b"Relaying denied (#5.7.1)")
    assert client.docmd("RSET") == (250, b"OK")
    assert client.docmd("AUTH", "PLAIN " + b64(f"\0{GOOD}\0secret"))[0] == 235
    assert client.docmd("STARTTLS") == (500, b"Unrecognized command")
    client.quit()
    finish(proc)
    install.cleanup()


@pytest.mark.components
def test_starttls_syntax_and_sequence(cert):
    install = tls_install(cert)
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock)
    assert client.docmd("STARTTLS") == (500, b"Unrecognized command")
    client.ehlo("client.test")
    assert client.docmd("STARTTLS", "now") == (501, b"Syntax error (no parameters allowed)")
    client.quit()
    finish(proc)
    install.cleanup()


def test_no_certificate_no_starttls(tmp_path):
    install = make_install({"plugins": [f"tls {tmp_path}/none.crt {tmp_path}/none.key", "rcpt_ok"]})
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock)
    assert b"STARTTLS" not in client.ehlo("client.test")[1]
    assert client.docmd("STARTTLS") == (500, b"Unrecognized command")
    client.quit()
    assert "Cannot locate cert/key" in finish(proc)
    install.cleanup()


@pytest.mark.components
def test_tls_before_auth(cert):
    install = tls_install(cert, tls_before_auth="1")
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock)
    features = client.ehlo("client.test")[1]
    assert b"AUTH" not in features and b"STARTTLS" in features
    assert client.docmd("AUTH", "PLAIN " + b64(f"\0{GOOD}\0secret")) == (503, b"SSL/TLS required before AUTH")
    client.starttls(context=client_context(cert))
    assert client.ehlo("client.test")[1].endswith(b"AUTH PLAIN LOGIN CRAM-MD5")
    assert client.login(GOOD, "secret")[0] == 235
    client.quit()
    finish(proc)
    install.cleanup()


# -- the STARTTLS command injection (CVE-2011-0411 class) -----------------------------------
def read_reply(stream) -> list[bytes]:
    lines = []
    while True:
        line = stream.readline()
        assert line, "connection closed"
        lines.append(line.rstrip(b"\r\n"))
        if line[3:4] != b"-":
            return lines


@pytest.mark.components
def test_plaintext_after_starttls_is_discarded(cert):
    install = tls_install(cert)
    sock, proc = spawn_on_socketpair(install)
    sock.settimeout(10)
    plain = sock.makefile("rb")
    assert read_reply(plain)[0].startswith(b"220 ")
    sock.sendall(b"EHLO client.test\r\n")
    read_reply(plain)
    sock.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x.test>\r\n")
    assert read_reply(plain) == [b"220 Go ahead with TLS"]
    tls = client_context(cert).wrap_socket(sock, server_hostname="localhost")
    stream = tls.makefile("rb")
    tls.sendall(b"EHLO client.test\r\n")
    assert read_reply(stream)[0] == b"250-mx.example.test Hi [127.0.0.1] [127.0.0.1]"
    tls.sendall(b"RCPT TO:<x@example.test>\r\n")
    assert read_reply(stream) == [b"503 Use MAIL before RCPT"]
    tls.sendall(b"QUIT\r\n")
    assert read_reply(stream)[0].startswith(b"221 ")
    tls.close()
    log = finish(proc)
    assert "discarded 31 bytes of plaintext sent before the TLS handshake" in log
    assert "dispatching rset" not in log.lower() and "evil" not in log


@pytest.mark.components
def test_failed_handshake_ends_connection(cert):
    install = tls_install(cert)
    sock, proc = spawn_on_socketpair(install)
    sock.settimeout(10)
    stream = sock.makefile("rb")
    read_reply(stream)
    sock.sendall(b"EHLO client.test\r\n")
    read_reply(stream)
    sock.sendall(b"STARTTLS\r\n")
    assert read_reply(stream) == [b"220 Go ahead with TLS"]
    sock.sendall(b"this is not a client hello\r\n" * 4)
    sock.shutdown(socket.SHUT_WR)
    rest = stream.read()
    assert b"250" not in rest
    log = finish(proc)
    assert "TLS handshake failed" in log


# -- SMTPS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("env", [{"SMTPS": "1"}, {"TCPREMOTEIP": "192.0.2.7", "TCPLOCALPORT": "465"}])
@pytest.mark.components
def test_implicit_tls_on_socketpair(cert, env):
    install = tls_install(cert, env=env)
    sock, proc = spawn_on_socketpair(install)
    tls = client_context(cert).wrap_socket(sock, server_hostname="localhost")
    client = smtp_on_socket(tls)
    features = client.ehlo("client.test")[1]
    assert b"STARTTLS" not in features
    assert client.login(GOOD, "secret")[0] == 235
    client.sendmail("a@b.test", ["x@example.test"], "Subject: hi\r\n\r\nbody\r\n")
    cipher = tls.cipher()[0]
    client.quit()
    finish(proc)
    assert f" with ESMTPSA ({cipher} encrypted); " in received_line(install.queued()[0])
    install.cleanup()


@pytest.mark.components
def test_implicit_tls_with_plain_client_is_disconnected(cert):
    install = tls_install(cert, env={"SMTPS": "1"})
    sock, proc = spawn_on_socketpair(install)
    sock.settimeout(10)
    sock.sendall(b"EHLO client.test\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    assert b"250" not in data
    assert "Cannot establish SSL session" in finish(proc)


# -- swaks over pipes ----------------------------------------------------------------------------
def swaks(install, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swaks", "--pipe", f"{PYTHON} {QPSMTPD}", "--helo", "client.test",
                           "-f", "a@b.test", "-t", "x@elsewhere.test", "--hide-all", *args],
                          env=install.environ(), capture_output=True, timeout=30)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.components
def test_swaks_starttls_auth(cert, mechanism):
    install = tls_install(cert)
    result = swaks(install, "--tls", "--auth", mechanism, "--auth-user", GOOD, "--auth-password", "secret")
    assert result.returncode == 0, result.stdout + result.stderr
    message = install.queued()[0]
    assert message.startswith(
        f"Authentication-Results: mx.example.test; auth=pass ({mechanism.lower()}) smtp.auth={GOOD}\n".encode())
    assert re.search(rf" with ESMTPSA \(\S+ encrypted\); {DATE}\n", received_line(message))
    install.cleanup()


@pytest.mark.components
def test_swaks_wrong_password_and_tls_on_connect(cert):
    install = tls_install(cert)
    result = swaks(install, "--tls", "--auth", "LOGIN", "--auth-user", GOOD, "--auth-password", "bad")
    assert result.returncode == 28
    install = tls_install(cert, env={"SMTPS": "1"})
    result = swaks(install, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", GOOD, "--auth-password", "secret")
    assert result.returncode == 0, result.stdout + result.stderr
    assert b" with ESMTPSA (" in received_line(install.queued()[0]).encode()
    install.cleanup()


# -- under a real tcpserver ---------------------------------------------------------------------
@pytest.mark.components
def test_tcpserver_starttls_and_smtps(cert):
    install = tls_install(cert)
    with components.tcpserver([PYTHON, QPSMTPD], env=install.environ()) as server:
        with smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=10) as client:
            client.starttls(context=client_context(cert))
            client.login(GOOD, "secret")
            client.sendmail("a@b.test", ["x@elsewhere.test"], "Subject: tcp\r\n\r\nbody\r\n")
    smtps = tls_install(cert, env={"SMTPS": "1"})
    with components.tcpserver([PYTHON, QPSMTPD], env=smtps.environ()) as server:
        with smtplib.SMTP_SSL(server.host, server.port, local_hostname="client.test", timeout=10,
                              context=client_context(cert)) as client:
            client.login(GOOD, "secret")
            client.sendmail("a@b.test", ["x@elsewhere.test"], "Subject: smtps\r\n\r\nbody\r\n")
    for each in (install, smtps):
        line = received_line(each.queued()[0])
        assert re.fullmatch(r"Received: from \[127\.0\.0\.1\] \(HELO client\.test\) \(127\.0\.0\.1\)\n"
                            rf" by mx\.example\.test \(qpsmtpd/{re.escape(version())}\) with ESMTPSA "
                            rf"\(TLS_[A-Z0-9_]+ encrypted\); {DATE}\n", line), line
        each.cleanup()


# -- start-up cost -------------------------------------------------------------------------------
@pytest.mark.components
def test_ssl_not_imported_unless_tls_is_used(cert):
    install = tls_install(cert)
    result = subprocess.run([PYTHON, "-X", "importtime", QPSMTPD], input=b"EHLO client.test\r\nQUIT\r\n",
                            env=install.environ(), capture_output=True, timeout=10)
    imported = {line.split("|")[-1].strip() for line in result.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert b"250-STARTTLS" in result.stdout
    assert "ssl" not in imported and "_ssl" not in imported and "qpsmtpd.auth" not in imported
    assert "plugins.tls" not in imported
    install.cleanup()


@pytest.mark.components
def test_big_message_and_pipelined_commands_inside_tls(cert):
    install = tls_install(cert)
    sock, proc = spawn_on_socketpair(install)
    sock.settimeout(10)
    plain = sock.makefile("rb")
    read_reply(plain)
    sock.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
    read_reply(plain)
    assert read_reply(plain) == [b"220 Go ahead with TLS"]
    tls = client_context(cert).wrap_socket(sock, server_hostname="localhost")
    stream = tls.makefile("rb")
    body = b"".join(b"line %06d " % n + b"x" * 100 + b"\r\n" for n in range(20000))
    tls.sendall(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n")
    assert read_reply(stream)[-1] == b"250 AUTH PLAIN LOGIN CRAM-MD5"
    assert [read_reply(stream)[0][:3] for _ in range(3)] == [b"250", b"250", b"354"]
    tls.sendall(b"Subject: big\r\n\r\n" + body + b".\r\nQUIT\r\n")
    assert read_reply(stream) == [b"250 Queued (capture)"]
    assert read_reply(stream)[0].startswith(b"221 ")
    tls.close()
    finish(proc)
    assert install.queued()[0].endswith(body.replace(b"\r\n", b"\n"))
    install.cleanup()
