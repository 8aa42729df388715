"""dns_whitelist_soft - whitelist clients listed in DNS whitelists.

When a client connects, its address is looked up (reversed, as for a
DNSBL: `1.2.0.192.zone`, IPv6 by nibble) in every zone of
`config/whitelist_zones` at once, for TXT and A records.  Any answer marks
the host as whitelisted: the connection note `whitelisthost` is set to the
TXT text (or `listed in ZONE`), so every later plugin that honours
whitelisting (`is_immune`: dnsbl, rhsbl, helo, SPF, dkim, dmarc, uribl,
...) skips its checks for this connection.  Convenient when many servers
share one whitelist.

"Soft": the plugin never answers for the connection itself (it always
returns DECLINED).  List it before the plugins whose checks it should
lift; `whitelist` listed after it answers OK for such hosts at connect,
as it does for the hosts of `whitelisthosts`.

Lookup failures (timeouts, SERVFAIL) are logged and the client is treated
as not whitelisted.

## Config files

`whitelist_zones` — one zone per line (anything after the zone name is
ignored):

    wl.example.org
    list.dnswl.example

## Arguments

* `timeout N` — seconds the lookups may take (default `config/dns_budget`);
* `loglevel N`.
"""

from qpsmtpd import dns
from qpsmtpd.constants import DECLINED, LOGERROR, LOGNOTICE, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_connect(self, transaction):
    ip = self.connection.remote_ip
    zones = [line.split()[0].strip(".").lower() for line in self.qp.config("whitelist_zones") if line.split()]
    zones = [zone for zone in dict.fromkeys(zones) if zone and not zone.startswith("#")]
    if not zones or not ip:
        return DECLINED
    reversed_ip = dns.reverse_ip(ip)
    if reversed_ip is None:
        self.log(LOGINFO, f"skip, not an IP address: {ip}")
        return DECLINED
    queries = [(f"{reversed_ip}.{zone}", rdtype) for zone in zones for rdtype in ("TXT", "A")]
    results = dns.for_hook(self).many(queries)
    for index, zone in enumerate(zones):
        txt, address = results[2 * index], results[2 * index + 1]
        if txt.temporary or address.temporary:
            self.log(LOGERROR, f"{zone} query failed: {txt.error or address.error}")
        if txt.found or address.found:
            reason = " ".join(txt.answers[0].split()) if txt.found else f"listed in {zone}"
            self.connection.notes["whitelisthost"] = reason or f"listed in {zone}"
            self.log(LOGNOTICE, f"pass, host {ip} is whitelisted: {reason}")
            return DECLINED
    self.log(LOGDEBUG, f"{ip} is not in a DNS whitelist")
    return DECLINED


def hook_rcpt(self, transaction, recipient, params=None):
    note = self.connection.notes.get("whitelisthost")
    if note:
        self.log(LOGINFO, f"host {self.connection.remote_ip} is whitelisted: {note}")
    return DECLINED

