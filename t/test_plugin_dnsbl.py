"""dnsbl against a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

ZONES = ["bl.test", "bl2.test:Go away %IP%", "bl3.test:", "blerr.test:never"]


@pytest.fixture(scope="module")
def dns():
    with dns_server() as line:
        yield line


def connect(dns, ip, plugin="dnsbl", env=None, **config):
    config.setdefault("dnsbl_zones", ZONES)
    return session(dns, [plugin], ["HELO x.test", "QUIT"], ip=ip, env=env, **config)


def test_txt_reason_in_reply(dns):
    result = connect(dns, "192.0.2.27", dnsbl_rejectmsg=["Ask your ISP to fix it."])
    assert result.replies() == [(550, ["Ask your ISP to fix it.",
                                       "Listed in bl.test, see http://bl.test/?192.0.2.27"])]


def test_a_zone_message_with_ip(dns):
    assert reply(connect(dns, "192.0.2.28"), 0) == "550 Go away 192.0.2.28"


def test_a_zone_without_message(dns):
    assert reply(connect(dns, "192.0.2.27", dnsbl_zones=["bl3.test:"]), 0) == "550 Blocked by bl3.test"


def test_error_codes_are_not_listings(dns):
    result = connect(dns, "192.0.2.27", dnsbl_zones=["blerr.test:never"])
    assert result.codes() == [220, 250, 221]
    assert any("not a listing" in line for line in result.log)


def test_unlisted_passes(dns):
    assert connect(dns, "192.0.2.1").codes() == [220, 250, 221]


def test_ipv6_listed(dns):
    assert reply(connect(dns, "2001:db8::27"), 0) == "550 v6 listed"


def test_dnsbl_allow(dns):
    assert connect(dns, "192.0.2.27", dnsbl_allow=["192.0.2."]).codes() == [220, 250, 221]
    assert connect(dns, "192.0.2.27", dnsbl_allow=["192.0.2.2"]).codes() == [550]


def test_reject_0_only_logs(dns):
    result = connect(dns, "192.0.2.27", plugin="dnsbl reject 0")
    assert result.codes() == [220, 250, 221]
    assert any("fail, tolerated, bl.test" in line for line in result.log)
    assert any("karma -1 (-1)" in line for line in result.log)


def test_reject_naughty_defers_and_spares_postmaster(dns):
    result = session(dns, ["dnsbl reject naughty", "naughty", "rcpt_ok"],
                     ["HELO x.test", "MAIL FROM:<a@example.test>", "RCPT TO:<user@example.test>", "QUIT"],
                     ip="192.0.2.27", dnsbl_zones=ZONES)
    assert result.codes()[:3] == [220, 250, 250]
    assert "(dnsbl) Listed in bl.test" in reply(result, 3) and result.codes()[3] == 550
    result = session(dns, ["dnsbl reject naughty", "naughty", "rcpt_ok"],
                     ["HELO x.test", "MAIL FROM:<a@example.test>", "RCPT TO:<postmaster@example.test>", "QUIT"],
                     ip="192.0.2.27", dnsbl_zones=ZONES)
    assert result.codes() == [220, 250, 250, 250, 221]


def test_reject_type_temp_and_legacy_disconnect(dns):
    assert connect(dns, "192.0.2.27", plugin="dnsbl reject_type temp").codes() == [450]
    assert connect(dns, "192.0.2.27", plugin="dnsbl disconnect").codes() == [550]


def test_rblsmtpd(dns):
    assert connect(dns, "192.0.2.27", env={"RBLSMTPD": ""}).codes() == [220, 250, 221]
    assert reply(connect(dns, "192.0.2.1", env={"RBLSMTPD": "Go away %IP%"}), 0) == "450 Go away 192.0.2.1"
    assert reply(connect(dns, "192.0.2.1", env={"RBLSMTPD": "-Blocked here"}), 0) == "550 Blocked here"


def test_relay_client_immune(dns):
    result = session(dns, ["relay", "dnsbl"], ["HELO x.test", "QUIT"], ip="192.0.2.27",
                     dnsbl_zones=ZONES, relayclients=["192.0.2.27"])
    assert result.codes() == [220, 250, 221]


def test_six_zones_one_round_trip(dns):
    zones = [f"z{n}.test" for n in range(5)] + ["bl.test"]
    start = time.monotonic()
    result = connect(dns, "192.0.2.27", dnsbl_zones=zones)
    assert result.codes() == [550]
    assert time.monotonic() - start < 0.5


def test_silent_server_passes_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = connect(address, "192.0.2.27", dns_timeout=["1"])
    sock.close()
    assert result.codes() == [220, 250, 221]
    assert 0.9 < time.monotonic() - start < 1.6
    assert any("query failed" in line for line in result.log)
