"""resolvable_fromhost - the sender's domain must be able to receive mail.

At MAIL FROM, the domain of the envelope sender must have an MX record
whose host resolves to a usable address, or (without MX) an A or AAAA
record with a usable address.  A usable address is one outside the
networks of `config/invalid_resolvable_fromhost`.  The MX, A and AAAA
queries are sent together, then the addresses of all MX hosts together.

* A null MX (RFC 7505: one MX record with the host `.`) means the domain
  sends no mail: rejected with `#5.7.27`.
* An IP literal sender (`user@[192.0.2.1]`) is let through (karma -1).
* The null sender `<>` is let through.
* A DNS failure (timeout, SERVFAIL) gives a temporary error (4xx) —
  never a permanent one, whatever `reject_type` says.

The result is kept in the transaction note `resolvable_fromhost`: `mx`,
`a`, `ip`, `null`, or the reason of the failure; the domain in
`resolvable_fromhost_host`.

## Config file

`invalid_resolvable_fromhost` — networks (`10.0.0.0/8`, IPv4 or IPv6 in
CIDR form, one per line) that do not count as an address.

## Arguments

* `reject 0|1|naughty` (default 1), `reject_type` (default `soft`:
  `450`/`451`, so a sender with broken DNS can retry).
* `timeout N` — seconds all lookups of one MAIL may take.
* `loglevel N`.

## Replies

    450 FQDN required in the envelope sender (#4.1.8)
    550 Sender address has null MX (#5.7.27)
    451 Temporary address resolution failure (#4.4.3)
"""

from qpsmtpd import dns, dsn
from qpsmtpd.constants import (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED,
                               LOGWARN, LOGINFO, LOGDEBUG)
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    reject_option(default=1), reject_type_option(default="soft"),
    Option("timeout", kind="float", minimum=0, help="seconds for all lookups of one MAIL"),
)

SUCCESS = ("mx", "a", "ip", "null", "whitelist", "naughty")


def hook_mail(self, transaction, sender, params=None):
    if self.is_immune():
        return DECLINED
    if not sender or sender.format() == "<>":
        transaction.notes["resolvable_fromhost"] = "null"
        self.log(LOGINFO, "pass, null sender")
        return DECLINED
    result = self.check_dns((sender.host or "").lower().rstrip("."), transaction)
    transaction.notes["resolvable_fromhost"] = result
    if result in SUCCESS:
        return DECLINED
    if result == "temp":
        if self.opts["reject"] == 0:
            self.log(LOGINFO, "fail, tolerated, DNS failure")
            return DECLINED
        self.log(LOGINFO, "fail, DNS failure")
        return dsn.temp_resolver_failed(DENYSOFT)
    self.adjust_karma(-1)
    if result == "null MX":
        return permanent(self.get_reject("Sender address has null MX (#5.7.27)", result))
    _code, text = dsn.addr_bad_from_system(self.get_reject_type(DENYSOFT), "FQDN required in the envelope sender")
    return self.get_reject(text, result)


def check_dns(self, host, transaction):
    """'mx', 'a', 'ip', 'temp', 'null MX' or another failure reason."""
    if not host:
        return "unparsable host"
    transaction.notes["resolvable_fromhost_host"] = host
    if host.startswith("["):
        self.log(LOGINFO, f"skip, {host} is an IP")
        self.adjust_karma(-1)
        return "ip"
    lookup = dns.for_hook(self)
    mx, a, aaaa = lookup.many([(host, "MX"), (host, "A"), (host, "AAAA")])
    if mx.temporary:
        self.log(LOGWARN, f"fail, query for {host}: {mx.error}")
        return "temp"
    if mx.found:
        return self.check_mx(host, mx.answers, lookup)
    addresses = a.answers + aaaa.answers
    if addresses:
        if any(self.ip_is_valid(address) for address in addresses):
            self.log(LOGINFO, f"pass, found A for {host}")
            return "a"
        return f"invalid A for {host}"
    if a.temporary or aaaa.temporary:
        self.log(LOGWARN, f"fail, query for {host}: {a.error or aaaa.error}")
        return "temp"
    if mx.nxdomain:
        self.log(LOGINFO, f"fail, {host} does not exist")
        return "no such domain"
    self.log(LOGINFO, f"fail, {host} has no MX, A or AAAA")
    return "no MX, A or AAAA"


def check_mx(self, host, records, lookup):
    exchanges = [exchange for _pref, exchange in sorted(records)]
    if exchanges == ["."] or exchanges == [""]:
        self.log(LOGINFO, f"fail, {host} has a null MX")
        return "null MX"
    names = [name for name in exchanges if name not in (".", "") and not dns.is_ip(name)]
    literal = [name for name in exchanges if dns.is_ip(name)]
    results = lookup.many([(name, kind) for name in names for kind in ("A", "AAAA")])
    addresses = literal + [answer for result in results for answer in result.answers]
    for address in addresses:
        if self.ip_is_valid(address):
            self.log(LOGINFO, f"pass, {host} has MX with address {address}")
            return "mx"
    if not addresses and any(result.temporary for result in results):
        self.log(LOGWARN, f"fail, MX hosts of {host} could not be resolved")
        return "temp"
    return f"invalid MX for {host}"


def ip_is_valid(self, text):
    import ipaddress
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    for network in self.invalid_networks():
        if address.version == network.version and address in network:
            self.log(LOGDEBUG, f"{address} is in {network}")
            return False
    return True


def invalid_networks(self):
    cached = getattr(self, "_invalid", None)
    if cached is None:
        import ipaddress
        cached = []
        for line in self.qp.config("invalid_resolvable_fromhost"):
            try:
                cached.append(ipaddress.ip_network(line.split()[0], strict=False))
            except ValueError:
                self.log(LOGWARN, f"ignoring invalid network {line!r}")
        self._invalid = cached
    return cached


def permanent(result):
    """A null MX is the domain's own permanent statement: never a 4xx."""
    if isinstance(result, tuple):
        code = DENY_DISCONNECT if result[0] in (DENY_DISCONNECT, DENYSOFT_DISCONNECT) else DENY
        return (code, *result[1:])
    return result
