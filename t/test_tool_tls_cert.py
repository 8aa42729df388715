"""tools/tls_cert.py (the Perl qpsmtpd's plugins/tls_cert): make the CA, key and
certificate with the real openssl, then run the real qpsmtpd.py with `tls`
and no arguments (its default file names) and a STARTTLS session whose
client verifies the certificate against the new CA and the host name."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from tls_auth_helpers import finish, make_install, smtp_on_socket, spawn_on_socketpair

pytestmark = pytest.mark.components

TOOL = Path(__file__).resolve().parent.parent / "tools" / "tls_cert.py"
FILES = ["qpsmtpd-ca.key", "qpsmtpd-ca.crt", "qpsmtpd-server.key", "qpsmtpd-server.csr", "qpsmtpd-server.crt",
         "qpsmtpd-dhparam.pem", ".cert.serial"]


def run_tool(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_certificate_serves_a_verified_starttls_session():
    install = make_install({"plugins": ["tls", "rcpt_ok", "queue/capture"], "rcpthosts": ["example.test"],
                            "loglevel": "6"})
    made = run_tool(install.base, "--CN", "mx.example.test", "--O", "Example $HOME \\ Org")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == "Using hostname: mx.example.test"
    ssl_dir = install.base / "ssl"
    assert sorted(os.listdir(ssl_dir)) == sorted(FILES)
    for key in ("qpsmtpd-ca.key", "qpsmtpd-server.key"):
        assert (ssl_dir / key).stat().st_mode & 0o777 == 0o600
    decoded = ssl._ssl._test_decode_cert(str(ssl_dir / "qpsmtpd-server.crt"))
    subject = dict(pair[0] for pair in decoded["subject"])
    assert subject["organizationName"] == "Example $HOME \\ Org"  # taken literally, no config expansion
    assert subject["emailAddress"] == "postmaster@mx.example.test"
    assert decoded["subjectAltName"] == (("DNS", "mx.example.test"),)

    sock, proc = spawn_on_socketpair(install)  # runs in install.base: `tls` finds ssl/qpsmtpd-server.*
    client = smtp_on_socket(sock, host="mx.example.test")
    _code, features = client.ehlo("client.test")
    assert b"STARTTLS" in features
    context = ssl.create_default_context(cafile=str(ssl_dir / "qpsmtpd-ca.crt"))
    assert client.starttls(context=context) == (220, b"Go ahead with TLS")
    assert client.sock.getpeercert()["subject"][-2] == (("commonName", "mx.example.test"),)
    client.sendmail("a@b.test", ["x@example.test"], "Subject: over TLS\r\n\r\nbody\r\n")
    client.quit()
    finish(proc)
    assert b" with ESMTPS (" in install.queued()[0]
    install.cleanup()


def test_a_client_that_does_not_trust_the_ca_refuses(tmp_path):
    install = make_install({"plugins": ["tls", "rcpt_ok", "queue/capture"], "rcpthosts": ["example.test"]})
    assert run_tool(install.base, "--CN", "mx.example.test", "--no-dhparam").returncode == 0
    assert not (install.base / "ssl" / "qpsmtpd-dhparam.pem").exists()
    sock, proc = spawn_on_socketpair(install)
    client = smtp_on_socket(sock, host="other.example.test")
    client.ehlo("client.test")
    context = ssl.create_default_context(cafile=str(install.base / "ssl" / "qpsmtpd-ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=context)  # right CA, wrong host name
    sock.close()
    proc.wait(timeout=10)
    install.cleanup()


def test_existing_files_are_kept_unless_forced(tmp_path):
    assert run_tool(tmp_path, "--CN", "one.example.test", "--no-dhparam").returncode == 0
    first = (tmp_path / "ssl" / "qpsmtpd-server.key").read_bytes()
    again = run_tool(tmp_path, "--CN", "two.example.test", "--no-dhparam")
    assert again.returncode == 1 and "--force" in again.stderr
    assert (tmp_path / "ssl" / "qpsmtpd-server.key").read_bytes() == first
    assert run_tool(tmp_path, "--CN", "two.example.test", "--no-dhparam", "--force").returncode == 0
    assert (tmp_path / "ssl" / "qpsmtpd-server.key").read_bytes() != first


def test_bad_country_is_a_usage_error(tmp_path):
    done = run_tool(tmp_path, "--C", "Germany")
    assert done.returncode == 2 and "two letters" in done.stderr
    assert not (tmp_path / "ssl").exists()
