"""resolvable_fromhost against a real dnsmasq."""

import time

import pytest

from dns_plugin_helpers import reply, session
from dns_testzone import dead_server, dns_server

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

INVALID = ["0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "fc00::/7"]


@pytest.fixture(scope="module")
def dns():
    with dns_server() as line:
        yield line


def mail(dns, sender, plugin="resolvable_fromhost", **config):
    config.setdefault("invalid_resolvable_fromhost", INVALID)
    return session(dns, [plugin], ["HELO x.test", f"MAIL FROM:{sender}", "QUIT"], **config)


@pytest.mark.parametrize("sender", ["<a@example.test>", "<a@aonly.test>", "<a@client.example.test>",
                                    "<>", "<a@[192.0.2.1]>"])
def test_accepted(dns, sender):
    assert mail(dns, sender).codes() == [220, 250, 250, 221]


@pytest.mark.parametrize("sender", ["<a@nothing.test>", "<a@badmx.test>", "<a@mxnx.test>", "<a@bad-a.test>"])
def test_refused(dns, sender):
    assert reply(mail(dns, sender), 2) == "450 FQDN required in the envelope sender (#4.1.8)"


def test_perm_reject_type(dns):
    result = mail(dns, "<a@nothing.test>", plugin="resolvable_fromhost reject_type perm")
    assert reply(result, 2) == "550 FQDN required in the envelope sender (#5.1.8)"


def test_null_mx_is_permanent(dns):
    assert reply(mail(dns, "<a@nullmx.test>"), 2) == "550 Sender address has null MX (#5.7.27)"


def test_reject_0(dns):
    assert mail(dns, "<a@nothing.test>", plugin="resolvable_fromhost reject 0").codes() == [220, 250, 250, 221]


def test_silent_server_gives_4xx_in_time():
    address, sock = dead_server()
    start = time.monotonic()
    result = mail(address, "<a@example.test>", plugin="resolvable_fromhost reject_type perm", dns_timeout=["0.5"])
    sock.close()
    assert reply(result, 2) == "450 Temporary address resolution failure (#4.4.3)"
    assert time.monotonic() - start < 1.2
