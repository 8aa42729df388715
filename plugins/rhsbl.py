"""rhsbl - reject mail whose sender domain or HELO name is in a domain blocklist.

At MAIL FROM, looks up `<sender domain>.<zone>` and `<HELO name>.<zone>`
for every zone of `config/rhsbl_zones`, all at once.  The null sender
`<>` has no domain: only the HELO name is checked.  IP literals are not
looked up.

## Config file

`rhsbl_zones` — one zone per line.  A zone alone is asked for TXT records
and the TXT text is the reason; `zone message...` asks for A records
and uses that message:

    dbl.example.org
    rhs.example.net is listed in rhs.example.net

## Arguments

* `reject 0|1|naughty` (default 1), `reject_type` (default `perm`).  A
  single argument `disconnect` is the old way to ask for `reject_type
  disconnect`.
* `timeout N` — seconds all lookups of one MAIL may take.
* `loglevel N`.

Relay clients and whitelisted senders are not checked.  Lookup failures
are logged and the mail is let through.

## Replies

    550 Mail from spammer.test rejected because it is listed in rhs.test
    550 Mail from HELO bad-helo.test rejected because it is a known spam HELO
"""

from qpsmtpd import dns
from qpsmtpd.constants import DECLINED, LOGCRIT, LOGINFO
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    reject_option(default=1), reject_type_option(default="perm"),
    Option("timeout", kind="float", minimum=0, help="seconds for all lookups of one MAIL"),
    positional=(reject_type_option(default="perm"),),  # `rhsbl disconnect`: the older form
)


def hook_mail(self, transaction, sender, params=None):
    if self.is_immune():
        return DECLINED
    zones = self.populate_zones()
    if not zones:
        return DECLINED
    checks = self.names_to_check(sender)
    if not checks:
        self.log(LOGINFO, "pass, nothing to check")
        return DECLINED
    queries = [(f"{host}.{zone}", "TXT" if message is None else "A")
               for _label, host in checks for zone, message in zones.items()]
    results = iter(dns.for_hook(self).many(queries))
    for label, host in checks:
        for zone, message in zones.items():
            reason = self.reason(zone, message, next(results))
            if reason:
                self.adjust_karma(-1)
                return self.get_reject(f"Mail from {label}{host} rejected because it {reason}", f"{host} in {zone}")
    self.log(LOGINFO, "pass")
    return DECLINED


def names_to_check(self, sender):
    checks = []
    host = (sender.host or "").lower().rstrip(".") if sender and sender.format() != "<>" else ""
    if host and not host.startswith("["):
        checks.append(("", host))
    hello = (self.connection.hello_host or "").lower().rstrip(".")
    if hello and hello != host and dns.valid_name(hello) and not dns.is_ip(hello):
        checks.append(("HELO ", hello))
    return checks


def populate_zones(self):
    zones = {}
    for line in self.qp.config("rhsbl_zones"):
        zone, _sep, message = line.strip().partition(" ")
        zones[zone.strip(".").lower()] = message.strip() or None
    if not zones:
        self.log(LOGINFO, "pass, no zones")
    return zones


def reason(self, zone, message, result):
    if result.temporary:
        self.log(LOGCRIT, f"query failed: {result.name}: {result.error}")
        return None
    if not result.found:
        return None
    if message is not None:
        return message
    return " ".join(result.answers[0].split()) or f"is listed in {zone}"
