"""The DNS tests of helo's `rfc` and `strict` policies, against a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components


@pytest.fixture(scope="module")
def dns():
    with dns_server() as line:
        yield line


def helo(dns, name, ip="192.0.2.1", policy="strict", **config):
    return session(dns, [f"helo policy {policy} reject_type perm"], [f"HELO {name}", "QUIT"], ip=ip, **config)


@pytest.mark.parametrize("name,ip", [
    ("client.example.test", "192.0.2.1"),      # forward and reverse match
    ("helo-a-only.test", "192.0.2.1"),         # forward is another host in the /24, reverse is fine
    ("mail.example.test", "2001:db8::25"),     # IPv6
    ("aonly.test", "192.0.2.28"),              # forward in the /24, reverse elsewhere
])
def test_strict_pass(dns, name, ip):
    assert helo(dns, name, ip).codes() == [220, 250, 221]


def test_does_not_exist(dns):
    assert reply(helo(dns, "other.example.test", policy="rfc"), 1) == "550 HELO hostname does not exist"


def test_did_not_resolve(dns):
    # the name exists (MX only) but has no address
    assert reply(helo(dns, "spf-pass.test"), 1) == "550 HELO hostname did not resolve"


def test_no_reverse_dns(dns):
    assert reply(helo(dns, "mail.example.test", ip="192.0.2.27"), 1) == "550 no reverse DNS for 192.0.2.27"


def test_no_matching_dns_strict_only(dns):
    # 192.0.2.28 reverses to liar.example.test; bad-a.test is 10.9.9.9
    assert reply(helo(dns, "bad-a.test", ip="192.0.2.28"), 1) == "550 That HELO hostname fails FCrDNS"
    assert helo(dns, "bad-a.test", ip="192.0.2.28", policy="rfc").codes() == [220, 250, 221]


def test_lenient_does_no_dns(dns):
    result = helo(dns, "nothing.test", ip="192.0.2.27", policy="lenient")
    assert result.codes() == [220, 250, 221]


def test_silent_server_skips_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = session(address, ["helo policy strict dns_timeout 0.5"], ["HELO client.example.test", "QUIT"])
    sock.close()
    assert time.monotonic() - start < 1.2
    assert result.codes() == [220, 250, 221]
    assert any("query failed" in line for line in result.log)
