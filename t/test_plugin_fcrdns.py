"""fcrdns against a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components


@pytest.fixture(scope="module")
def dns():
    with dns_server() as line:
        yield line


def connect(dns, ip, plugin="fcrdns", **config):
    return session(dns, [plugin], ["HELO x.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>",
                                   "DATA", "Subject: t", "", "body", ".", "QUIT"], ip=ip, **config)


def iprev(result):
    assert result.queued, result.lines()
    header = result.queued[0].message.split(b"\n\n")[0].decode()
    return header


@pytest.mark.parametrize("ip,expected", [
    ("192.0.2.1", "iprev=pass"),            # PTR and A agree
    ("2001:db8::25", "iprev=pass"),         # IPv6 reverse name
    ("198.51.100.7", "iprev=pass"),         # forward address in the same /24
    ("192.0.2.26", "iprev=fail"),           # PTR name without address
    ("192.0.2.28", "iprev=fail"),           # PTR name pointing elsewhere
    ("192.0.2.27", "iprev=permerror"),      # no PTR
])
def test_iprev_results(dns, ip, expected):
    result = session(dns, ["fcrdns", "rcpt_ok"], ["HELO x.test", "MAIL FROM:<a@example.test>",
                     "RCPT TO:<b@example.test>", "DATA", "Subject: t", "", "body", ".", "QUIT"], ip=ip)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert f"; {expected}" in iprev(result)


def test_reject_1(dns):
    result = session(dns, ["fcrdns reject 1"], ["HELO x.test", "QUIT"], ip="192.0.2.26")
    assert result.replies() == [(450, ["Your IP address 192.0.2.26 has no forward-confirmed reverse DNS"])]
    assert session(dns, ["fcrdns reject 1"], ["QUIT"], ip="192.0.2.1").codes() == [220, 221]


def test_localhost(dns):
    assert session(dns, ["fcrdns reject 1"], ["QUIT"], ip="127.0.0.1").codes() == [220, 221]
    from qpsmtpd.testing import run_session
    result = run_session(["QUIT"], config={"plugins": ["fcrdns reject 1"], "dns_servers": [dns]},
                         connection={"remote_ip": "192.0.2.1", "remote_host": "localhost"})
    assert result.codes() == [450]


def test_silent_server_is_temperror_not_rejection():
    address, sock = dead_server()
    start = time.monotonic()
    result = session(address, ["fcrdns reject 1", "rcpt_ok"], ["HELO x.test", "MAIL FROM:<a@example.test>",
                     "RCPT TO:<b@example.test>", "DATA", "Subject: t", "", "body", ".", "QUIT"],
                     ip="192.0.2.26", dns_timeout=["0.5"])
    sock.close()
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert "iprev=temperror" in iprev(result)
    assert time.monotonic() - start < 1.2
