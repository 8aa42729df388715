"""rhsbl against a real dnsmasq."""

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


def mail(dns, sender, helo="ok.test", plugin="rhsbl", **config):
    config.setdefault("rhsbl_zones", ["rhs.test"])
    return session(dns, [plugin], [f"HELO {helo}", f"MAIL FROM:{sender}", "QUIT"], **config)


def test_sender_domain_listed(dns):
    assert reply(mail(dns, "<a@spammer.test>"), 2) == \
        "550 Mail from spammer.test rejected because it is listed in rhs.test"


def test_helo_listed(dns):
    assert reply(mail(dns, "<a@example.test>", helo="bad-helo.test"), 2) == \
        "550 Mail from HELO bad-helo.test rejected because it is a known spam HELO"


def test_null_sender_checks_helo_only(dns):
    assert mail(dns, "<>").codes() == [220, 250, 250, 221]
    assert mail(dns, "<>", helo="bad-helo.test").codes()[2] == 550


def test_a_zone_with_message(dns):
    result = mail(dns, "<a@spammer.test>", rhsbl_zones=["rhs.test is listed by our friends"])
    assert reply(result, 2) == "550 Mail from spammer.test rejected because it is listed by our friends"


def test_clean_passes(dns):
    assert mail(dns, "<a@example.test>").codes() == [220, 250, 250, 221]
    assert mail(dns, "<a@[192.0.2.9]>", helo="[192.0.2.1]").codes() == [220, 250, 250, 221]


def test_reject_arguments(dns):
    assert mail(dns, "<a@spammer.test>", plugin="rhsbl reject 0").codes() == [220, 250, 250, 221]
    assert mail(dns, "<a@spammer.test>", plugin="rhsbl reject_type temp").codes()[2] == 450
    assert mail(dns, "<a@spammer.test>", plugin="rhsbl disconnect").codes() == [220, 250, 550]


def test_silent_server_passes_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = mail(address, "<a@spammer.test>", dns_timeout=["0.5"])
    sock.close()
    assert result.codes() == [220, 250, 250, 221]
    assert time.monotonic() - start < 1.2
