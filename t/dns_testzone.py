"""The private DNS data the DNS plugin tests run against (served by dnsmasq).

Addresses (documentation ranges only):

| client | reverse / forward | dnsbl |
| --- | --- | --- |
| 192.0.2.1   | client.example.test, confirmed | - |
| 192.0.2.25  | mail.example.test, confirmed (also AAAA 2001:db8::25) | - |
| 192.0.2.26  | mx2-reverse.example.test, no forward record | - |
| 192.0.2.27  | no PTR | bl.test (TXT + A), bl3.test (A) |
| 192.0.2.28  | liar.example.test -> 203.0.113.99 (other net) | bl2.test (A only) |
| 198.51.100.7 | far.example.test -> 198.51.100.77 (same /24) | - |
| 2001:db8::27 | no PTR | bl.test |
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from components import dnsmasq

SPF_INCLUDES = [f"include:i{n}.spf.test" for n in range(11)]

ZONE = [
    # reverse and forward
    "host-record=client.example.test,192.0.2.1",
    "host-record=mail.example.test,192.0.2.25,2001:db8::25",
    "ptr-record=26.2.0.192.in-addr.arpa,mx2-reverse.example.test",
    "ptr-record=28.2.0.192.in-addr.arpa,liar.example.test",
    "host-record=liar.example.test,203.0.113.99",
    "ptr-record=7.100.51.198.in-addr.arpa,far.example.test",
    "host-record=far.example.test,198.51.100.77",
    "host-record=helo-a-only.test,192.0.2.77",
    # DNS blocklists
    "address=/27.2.0.192.bl.test/127.0.0.2",
    'txt-record=27.2.0.192.bl.test,"Listed in bl.test, see http://bl.test/?192.0.2.27"',
    "address=/7.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test/127.0.0.2",
    'txt-record=7.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test,"v6 listed"',
    "address=/28.2.0.192.bl2.test/127.0.0.4",
    "address=/27.2.0.192.bl3.test/127.0.0.3",
    "address=/27.2.0.192.blerr.test/127.255.255.254",
    # rhsbl
    "address=/spammer.test.rhs.test/127.0.0.2",
    'txt-record=spammer.test.rhs.test,"is listed in rhs.test"',
    "address=/bad-helo.test.rhs.test/127.0.0.2",
    'txt-record=bad-helo.test.rhs.test,"is a known spam HELO"',
    # sender domains
    "mx-host=example.test,mail.example.test,10",
    "host-record=aonly.test,192.0.2.40",
    "mx-host=nullmx.test,.,0",
    "mx-host=badmx.test,mx.badmx.test,10",
    "host-record=mx.badmx.test,10.1.2.3",
    "mx-host=mxnx.test,nowhere.mxnx.test,10",
    "host-record=bad-a.test,10.9.9.9",
    "mx-host=spammer.test,mail.example.test,10",
    # SPF
    'txt-record=spf-pass.test,"v=spf1 ip4:192.0.2.0/24 -all"',
    'txt-record=spf-fail.test,"v=spf1 ip4:198.51.100.0/24 -all"',
    'txt-record=spf-soft.test,"v=spf1 ~all"',
    'txt-record=spf-neutral.test,"v=spf1 ?all"',
    'txt-record=spf-perm.test,"v=spf1 ' + " ".join(SPF_INCLUDES) + ' -all"',
    *[f'txt-record=i{n}.spf.test,"v=spf1 ip4:203.0.113.{n}"' for n in range(11)],
    "mx-host=spf-pass.test,mail.example.test,10",
    "mx-host=spf-fail.test,mail.example.test,10",
    "mx-host=spf-soft.test,mail.example.test,10",
    "mx-host=spf-neutral.test,mail.example.test,10",
    "mx-host=spf-perm.test,mail.example.test,10",
]


@contextlib.contextmanager
def dns_server(extra: Sequence[str] = ()) -> Iterator[str]:
    """dnsmasq with ZONE (+ extra lines); yields the `dns_servers` config line."""
    with dnsmasq([*ZONE, *extra]) as server:
        yield f"127.0.0.1:{server.port}"


def dead_server() -> tuple[str, object]:
    """A bound UDP socket nobody reads: queries to it time out. Keep the socket alive."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return f"127.0.0.1:{sock.getsockname()[1]}", sock
