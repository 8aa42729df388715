"""dkim: verification (dkimpy through qpsmtpd's resolver) against a real dnsmasq, and signing."""

import base64
import subprocess
import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

SELECTOR = "sel"


def make_key(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dkimkey")
    private = directory / "private"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "1024"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return private.read_bytes(), base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory)


@pytest.fixture(scope="module")
def dns(key):
    record = f"v=DKIM1; k=rsa; p={key[1]}"
    with dns_server([f'txt-record={SELECTOR}._domainkey.dkim.test,"{record}"',
                     'txt-record=other._domainkey.dkim.test,"v=DKIM1; k=rsa; p=bm90IGEga2V5"']) as line:
        yield line


def signed(private, body="Hello.\r\n", selector=SELECTOR, domain="dkim.test", extra=b""):
    import dkim
    message = (b"From: Alice <alice@dkim.test>\r\nTo: bob@example.test\r\nSubject: dkim\r\n"
               b"Message-ID: <1@dkim.test>\r\n\r\n" + body.encode())
    signature = dkim.sign(message, selector.encode(), domain.encode(), private,
                          include_headers=[b"from", b"to", b"subject", b"message-id"])
    return (signature + extra + message).decode()


def deliver(dns, message, plugins=("dkim",), ip="192.0.2.1", **config):
    lines = ["HELO client.example.test", "MAIL FROM:<alice@dkim.test>", "RCPT TO:<bob@example.test>", "DATA"]
    lines += message.replace("\r\n", "\n").rstrip("\n").split("\n")
    return session(dns, [*plugins, "rcpt_ok"], [*lines, ".", "QUIT"], ip=ip, **config)


def header_of(result):
    return result.queued[0].message.split(b"\n\n")[0].decode()


def test_good_signature_passes(dns, key):
    result = deliver(dns, signed(key[0]))
    assert result.codes()[-2:] == [250, 221]
    header = header_of(result)
    assert "dkim=pass header.d=dkim.test header.s=sel" in header
    assert "X-DKIM-Authentication: domain: dkim.test, selector: sel, result: pass" in header


def test_broken_body_hash_is_refused(dns, key):
    message = signed(key[0]).replace("Hello.", "Hello, changed.")
    result = deliver(dns, message)
    assert reply(result, 5) == "552 signature invalid: fail (body hash did not verify)"
    assert not result.queued


def test_broken_header_signature_is_refused(dns, key):
    message = signed(key[0]).replace("Subject: dkim", "Subject: forged")
    assert reply(deliver(dns, message), 5) == "552 signature invalid: fail (signature did not verify)"


def test_reject_0_and_reject_type(dns, key):
    message = signed(key[0]).replace("Hello.", "Changed.")
    result = deliver(dns, message, plugins=("dkim reject 0",))
    assert result.codes()[5] == 250
    assert "dkim=fail (body hash did not verify) header.d=dkim.test" in header_of(result)
    assert deliver(dns, message, plugins=("dkim reject_type temp",)).codes()[5] == 452


def test_missing_key_is_permerror_but_accepted(dns, key):
    result = deliver(dns, signed(key[0], selector="nokey"))
    assert result.codes()[5] == 250
    header = header_of(result)
    assert "dkim=permerror (no key for nokey._domainkey.dkim.test) header.d=dkim.test " \
           "header.s=nokey" in header
    broken = deliver(dns, signed(key[0], selector="other"))
    assert broken.codes()[5] == 250 and "dkim=permerror" in header_of(broken)


def test_every_signature_is_checked(dns, key):
    good = signed(key[0])
    second = signed(key[0], selector="nokey").split("From:")[0]
    result = deliver(dns, second + good)
    assert result.codes()[5] == 250
    header = header_of(result)
    assert "dkim=permerror (no key for nokey._domainkey.dkim.test) header.d=dkim.test " \
           "header.s=nokey; dkim=pass header.d=dkim.test header.s=sel" in " ".join(header.split())


def test_unsigned_message_is_none(dns):
    result = deliver(dns, "From: a@dkim.test\nSubject: plain\n\nbody\n")
    assert result.codes()[5] == 250 and "dkim=none" in header_of(result)


def test_relay_client_is_not_verified(dns, key):
    message = signed(key[0]).replace("Hello.", "Changed.")
    result = deliver(dns, message, plugins=("relay", "dkim"), relayclients=["192.0.2.1"])
    assert result.codes()[5] == 250 and "dkim=" not in header_of(result)


def test_silent_server_gives_timely_452():
    address, sock = dead_server()
    private = subprocess.run(["openssl", "genrsa", "1024"], check=True, capture_output=True).stdout
    message = signed(private)
    start = time.monotonic()
    result = deliver(address, message, dns_timeout=["0.5"])
    elapsed = time.monotonic() - start
    relaxed = deliver(address, message, plugins=("dkim reject 0",), dns_timeout=["0.3"])
    sock.close()
    assert result.codes()[5] == 452 and reply(result, 5).startswith("452 Please try again later - temperror (DNS ")
    assert elapsed < 1.5
    assert relaxed.codes()[5] == 250 and "dkim=temperror" in header_of(relaxed)


# -- signing -------------------------------------------------------------------

def signing_config(key, domain="dkim.test"):
    return {f"dkim/{domain}/selector": [SELECTOR], f"dkim/{domain}/private": key[0].decode(),
            "relayclients": ["192.0.2.1"]}


def test_relay_client_mail_is_signed_and_verifies(dns, key):
    import dkim
    plain = "From: Alice <alice@dkim.test>\nTo: bob@example.test\nSubject: signed\n\nHello there.\n"
    result = deliver(dns, plain, plugins=("relay", "dkim"), **signing_config(key))
    assert result.codes()[5] == 250
    message = result.queued[0].message
    assert b"\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=dkim.test" in message
    crlf = message.replace(b"\n", b"\r\n")
    record = f"v=DKIM1; k=rsa; p={key[1]}".encode()
    assert dkim.verify(crlf, dnsfunc=lambda name, timeout=5: record)
    verified = deliver(dns, message.decode())
    assert "dkim=pass header.d=dkim.test header.s=sel" in header_of(verified)


def test_subdomain_uses_parent_key_and_no_key_means_no_signature(dns, key):
    plain = "From: a@dkim.test\nSubject: s\n\nbody\n"
    lines = ["HELO x", "MAIL FROM:<a@mail.dkim.test>", "RCPT TO:<bob@example.test>", "DATA",
             *plain.rstrip("\n").split("\n"), ".", "QUIT"]
    result = session(dns, ["relay", "dkim", "rcpt_ok"], lines, **signing_config(key))
    assert b"DKIM-Signature:" in result.queued[0].message and b" d=dkim.test;" in result.queued[0].message
    lines[1] = "MAIL FROM:<a@unsigned.test>"
    result = session(dns, ["relay", "dkim", "rcpt_ok"], lines, **signing_config(key))
    assert result.codes()[5] == 250 and b"DKIM-Signature:" not in result.queued[0].message


def test_symlinked_domain_signs_with_the_target_key(dns, key, tmp_path):
    keys = tmp_path / "dkim" / "dkim.test"
    keys.mkdir(parents=True)
    (keys / "selector").write_text(SELECTOR + "\n")
    (keys / "private").write_bytes(key[0])
    (tmp_path / "dkim" / "client.test").symlink_to("dkim.test")
    lines = ["HELO x", "MAIL FROM:<a@client.test>", "RCPT TO:<bob@example.test>", "DATA",
             "From: a@client.test", "Subject: s", "", "body", ".", "QUIT"]
    result = session(dns, ["relay", "dkim", "rcpt_ok"], lines, relayclients=["192.0.2.1"],
                     env={"QPSMTPD_CONFIG": str(tmp_path)})
    message = result.queued[0].message
    assert b"\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=dkim.test;" in message
    assert any("using the dkim.test key for client.test" in line for line in result.log)
