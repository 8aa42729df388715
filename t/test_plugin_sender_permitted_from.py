"""sender_permitted_from (pyspf through qpsmtpd's resolver) against a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

MESSAGE = ["DATA", "Subject: spf", "", "body", "."]


@pytest.fixture(scope="module")
def dns():
    with dns_server() as line:
        yield line


def mail(dns, domain, level, **config):
    plugin = f"sender_permitted_from reject {level}" if level is not None else "sender_permitted_from"
    return session(dns, [plugin, "rcpt_ok"],
                   ["HELO client.example.test", f"MAIL FROM:<a@{domain}>", "RCPT TO:<b@example.test>",
                    *MESSAGE, "QUIT"], **config)


@pytest.mark.parametrize("domain,level,code", [
    ("spf-pass.test", 6, 250),
    ("spf-fail.test", 1, 250), ("spf-fail.test", 2, 450), ("spf-fail.test", 3, 550),
    ("spf-soft.test", 2, 250), ("spf-soft.test", 3, 450), ("spf-soft.test", 4, 550),
    ("spf-neutral.test", 4, 250), ("spf-neutral.test", 5, 550),
    ("spf-perm.test", 3, 250), ("spf-perm.test", 4, 450), ("spf-perm.test", 6, 550),
    ("example.test", 5, 250), ("example.test", 6, 550),
])
def test_reject_levels(dns, domain, level, code):
    assert mail(dns, domain, level).codes()[2] == code


def test_replies(dns):
    assert reply(mail(dns, "spf-fail.test", 3), 2) == "550 SPF - forgery: SPF fail - not authorized"
    assert reply(mail(dns, "spf-perm.test", 6), 2) == \
        "550 SPF - permerror: SPF Permanent Error: Too many DNS lookups"


def test_received_spf_and_authentication_results(dns):
    result = mail(dns, "spf-pass.test", 3)
    header = result.queued[0].message.split(b"\n\n")[0].decode()
    assert "spf=pass smtp.mailfrom=spf-pass.test" in header
    assert "Received-SPF: Pass (mx.example.test: domain of spf-pass.test designates 192.0.2.1 as " \
           "permitted sender) client-ip=192.0.2.1;" in header
    softfail = mail(dns, "spf-soft.test", 1).queued[0].message.decode()
    assert "Received-SPF: SoftFail" in softfail and "spf=softfail smtp.mailfrom=spf-soft.test" in softfail


def test_spfbehavior_config_and_spf_deny(dns):
    assert mail(dns, "spf-fail.test", None, spfbehavior=["3"]).codes()[2] == 550
    result = session(dns, ["sender_permitted_from spf_deny 2"], ["HELO x.test", "MAIL FROM:<a@spf-soft.test>", "QUIT"])
    assert result.codes()[2] == 550


def test_null_sender_and_relay_skipped(dns):
    result = session(dns, ["sender_permitted_from reject 6"], ["HELO x.test", "MAIL FROM:<>", "QUIT"])
    assert result.codes() == [220, 250, 250, 221]
    result = session(dns, ["relay", "sender_permitted_from reject 6"],
                     ["HELO x.test", "MAIL FROM:<a@spf-fail.test>", "QUIT"], relayclients=["192.0.2.1"])
    assert result.codes() == [220, 250, 250, 221]


def test_silent_server_temperror_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = session(address, ["sender_permitted_from reject 2"], ["HELO x.test", "MAIL FROM:<a@spf-pass.test>", "QUIT"],
                     dns_timeout=["0.5"])
    sock.close()
    assert result.codes()[2] == 450 and "temperror" in reply(result, 2)
    assert time.monotonic() - start < 1.2
    relaxed = session(address, ["sender_permitted_from reject 1"], ["HELO x.test", "MAIL FROM:<a@spf-pass.test>", "QUIT"],
                      dns_timeout=["0.3"])
    assert relaxed.codes()[2] == 250
