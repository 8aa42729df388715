"""dmarc - enforce the DMARC policy (RFC 7489) of the domain in the From header.

List it after `sender_permitted_from` and `dkim`, and let those two accept
failing mail (`sender_permitted_from reject 1`, `dkim reject 0`): DMARC
decides with both results.

For each message from an ordinary client (relay clients are skipped):

1. The domain of the `From:` header is the author domain.  A message
   without a From header, or with one that has no domain, or with
   addresses of several domains, is refused (`reject`).
2. The policy is the `v=DMARC1` TXT record at `_dmarc.<author domain>`,
   else at `_dmarc.<organizational domain>` (found with the public suffix
   list, see below), where `sp=` (default `p=`) applies to subdomains.
   No record: `dmarc=none`, the message passes.
3. DMARC passes when SPF passed for an aligned envelope sender domain, or
   a DKIM signature passed for an aligned `d=` domain.  Alignment is
   relaxed (same organizational domain) unless `aspf=s` / `adkim=s` ask
   for the exact domain.
4. A failing message gets the policy's disposition: `none` accepts it;
   `quarantine` and `reject` refuse it at the end of DATA (as qpsmtpd
   does: there is no quarantine here), except for the share of messages
   that `pct=` leaves out (chosen at random).  A failing message loses 3
   karma.
5. `dmarc=pass|fail|none|temperror|permerror (p=...) header.from=DOMAIN`
   goes into Authentication-Results.

A DNS failure while looking for the policy gives `dmarc=temperror` and
defers the message (452), unless `reject 0`.

## The public suffix list

`config/public_suffix_list` — the list itself (publicsuffix.org format),
or one line with the absolute path of such a file.  Without it the
system's list (`/usr/share/publicsuffix/public_suffix_list.dat`, Debian
package `publicsuffix`) is used; without that, every top-level label is a
public suffix.

## Arguments

* `reject 0|1|naughty` (default 1), `reject_type` (default `perm`);
* `reporting 0|1` — accepted for compatibility; aggregate reports are not
  sent;
* `timeout N` — seconds the policy lookups of one message may take;
* `loglevel N`.

## Notes

Transaction note `dmarc_result`, a dict: `result` (`pass`, `fail`,
`none`, `temperror`, `permerror`), `policy` (`none`, `quarantine`,
`reject`, or `none-published` when the domain publishes no policy — what
`sender_permitted_from no_dmarc_policy` looks for), `disposition`,
`domain` (the From domain), `org_domain`, `spf_aligned`, `dkim_aligned`,
`reason`.

## Replies

All at the end of DATA:

    552 failed DMARC policy
    552 empty from address, null sender?
    552 unparseable from header
    552 multiple From domains
    452 DMARC policy lookup failed, try again later
"""

from qpsmtpd import dns
from qpsmtpd.constants import DENYSOFT, DECLINED, LOGERROR, LOGINFO
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    reject_option(default=1), reject_type_option(default="perm"),
    Option("reporting", kind="bool", default=False, help="accepted; aggregate reports are not sent"),
    Option("timeout", kind="float", minimum=0, help="seconds for the policy lookups of one message"),
)

TAG_DEFAULTS = {"p": "", "sp": "", "pct": "100", "adkim": "r", "aspf": "r"}
POLICIES = ("none", "quarantine", "reject")


def register(self, qp, *args):
    if len(args) % 2:
        self.log(LOGERROR, "Bad arguments")
    self.register_hook("data_post_headers", "check_dmarc")
    self.register_hook("data_post", "reject_dmarc")


def check_dmarc(self, transaction):
    if self.is_relay_client():
        self.log(LOGINFO, "skip, relay client")
        return DECLINED
    domain, problem = author_domain(transaction)
    if problem:
        self.log(LOGINFO, f"fail, {problem}")
        transaction.notes["reject_dmarc"] = problem
        return DECLINED
    outcome = self.evaluate(transaction, domain)
    transaction.notes["dmarc_result"] = outcome
    self.report(transaction, outcome)
    return DECLINED


def reject_dmarc(self, transaction):
    reason = transaction.notes.get("reject_dmarc")
    if not reason:
        return DECLINED
    if reason == "temperror":
        if self.opts["reject"] == 0:
            self.log(LOGINFO, "error, tolerated, DMARC policy lookup failed")
            return DECLINED
        return DENYSOFT, "DMARC policy lookup failed, try again later"
    return self.get_reject(reason, "DMARC")


def author_domain(transaction):
    """(domain, None) or (None, why the message cannot be evaluated)."""
    from email.utils import getaddresses
    values = transaction.header.get_all("From")
    if not values or not "".join(values).strip():
        return None, "empty from address, null sender?"
    domains = set()
    for _name, address in getaddresses([" ".join(value.split()) for value in values]):
        host = _ascii(address.rpartition("@")[2].strip().strip(".").lower()) if "@" in address else ""
        if not host or not dns.valid_name(host) or "." not in host:
            return None, "unparseable from header"
        domains.add(host)
    if not domains:
        return None, "unparseable from header"
    if len(domains) > 1:
        return None, "multiple From domains"
    return domains.pop(), None


def evaluate(self, transaction, domain):
    from qpsmtpd import publicsuffix
    suffixes = publicsuffix.for_session(self.qp)
    org_domain = suffixes.organizational_domain(domain)
    outcome = {"result": "none", "policy": "none-published", "disposition": "none", "domain": domain,
               "org_domain": org_domain, "spf_aligned": False, "dkim_aligned": False, "reason": ""}
    record, found_at, error = self.discover_policy(domain, org_domain)
    if error:
        outcome.update(result=error, reason="policy lookup failed" if error == "temperror" else "bad policy")
        return outcome
    if record is None:
        outcome["reason"] = "no policy"
        return outcome
    tags = parse_record(record)
    policy = tags["p"] if found_at == domain else (tags["sp"] or tags["p"])
    if policy not in POLICIES:
        policy = "none" if tags["p"] not in POLICIES else tags["p"]
    outcome["policy"] = policy
    outcome["spf_aligned"] = spf_aligned(transaction, domain, tags["aspf"] == "s", suffixes)
    outcome["dkim_aligned"] = dkim_aligned(transaction, domain, tags["adkim"] == "s", suffixes)
    if outcome["spf_aligned"] or outcome["dkim_aligned"]:
        outcome["result"] = "pass"
        return outcome
    outcome["result"] = "fail"
    outcome["reason"] = "not aligned"
    outcome["disposition"] = policy
    if policy != "none" and not sampled(tags["pct"]):
        outcome["disposition"] = "none"
        outcome["reason"] = f"sampled out (pct={tags['pct']})"
    return outcome


def discover_policy(self, domain, org_domain):
    """(record text or None, the domain it was found at, error or None)."""
    lookup = dns.for_hook(self)
    names = [domain] if org_domain == domain else [domain, org_domain]
    results = lookup.many([(f"_dmarc.{name}", "TXT") for name in names])
    for name, result in zip(names, results):
        if result.temporary:
            self.log(LOGERROR, f"_dmarc.{name} lookup failed: {result.error}")
            return None, name, "temperror"
        records = [text for text in result.answers if text.strip().lower().startswith("v=dmarc1")]
        if len(records) == 1 and _valid_start(records[0]):
            return records[0], name, None
        if len(records) > 1:
            self.log(LOGINFO, f"_dmarc.{name} has {len(records)} DMARC records: ignored")
    return None, domain, None


def spf_aligned(transaction, domain, strict, suffixes):
    spf = transaction.notes.get("dmarc_spf")
    if not isinstance(spf, dict) or spf.get("result") != "pass" or spf.get("scope", "mfrom") != "mfrom":
        return False
    return aligned(str(spf.get("domain") or ""), domain, strict, suffixes)


def dkim_aligned(transaction, domain, strict, suffixes):
    for signature in transaction.notes.get("dkim_signatures") or []:
        if signature.get("result") == "pass" and aligned(signature.get("domain", ""), domain, strict, suffixes):
            return True
    return False


def aligned(other, domain, strict, suffixes):
    other = other.lower().strip(".")
    if not other:
        return False
    if other == domain:
        return True
    return not strict and suffixes.organizational_domain(other) == suffixes.organizational_domain(domain)


def report(self, transaction, outcome):
    result, policy, domain = outcome["result"], outcome["policy"], outcome["domain"]
    entry = f"dmarc={result}"
    if policy != "none-published":
        entry += f" (p={policy})"
    self.store_auth_results(f"{entry} header.from={domain}")
    if result == "pass":
        self.log(LOGINFO, "pass")
        return
    if result == "temperror":
        transaction.notes["reject_dmarc"] = "temperror"
        return
    if result in ("none", "permerror"):
        self.log(LOGINFO, f"skip, {outcome['reason'] or result}")
        return
    self.log(LOGINFO, f"fail, {outcome['disposition']}"
                      + (", tolerated" if outcome["disposition"] == "none" else "")
                      + f", {outcome['reason']}")
    if outcome["disposition"] == "none" or self.is_immune():
        return
    self.adjust_karma(-3)
    transaction.notes["reject_dmarc"] = "failed DMARC policy"


def parse_record(text):
    tags = dict(TAG_DEFAULTS)
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = value.strip().lower()
    if not tags["pct"].isdigit():
        tags["pct"] = "100"
    return tags


def sampled(pct):
    import random
    percent = min(int(pct), 100)
    return percent >= 100 or random.randrange(100) < percent


def _valid_start(record):
    import re
    return re.match(r"(?i)v\s*=\s*DMARC1\s*(;|$)", record.strip()) is not None


def _ascii(host):
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return ""

