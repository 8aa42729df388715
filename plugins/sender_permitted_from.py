"""sender_permitted_from - check the sender's SPF record (RFC 7208).

At MAIL FROM, evaluates the SPF policy of the sender's domain for the
client's address with pyspf (imported when the first mail is checked,
its DNS lookups made through qpsmtpd's resolver, within the time budget).
The null sender `<>` is not checked.  Relay clients and whitelisted
senders count as `pass`.

Every checked message gets a `Received-SPF:` header, and `spf=<result>
smtp.mailfrom=<domain>` goes into Authentication-Results.

## Arguments

`reject N` — what to refuse (default 0: nothing, only the header):

| N | behaviour |
| --- | --- |
| 1 | annotate only, never reject |
| 2 | also defer (4xx) on DNS failures (`temperror`) and on `fail` |
| 3 | reject (5xx) `fail`; defer `softfail` — the recommended level |
| 4 | also reject `softfail`; defer `permerror` |
| 5 | also reject `neutral` |
| 6 | also reject `none` (no SPF record) and `permerror` |

`spf_deny 1` / `spf_deny 2` are old names for `reject 3` / `reject 4`;
without `reject`, `config/spfbehavior` gives the level.

`no_dmarc_policy N` (default 0) — with the dmarc plugin loaded after this
one and `reject 1`/`2`: when the sender's domain publishes no DMARC policy,
reject at the end of DATA: 1 `fail`, 2 also `softfail`, 3 also `neutral`,
4 also `none`/`permerror`.

`timeout N` — seconds all SPF lookups of one message may take (default 20,
as RFC 7208 suggests).  `loglevel N`.

## Notes

Transaction notes: `spfquery` (a dict: `code`, `why`, `header`),
`dmarc_spf` (`domain`, `scope`, `result`, for dmarc), `spf_pass_host`.

## Replies

    550 SPF - forgery: SPF fail - not authorized
    450 SPF - fail: SPF softfail - not authorized
    450 SPF - temperror: ...
"""

from qpsmtpd import dns
from qpsmtpd.constants import DENY, DENYSOFT, DECLINED, LOGERROR, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("reject", kind="int", minimum=0, maximum=6, help="0-6: what to refuse (default config/spfbehavior, else 0)"),
    Option("spf_deny", kind="int", minimum=0, maximum=2, help="older names: 1 is reject 3, 2 is reject 4"),
    Option("no_dmarc_policy", kind="int", default=0, minimum=0, maximum=4,
           help="without a DMARC policy, reject at the end of DATA"),
    Option("timeout", kind="float", minimum=0, help="seconds for all SPF lookups of one message"),
)

_spf = None


def register(self, qp, *args):
    opts = self.opts
    if opts["spf_deny"] in (1, 2):
        opts["reject"] = 3 if opts["spf_deny"] == 1 else 4
    if opts["reject"] is None:
        opts["reject"] = _int(qp.config_value("spfbehavior", "0"), 0)
    self.level = opts["reject"]
    self.no_dmarc_level = opts["no_dmarc_policy"]
    self.register_hook("mail", "evaluate_spf")
    self.register_hook("data_post_headers", "add_spf_header")
    if self.no_dmarc_level > 0:
        self.register_hook("data_post", "no_dmarc_policy")


def evaluate_spf(self, transaction, sender, params=None):
    host = (sender.host or "").lower() if sender else ""
    if self.is_immune():
        transaction.notes["dmarc_spf"] = {"domain": host, "scope": "mfrom", "result": "pass"}
        return DECLINED
    if not sender or sender.format() == "<>" or not host or not sender.user:
        self.log(LOGINFO, "skip, null sender")
        transaction.notes["dmarc_spf"] = {"scope": "helo", "result": "none"}
        return DECLINED
    code, why, header = self.spf_check(f"{sender.user}@{host}")
    transaction.notes["spfquery"] = {"code": code, "why": why, "header": header}
    transaction.notes["dmarc_spf"] = {"domain": host, "scope": "mfrom", "result": code}
    self.store_auth_results(f"spf={code} smtp.mailfrom={host}")
    if code == "pass":
        self.adjust_karma(1)
        transaction.notes["spf_pass_host"] = host
        self.log(LOGINFO, f"pass, {why}")
        return DECLINED
    if code in ("fail", "softfail"):
        self.adjust_karma(-1)
    return self.decide(code, why)


def decide(self, code, why):
    level = self.level
    if not level:
        self.log(LOGINFO, f"skip, tolerated ({code}: {why})")
        return DECLINED
    verdict = None
    if code == "fail" and level >= 2:
        verdict = (DENY, f"SPF - forgery: {why}") if level >= 3 else (DENYSOFT, f"SPF - fail: {why}")
    elif code == "softfail" and level >= 3:
        verdict = (DENY if level >= 4 else DENYSOFT, f"SPF - fail: {why}")
    elif code == "neutral" and level >= 5:
        verdict = (DENY, f"SPF - {code}: {why}")
    elif code == "none" and level >= 6:
        verdict = (DENY, f"SPF - none: {why}")
    elif code == "permerror" and level > 3:
        verdict = (DENY if level >= 6 else DENYSOFT, f"SPF - {code}: {why}")
    elif code == "temperror" and level >= 2:
        verdict = (DENYSOFT, f"SPF - {code}: {why}")
    if verdict is None:
        self.log(LOGINFO, f"fail, tolerated, {code}, {why}")
        return DECLINED
    self.log(LOGINFO, f"fail, {code}, {why}")
    return verdict


def spf_check(self, identity):
    """(result, explanation, Received-SPF value) from pyspf."""
    spf = load_spf()
    lookup = dns.for_hook(self, default=20.0)
    spf.DNSLookup = lambda name, qtype, strict=True, timeout=None: dns_for_spf(lookup, name, qtype)
    me = self.qp.config_value("me", "localhost")
    try:
        query = spf.query(i=self.connection.remote_ip, s=identity, h=self.connection.hello_host or "unknown",
                          receiver=me, querytime=lookup.remaining())
        code, _smtp_code, why = query.check()
        header = query.get_header(code, receiver=me)
    except Exception as error:  # pyspf raising on odd input must not cost a 451
        self.log(LOGERROR, f"SPF evaluation failed: {error}")
        return "temperror", "SPF evaluation failed", ""
    why = " ".join(str(why).split()) or ("no SPF record" if code == "none" else code)
    return code, why, " ".join(header.split())


def dns_for_spf(lookup, name, qtype):
    """pyspf's DNSLookup interface on top of qpsmtpd's resolver."""
    spf = load_spf()
    if qtype not in ("A", "AAAA", "MX", "PTR", "TXT"):
        return []
    result = lookup.lookup(name, qtype)
    if result.temporary:
        raise spf.TempError(f"DNS {result.error or 'failure'} for {name}/{qtype}")
    if qtype == "TXT":
        return [((name, qtype), tuple(strings)) for strings in result.raw_txt]
    return [((name, qtype), answer) for answer in result.answers]


class _LazyMessage:
    """Stands in for email.message.Message inside pyspf; the real class on first use."""

    def __new__(cls, *args, **kwargs):
        from email.message import Message

        return Message(*args, **kwargs)


def load_spf():
    """Import pyspf without the dns.resolver it imports at top level (about 20 ms,
    mostly ssl via dns.asyncquery; its lookups go through qpsmtpd's resolver),
    without the dns.rdatatype it patches for that resolver (type 99 is known
    to the stand-in) and without email.message (about 6 ms; it only parses
    Received-SPF headers with it)."""
    global _spf
    if _spf is None:
        dns.load_dnspython()
        _spf = dns.import_with_stand_ins("spf", {
            "dns.resolver": {}, "dns.rdatatype": {"SPF": 99},
            "email.message": {"Message": _LazyMessage},
        })
    return _spf


def add_spf_header(self, transaction):
    result = transaction.notes.get("spfquery")
    if not result or not result.get("header") or self.is_immune():
        return DECLINED
    transaction.header.add("Received-SPF", result["header"], 0)
    return DECLINED


def no_dmarc_policy(self, transaction):
    if self.is_immune():
        return DECLINED
    spf_result = transaction.notes.get("spfquery")
    dmarc = transaction.notes.get("dmarc_result")
    if not spf_result or not isinstance(dmarc, dict) or dmarc.get("policy") != "none-published":
        return DECLINED
    code, why, level = spf_result["code"], spf_result["why"], self.no_dmarc_level
    limits = {"fail": 1, "softfail": 2, "neutral": 3, "none": 4, "permerror": 4}
    if code in limits and level >= limits[code]:
        self.log(LOGINFO, f"fail, {code}, {why}")
        return DENY, f"SPF - {code}: {why}"
    self.log(LOGINFO, "pass")
    return DECLINED


def _int(text, default):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default
