"""uribl: URIs of the message body looked up in URI blocklists served by a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

ZONE = [
    "host-record=spam-host.com.surbl.test,127.0.0.2",
    'txt-record=spam-host.com.surbl.test,"spam-host.com is listed, see http://surbl.test/"',
    "host-record=evil.example.co.uk.surbl.test,127.0.0.4",
    "host-record=7.2.0.192.surbl.test,127.0.0.2",
    "host-record=bad.example.org.dbl.test,127.0.1.2",
    "host-record=masked.com.surbl.test,127.0.0.64",
    "host-record=whitelisted.com.surbl.test,127.0.0.2",
    "host-record=shortened.net.surbl.test,127.0.0.2",
]


@pytest.fixture(scope="module")
def dns():
    with dns_server(ZONE) as line:
        yield line


def deliver(dns, body, plugin="uribl", zones=("surbl.test 2,4 deny",), extra=(), **config):
    lines = ["HELO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA",
             "Subject: uribl", "", *body, ".", "QUIT"]
    return session(dns, [plugin, *extra, "rcpt_ok"], lines, uribl_zones=list(zones), **config)


def test_listed_host_is_refused_with_txt_reason(dns):
    result = deliver(dns, ["Visit http://www.spam-host.com/buy now"])
    assert reply(result, 5) == "552 spam-host.com in surbl.test: spam-host.com is listed, see http://surbl.test/"


def test_clean_mail_passes(dns):
    result = deliver(dns, ["Visit http://www.example.com/ and mail.example.net", "no links here"])
    assert result.codes()[5] == 250
    assert deliver(dns, ["Nothing to see."]).codes()[5] == 250


def test_multi_level_domains(dns):
    result = deliver(dns, ["see https://a.b.evil.example.co.uk/x"])
    assert reply(result, 5) == "552 evil.example.co.uk in surbl.test: 127.0.0.4"


def test_ip_addresses_in_uris(dns):
    assert reply(deliver(dns, ["http://192.0.2.7/path"]), 5) == "552 7.2.0.192 in surbl.test: 127.0.0.2"
    assert deliver(dns, ["http://0xc0.0.02.7/"]).codes()[5] == 552
    assert deliver(dns, ["http://3221225991/"]).codes()[5] == 552
    assert deliver(dns, ["http://192.0.2.7/path"], plugin="uribl checkip no").codes()[5] == 250


def test_obfuscations_are_undone(dns):
    assert deliver(dns, ["http://spam-ho=", "st.com/"]).codes()[5] == 552
    assert deliver(dns, ["http://spam%2dhost.com/"]).codes()[5] == 552
    assert deliver(dns, ["http://spam&#45;host.com/"]).codes()[5] == 552
    assert deliver(dns, ["http://spam-host;.com/"]).codes()[5] == 552


def test_mask_and_actions(dns):
    masked = deliver(dns, ["http://masked.com/"])
    assert masked.codes()[5] == 250
    assert deliver(dns, ["http://masked.com/"], zones=("surbl.test 64 deny",)).codes()[5] == 552
    soft = deliver(dns, ["http://bad.example.org/"], zones=("dbl.test 0x2 denysoft",))
    assert reply(soft, 5) == "452 bad.example.org in dbl.test: 127.0.1.2"
    header = deliver(dns, ["http://bad.example.org/"], zones=("dbl.test",))
    assert header.codes()[5] == 250
    assert b"X-URIBL-Match: bad.example.org in dbl.test: 127.0.1.2" in header.queued[0].message
    logged = deliver(dns, ["http://bad.example.org/"], zones=("dbl.test",), plugin="uribl action log")
    assert logged.codes()[5] == 250 and b"X-URIBL-Match" not in logged.queued[0].message


def test_whitelist_domains(dns):
    body = ["http://www.whitelisted.com/"]
    assert deliver(dns, body).codes()[5] == 552
    assert deliver(dns, body, uribl_whitelist_domains=["whitelisted.com"]).codes()[5] == 250


def test_headers_only_with_check_headers(dns):
    lines = ["HELO x", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA",
             "X-Link: http://spam-host.com/", "", "body", ".", "QUIT"]
    config = {"uribl_zones": ["surbl.test 2 deny"]}
    assert session(dns, ["uribl", "rcpt_ok"], lines, **config).codes()[5] == 250
    assert session(dns, ["uribl check-headers 1", "rcpt_ok"], lines, **config).codes()[5] == 552


def test_max_names_bounds_the_lookups(dns):
    body = [f"http://host{n}.clean-site.com/" for n in range(30)] + ["http://spam-host.com/"]
    assert deliver(dns, body).codes()[5] == 552
    limited = deliver(dns, body, plugin="uribl max_names 10")
    assert limited.codes()[5] == 250
    assert any("stopped at 10 names" in line for line in limited.log)


def test_relay_clients_are_not_checked(dns):
    result = deliver(dns, ["http://spam-host.com/"], extra=(), plugin="uribl", relayclients=["192.0.2.1"])
    assert result.codes()[5] == 552
    relayed = session(dns, ["relay", "uribl", "rcpt_ok"],
                      ["HELO x", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA", "",
                       "http://spam-host.com/", ".", "QUIT"],
                      uribl_zones=["surbl.test 2 deny"], relayclients=["192.0.2.1"])
    assert relayed.codes()[5] == 250


def test_silent_server_accepts_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = deliver(address, ["http://spam-host.com/"], dns_timeout=["0.5"])
    sock.close()
    assert result.codes()[5] == 250
    assert time.monotonic() - start < 1.2
