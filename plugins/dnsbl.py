"""dnsbl - reject clients whose IP address is listed in DNS blocklists.

Looks the client's address up in every zone of `config/dnsbl_zones` at
once (one round trip, not one per zone) when the client connects.  IPv4
addresses are reversed by octet (`1.2.0.192.zone`), IPv6 addresses by
nibble.

## Config files

`dnsbl_zones` — one zone per line.  A zone alone is asked for TXT records
and the TXT text is the reason given to the client.  `zone:message` asks
for A records instead and answers `message`, with `%IP%` replaced by the
client's address (`zone:` alone gives `Blocked by zone`):

    bl.example.org
    zen.example.net:Listed, see https://example.net/lookup?ip=%IP%

Only answers in 127.0.0.0/8 count as a listing; 127.255.255.x answers
(the "query refused" codes of big lists) are logged and ignored.

`dnsbl_allow` — addresses that are never checked: a full address, or a
prefix ending with a dot (`172.16.33.`).

`dnsbl_rejectmsg` — lines put before the reason in every rejection, to
tell the sender what to do.

## The RBLSMTPD environment variable

As rblsmtpd defines it: unset — check the lists; set but empty — skip
the checks (a local or trusted client); non-empty — reject with that text
(`%IP%` replaced): temporarily (4xx), or permanently (5xx) when it starts
with `-` (the `-` is not shown).

## Arguments

* `reject 0|1|naughty` (default 1) — `0` only logs and lowers karma;
  `naughty` leaves the rejection to the naughty plugin.
* `reject_type perm|temp|disconnect|temp_disconnect` (default `perm`).
  A single word argument (`dnsbl disconnect`) is the old way to set it.
* `timeout N` — seconds the lookups of one connection may take (default
  `config/dns_budget`, see docs/dns.md).
* `loglevel N`.

## Notes

A listing lowers karma by one and sets the connection note `dnsbl`
(`zone: reason`).  Lookup failures (timeouts, SERVFAIL) are logged and the
client is let through.  Mail to postmaster, abuse, mailer-daemon and root
clears a deferred (naughty) rejection so listed clients can still
reach a human.

## Replies

    550 Listed in bl.test, see http://bl.test/?192.0.2.27
    550 Listed, see https://example.net/lookup?ip=192.0.2.27
"""

from qpsmtpd import dns
from qpsmtpd.constants import (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED,
                               LOGERROR, LOGWARN, LOGINFO, LOGDEBUG)
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    reject_option(default=1), reject_type_option(default="perm"),
    Option("timeout", kind="float", minimum=0, help="seconds for the lookups of one connection"),
    positional=(reject_type_option(default="perm"),),  # `dnsbl disconnect`: the older form
)

SPECIAL_USERS = ("postmaster", "abuse", "mailer-daemon", "root")


def hook_connect(self, transaction):
    rblsmtpd = self.rblsmtpd_result()
    if rblsmtpd is not None:
        return rblsmtpd
    if self.is_immune() or self.ip_allowed():
        return DECLINED
    zones = self.get_dnsbl_zones()
    if not zones:
        return DECLINED
    listing = self.find_listing(zones)
    if listing is None:
        self.log(LOGINFO, "pass")
        return DECLINED
    zone, reason = listing
    self.adjust_karma(-1)
    self.connection.notes["dnsbl"] = f"{zone}: {reason}"
    return self.get_reject(self.with_rejectmsg(reason), zone)


def hook_rcpt(self, transaction, recipient, params=None):
    user = (recipient.user or "").lower() if recipient else ""
    if user in SPECIAL_USERS and self.connection.notes.get("naughty"):
        self.log(LOGWARN, f"skip, don't blacklist special account: {user}")
        self.clear_naughty()
    return DECLINED


def rblsmtpd_result(self):
    """None to go on checking; DECLINED to skip; a rejection for non-empty RBLSMTPD."""
    import os
    value = os.environ.get("RBLSMTPD")
    if value is None:
        return None
    ip = self.connection.remote_ip
    if value == "":
        self.log(LOGINFO, f"RBLSMTPD set, but empty for {ip}")
        return DECLINED
    self.log(LOGINFO, f"RBLSMTPD set for {ip}")
    permanent = value.startswith("-")
    text = value[1:] if permanent else value
    text = self.with_rejectmsg(text.replace("%IP%", ip).strip() or "Blocked by RBLSMTPD")
    result = self.get_reject(text, "RBLSMTPD")
    if isinstance(result, tuple):
        code = DENY if permanent else DENYSOFT
        if result[0] in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            code = DENY_DISCONNECT if permanent else DENYSOFT_DISCONNECT
        return code, result[1]
    return result


def with_rejectmsg(self, reason):
    return "\n".join([*self.qp.config("dnsbl_rejectmsg"), reason])


def ip_allowed(self):
    ip = self.connection.remote_ip
    for entry in self.qp.config("dnsbl_allow"):
        prefix = entry.strip().rstrip(".") + "."
        if (ip + ".").startswith(prefix):
            self.log(LOGINFO, f"skip, {ip} in dnsbl_allow")
            return True
    return False


def get_dnsbl_zones(self):
    """{zone: message or None} in config order."""
    zones = {}
    for line in self.qp.config("dnsbl_zones"):
        zone, sep, message = line.partition(":")
        zone = zone.strip().strip(".").lower()
        if zone:
            zones[zone] = message.strip() if sep else None
    if not zones:
        self.log(LOGDEBUG, "skip, no zones")
    return zones


def find_listing(self, zones):
    """(zone, reason) of the first zone (config order) listing the client, or None."""
    reversed_ip = dns.reverse_ip(self.connection.remote_ip)
    if reversed_ip is None:
        self.log(LOGINFO, f"skip, not an IP address: {self.connection.remote_ip}")
        return None
    queries = [(f"{reversed_ip}.{zone}", "TXT" if message is None else "A")
               for zone, message in zones.items()]
    results = dns.for_hook(self).many(queries)
    for (zone, message), result in zip(zones.items(), results):
        reason = self.listing_reason(zone, message, result)
        if reason:
            return zone, reason
    return None


def listing_reason(self, zone, message, result):
    if result.temporary:
        self.log(LOGERROR, f"{zone} query failed: {result.error}")
        return None
    if not result.found:
        return None
    if message is None:
        self.log(LOGDEBUG, f"found TXT in {zone}: {result.answers[0]}")
        return " ".join(result.answers[0].split()) or f"Blocked by {zone}"
    codes = [answer for answer in result.answers if answer.startswith("127.")]
    if not codes or all(code.startswith("127.255.255.") for code in codes):
        self.log(LOGERROR, f"{zone} returned {', '.join(result.answers)}: not a listing")
        return None
    self.log(LOGDEBUG, f"found A for {result.name} with IP {codes[0]}")
    return message.replace("%IP%", self.connection.remote_ip) if message else f"Blocked by {zone}"
