"""dns_whitelist_soft (and whitelist honouring it) against a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

ZONE = [
    'txt-record=27.2.0.192.wl.test,"trusted partner"',
    "host-record=28.2.0.192.wla.test,127.0.0.2",
    'txt-record=7.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.wl.test,"v6 partner"',
]
DIALOGUE = ["HELO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "QUIT"]


@pytest.fixture(scope="module")
def dns():
    with dns_server(ZONE) as line:
        yield line


def logged(result, text):
    return any(text in line for line in result.log)


def connect(dns, ip, plugins=("dns_whitelist_soft", "dnsbl"), **config):
    config = {"whitelist_zones": ["wl.test", "wla.test  anything after the zone"], "dnsbl_zones": ["bl.test"],
              **config}
    return session(dns, [*plugins, "rcpt_ok"], DIALOGUE, ip=ip, **config)


def test_whitelisted_host_skips_later_checks(dns):
    result = connect(dns, "192.0.2.27")
    assert result.codes() == [220, 250, 250, 250, 221]
    assert logged(result, "host 192.0.2.27 is whitelisted: trusted partner")
    assert logged(result, "skip, whitelisted host")


def test_unlisted_host_is_checked(dns):
    result = session(dns, ["dns_whitelist_soft", "dnsbl", "rcpt_ok"], DIALOGUE, ip="192.0.2.27",
                     whitelist_zones=["other.test"], dnsbl_zones=["bl.test"])
    assert reply(result, 0) == "550 Listed in bl.test, see http://bl.test/?192.0.2.27"


def test_a_record_whitelists_too(dns):
    result = connect(dns, "192.0.2.28", dnsbl_zones=["bl2.test:listed"])
    assert result.codes()[0] == 220
    assert logged(result, "is whitelisted: listed in wla.test")
    assert reply(connect(dns, "192.0.2.28", plugins=("dnsbl",), dnsbl_zones=["bl2.test:listed"]), 0) == "550 listed"


def test_ipv6(dns):
    result = connect(dns, "2001:db8::27")
    assert result.codes()[0] == 220 and logged(result, "host 2001:db8::27 is whitelisted: v6 partner")


def test_whitelist_answers_ok_for_dns_whitelisted_hosts(dns):
    result = connect(dns, "192.0.2.27", plugins=("dns_whitelist_soft", "whitelist", "dnsbl"))
    assert result.codes()[0] == 220
    assert any("192.0.2.27 is whitelisted in DNS" in line for line in result.log)
    plain = connect(dns, "192.0.2.1", plugins=("dns_whitelist_soft", "whitelist", "dnsbl"))
    assert not any("whitelisted in DNS" in line for line in plain.log)


def test_no_zones_no_lookups(dns):
    result = session(dns, ["dns_whitelist_soft", "rcpt_ok"], DIALOGUE, ip="192.0.2.27")
    assert result.codes() == [220, 250, 250, 250, 221]
    assert not logged(result, "is whitelisted")


def test_silent_server_is_not_whitelisted_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = session(address, ["dns_whitelist_soft", "rcpt_ok"], DIALOGUE, ip="192.0.2.27",
                     whitelist_zones=["wl.test"], dns_timeout=["0.5"])
    sock.close()
    assert result.codes() == [220, 250, 250, 250, 221]
    assert not logged(result, "is whitelisted")
    assert time.monotonic() - start < 1.2
