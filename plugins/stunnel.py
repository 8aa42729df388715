"""# stunnel — the real client's address from a PROXY header (stunnel, haproxy)

The Perl plugin's name and arguments, on the engine's PROXY protocol support
(`qpsmtpd.proxy`): with `proxy on`, a connection from a trusted balancer
must start with a PROXY protocol header (v1 as stunnel's `protocol = proxy`
sends it, or v2 as haproxy's `send-proxy-v2`), read **before** the greeting;
the client's address, port and, for v2, the TLS facts of the balancer's
TLS session replace the balancer's in the connection before any hook runs.

    # config/plugins
    stunnel proxy on

Trusted balancers are the lines of `config/proxy_trusted` (IP addresses or
networks); when that file is empty or missing, 127.0.0.1 and ::1 (the Perl
plugin accepted PROXY from 127.0.0.1 only).  The engine does the same
without this plugin when `config/proxy_trusted` has lines; the plugin only
switches it on for the loopback default.

## Arguments

* `proxy on|off` — `on` switches the PROXY protocol on; `off` (the default)
  leaves the plugin doing nothing, as in Perl.

## Stunnel set-up

    [smtps]
    accept = 465
    connect = 127.0.0.1:25
    protocol = proxy

## What the log shows

    (connect) proxy: v1 from 127.0.0.1: client 192.0.2.7:50060 to 198.51.100.1:465
    (connect) proxy: reject 127.0.0.1: no PROXY header: connection starts with 'EHLO x'; connection closed

and `Connection from [192.0.2.7] [192.0.2.7]` names the real client.  A
`PROXY` line from a client that is not a trusted balancer, or one sent
after the greeting, is answered `554 PROXY not accepted from you` and the
connection ends.

## Differences from Perl

Perl's plugin read `PROXY` as an SMTP command after the greeting, so the
`connect` hooks (dnsbl, hosts_allow, karma ...) had already judged the
balancer's address; here the header is read first.  The Perl plugin looked up
the client's PTR name for `remote_host`; here `remote_host` is `[ip]` as under
`tcpserver -H` (fcrdns and others look it up themselves).
"""

from __future__ import annotations

from typing import Any

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import LOGINFO
from qpsmtpd.plugin import Plugin


class Stunnel(Plugin):
    arguments = Arguments(
        Option("proxy", default="off", choices=("on", "off", "ON", "OFF", "On", "Off"),
               help="on: read a PROXY protocol header before the greeting"),
    )

    def init(self, qp: Any, *args: str) -> None:
        if str(self.opts.get("proxy") or "off").lower() != "on":
            return
        qp.proxy_protocol_plugin = True
        self.log(LOGINFO, "proxy protocol enabled")
