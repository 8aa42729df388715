"""dmarc: policies from a real dnsmasq, alignment with SPF (sender_permitted_from) and DKIM."""

import base64
import subprocess
import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

SPF = '"v=spf1 ip4:192.0.2.0/24 -all"'
ZONE = [
    '_dmarc.reject.test,"v=DMARC1; p=reject; rua=mailto:dmarc@reject.test"',
    '_dmarc.quarantine.test,"v=DMARC1; p=quarantine"',
    '_dmarc.none.test,"v=DMARC1; p=none"',
    '_dmarc.parent.test,"v=DMARC1; p=none; sp=reject"',
    '_dmarc.pct0.test,"v=DMARC1; p=reject; pct=0"',
    '_dmarc.strict.test,"v=DMARC1; p=reject; aspf=s"',
    '_dmarc.shop.co.test,"v=DMARC1; p=reject"',
    '_dmarc.signed.test,"v=DMARC1; p=reject; adkim=s"',
    '_dmarc.twice.test,"v=DMARC1; p=reject"', '_dmarc.twice.test,"v=DMARC1; p=none"',
    '_dmarc.notdmarc.test,"v=spf1 -all"',
    f"reject.test,{SPF}", f"mail.reject.test,{SPF}", f"mail.strict.test,{SPF}", f"strict.test,{SPF}",
    f"sub.parent.test,{SPF}", f"quarantine.test,{SPF}",
]


def make_key():
    private = subprocess.run(["openssl", "genrsa", "1024"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=private,
                         check=True, capture_output=True).stdout
    return private, base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def key():
    return make_key()


@pytest.fixture(scope="module")
def dns(key):
    lines = [f"txt-record={line}" for line in ZONE]
    lines.append(f'txt-record=sel._domainkey.signed.test,"v=DKIM1; k=rsa; p={key[1]}"')
    with dns_server(lines) as line:
        yield line


PLUGINS = ["sender_permitted_from reject 1", "dkim reject 0"]


def mail(dns, mail_from, header_from, plugin="dmarc", body=None, **config):
    body = body or [f"From: <{header_from}>", "Subject: dmarc", "", "body"]
    lines = ["HELO client.example.test", f"MAIL FROM:<{mail_from}>", "RCPT TO:<b@example.test>", "DATA",
             *body, ".", "QUIT"]
    return session(dns, [*PLUGINS, plugin, "rcpt_ok"], lines, **config)


def header_of(result):
    return " ".join(result.queued[0].message.split(b"\n\n")[0].decode().split())


@pytest.mark.parametrize("mail_from,header_from,code,ar", [
    ("a@reject.test", "a@reject.test", 250, "dmarc=pass (p=reject) header.from=reject.test"),
    ("a@mail.reject.test", "a@reject.test", 250, "dmarc=pass (p=reject) header.from=reject.test"),
    ("a@spf-pass.test", "a@reject.test", 552, None),
    ("a@spf-pass.test", "a@quarantine.test", 552, None),
    ("a@quarantine.test", "a@quarantine.test", 250, "dmarc=pass (p=quarantine)"),
    ("a@spf-pass.test", "a@none.test", 250, "dmarc=fail (p=none) header.from=none.test"),
    ("a@spf-pass.test", "a@sub.parent.test", 552, None),
    ("a@sub.parent.test", "a@sub.parent.test", 250, "dmarc=pass (p=reject) header.from=sub.parent.test"),
    ("a@spf-pass.test", "a@parent.test", 250, "dmarc=fail (p=none) header.from=parent.test"),
    ("a@spf-pass.test", "a@pct0.test", 250, "dmarc=fail (p=reject) header.from=pct0.test"),
    ("a@mail.strict.test", "a@strict.test", 552, None),
    ("a@strict.test", "a@strict.test", 250, "dmarc=pass (p=reject)"),
    ("a@spf-pass.test", "a@nopolicy.test", 250, "dmarc=none header.from=nopolicy.test"),
    ("a@spf-pass.test", "a@twice.test", 250, "dmarc=none header.from=twice.test"),
    ("a@spf-pass.test", "a@notdmarc.test", 250, "dmarc=none header.from=notdmarc.test"),
])
@pytest.mark.components
def test_policies_and_alignment(dns, mail_from, header_from, code, ar):
    result = mail(dns, mail_from, header_from)
    assert result.codes()[5] == code
    if code == 552:
        assert reply(result, 5) == "552 failed DMARC policy"
    else:
        assert ar in header_of(result)


@pytest.mark.components
def test_organizational_domain_from_configured_suffix_list(dns):
    result = mail(dns, "a@spf-pass.test", "a@www.shop.co.test", public_suffix_list=["// test list", "test", "co.test"])
    assert reply(result, 5) == "552 failed DMARC policy"
    system_list = mail(dns, "a@spf-pass.test", "a@www.shop.co.test")
    assert system_list.codes()[5] == 250 and "dmarc=none header.from=www.shop.co.test" in header_of(system_list)


@pytest.mark.components
def test_path_to_suffix_list(dns, tmp_path):
    listing = tmp_path / "psl.dat"
    listing.write_text("test\nco.test\n")
    result = mail(dns, "a@spf-pass.test", "a@www.shop.co.test", public_suffix_list=[str(listing)])
    assert reply(result, 5) == "552 failed DMARC policy"


def signed_body(private, domain="signed.test"):
    import dkim
    message = (f"From: <a@{domain}>\r\nSubject: dmarc\r\n\r\nbody\r\n").encode()
    signature = dkim.sign(message, b"sel", domain.encode(), private, include_headers=[b"from", b"subject"])
    return (signature + message).decode().replace("\r\n", "\n").rstrip("\n").split("\n")


@pytest.mark.components
def test_dkim_alignment(dns, key):
    body = signed_body(key[0])
    result = mail(dns, "a@spf-pass.test", "a@signed.test", body=body)
    assert result.codes()[5] == 250
    assert "dkim=pass header.d=signed.test header.s=sel; dmarc=pass (p=reject) header.from=signed.test" \
        in header_of(result)
    broken = mail(dns, "a@spf-pass.test", "a@signed.test", body=[line.replace("body", "changed") for line in body])
    assert reply(broken, 5) == "552 failed DMARC policy"


@pytest.mark.components
def test_reject_0_and_naughty(dns):
    tolerated = mail(dns, "a@spf-pass.test", "a@reject.test", plugin="dmarc reject 0")
    assert tolerated.codes()[5] == 250 and "dmarc=fail (p=reject)" in header_of(tolerated)
    assert mail(dns, "a@spf-pass.test", "a@reject.test", plugin="dmarc reject_type temp").codes()[5] == 452


@pytest.mark.components
def test_missing_or_bad_from(dns):
    result = mail(dns, "a@reject.test", "", body=["Subject: no from", "", "body"])
    assert reply(result, 5) == "552 empty from address, null sender?"
    result = mail(dns, "a@reject.test", "", body=["From: nobody", "", "body"])
    assert reply(result, 5) == "552 unparseable from header"
    result = mail(dns, "a@reject.test", "", body=["From: a@reject.test, b@none.test", "", "body"])
    assert reply(result, 5) == "552 multiple From domains"


@pytest.mark.components
def test_relay_client_skipped(dns):
    result = session(dns, ["relay", "dmarc", "rcpt_ok"],
                     ["HELO x", "MAIL FROM:<a@spf-pass.test>", "RCPT TO:<b@example.test>", "DATA",
                      "From: a@reject.test", "", "body", ".", "QUIT"], relayclients=["192.0.2.1"])
    assert result.codes()[5] == 250


@pytest.mark.components
def test_dmarc_result_note_feeds_spf_no_dmarc_policy(dns):
    lines = ["HELO client.example.test", "MAIL FROM:<a@spf-fail.test>", "RCPT TO:<b@example.test>", "DATA",
             "From: a@spf-fail.test", "", "body", ".", "QUIT"]
    result = session(dns, ["sender_permitted_from reject 1 no_dmarc_policy 1", "dmarc", "rcpt_ok"], lines)
    assert reply(result, 5) == "552 SPF - fail: SPF fail - not authorized"
    lines[1] = "MAIL FROM:<a@mail.strict.test>"
    lines[4] = "From: a@none.test"
    result = session(dns, ["sender_permitted_from reject 1 no_dmarc_policy 4", "dmarc", "rcpt_ok"], lines)
    assert result.codes()[5] == 250


@pytest.mark.components
def test_silent_server_gives_timely_452():
    address, sock = dead_server()
    start = time.monotonic()
    lines = ["HELO x", "MAIL FROM:<a@reject.test>", "RCPT TO:<b@example.test>", "DATA",
             "From: a@reject.test", "", "body", ".", "QUIT"]
    result = session(address, ["dmarc", "rcpt_ok"], lines, dns_timeout=["0.5"])
    elapsed = time.monotonic() - start
    relaxed = session(address, ["dmarc reject 0", "rcpt_ok"], lines, dns_timeout=["0.3"])
    sock.close()
    assert reply(result, 5) == "452 DMARC policy lookup failed, try again later"
    assert elapsed < 1.2
    assert relaxed.codes()[5] == 250 and b"dmarc=temperror" in relaxed.queued[0].message


def test_public_suffix_rules():
    from qpsmtpd.publicsuffix import SuffixList
    rules = SuffixList(["// comment", "com", "co.uk", "*.ck", "!www.ck", "blogspot.com", "рф"])
    assert rules.organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert rules.organizational_domain("mail.example.com") == "example.com"
    assert rules.organizational_domain("a.b.c.ck") == "b.c.ck"
    assert rules.organizational_domain("x.www.ck") == "www.ck"
    assert rules.organizational_domain("a.b.blogspot.com") == "b.blogspot.com"
    assert rules.organizational_domain("mail.example.xn--p1ai") == "example.xn--p1ai"
    assert rules.organizational_domain("co.uk") == "co.uk" and rules.registrable_domain("co.uk") is None
    assert rules.organizational_domain("a.b.unlisted") == "b.unlisted"
    assert rules.is_tld("COM") and rules.is_tld("xn--p1ai") and not rules.is_tld("test")
