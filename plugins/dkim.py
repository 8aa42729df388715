"""dkim - verify DKIM signatures of incoming mail, sign mail of relay clients.

## Verifying

Every `DKIM-Signature:` of a message from an ordinary client is checked
with dkimpy (imported when the first message is checked); the public keys
are looked up through qpsmtpd's resolver (see docs/dns.md) within one time
budget.  Each signature gets one of these results:

| result | meaning | Authentication-Results |
| --- | --- | --- |
| `pass` | the signature verifies | `dkim=pass` |
| `fail` | the key was found but the signature or the body hash does not match | `dkim=fail` |
| `invalid` | the signature cannot be checked: no key in DNS, a broken key, a malformed or expired signature | `dkim=permerror` |
| `temperror` | the key lookup failed (timeout, SERVFAIL) | `dkim=temperror` |

A message without signatures gets `dkim=none`.  Each signature adds one
`dkim=... header.d=DOMAIN header.s=SELECTOR` entry to the
Authentication-Results header.  The message's result is the best of its
signatures (pass, then temperror, fail, invalid).

What happens then:

* `pass` — karma +1 and an `X-DKIM-Authentication:` header with the
  domain and selector;
* `fail` — karma -1 and the message is refused at the end of DATA
  (`reject`, `reject_type`): `552 signature invalid: fail (body hash did not verify)`;
* `temperror` — `452 Please try again later - temperror (...)` (not with `reject 0`);
* `invalid`, `none` — accepted (DMARC decides about unsigned mail).

At most 10 signatures of one message are checked.

## Signing

Mail from relay clients (authenticated users, `relayclients`) is signed
when a key exists for the envelope sender's domain:

    config/dkim/example.org/selector   # one line: the selector, e.g. may2013
    config/dkim/example.org/private    # the RSA private key (PEM)

A subdomain without its own directory uses the closest parent domain's key
(`d=` is then the parent).  A symbolic link `config/dkim/client.com ->
example.org` signs client.com's mail with example.org's key and
`d=example.org`.  Signatures are `rsa-sha256`, `c=relaxed/relaxed`, over
the usual header fields, added on top of the header.  Publish the public key
as a TXT record `SELECTOR._domainkey.DOMAIN` with `v=DKIM1; k=rsa; p=...`.

    openssl genrsa -out private 2048
    openssl rsa -in private -pubout -outform DER | base64 -w0   # the p= value

## Arguments

* `reject 0|1|naughty` (default 1) — what a failing signature does;
* `reject_type perm|temp|disconnect|temp_disconnect` (default `perm`);
* `timeout N` — seconds all key lookups of one message may take (default
  `config/dns_budget`);
* `loglevel N`.

## Notes

Transaction notes: `dkim_result` (the message's result), `dkim_signatures`
(a list of dicts `domain`, `selector`, `result`, `detail`, read by dmarc),
`dkim_pass_domains` (domains with a passing signature).

## Replies

    552 signature invalid: fail (signature did not verify)
    452 Please try again later - temperror (DNS timeout for sel._domainkey.example.org)
"""

from qpsmtpd import dns
from qpsmtpd.constants import DENYSOFT, DECLINED, LOGERROR, LOGWARN, LOGINFO
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    reject_option(default=1), reject_type_option(default="perm"),
    Option("timeout", kind="float", minimum=0, help="seconds for all key lookups of one message"),
)

MAX_SIGNATURES = 10
PRIORITY = ("pass", "temperror", "fail", "invalid")
AR_RESULT = {"pass": "pass", "fail": "fail", "invalid": "permerror", "temperror": "temperror"}

_dkim = None


def register(self, qp, *args):
    self.register_hook("data_post_headers", "data_post_handler")
    self.register_hook("data_post", "reject_dkim")


def data_post_handler(self, transaction):
    if self.is_relay_client():
        self.sign_it(transaction)
        return DECLINED
    if self.is_immune():
        return DECLINED
    self.validate_it(transaction)
    return DECLINED


def reject_dkim(self, transaction):
    pending = transaction.notes.get("dkim_reject")
    if not pending:
        return DECLINED
    kind, text = pending
    if kind == "temperror":
        if self.opts["reject"] == 0:
            self.log(LOGINFO, f"error, tolerated, {text}")
            return DECLINED
        return DENYSOFT, f"Please try again later - {text}"
    return self.get_reject(text, "invalid signature")


# -- verifying ----------------------------------------------------------------

def validate_it(self, transaction):
    dkim = load_dkim()
    message = message_bytes(transaction)
    try:
        verifier = dkim.DKIM(message, logger=_Logger(), timeout=5)
    except Exception as error:  # dkimpy refuses a malformed header
        self.log(LOGINFO, f"skip, unparseable message: {_clean(error)}")
        return
    count = sum(1 for name, _value in verifier.headers if name.lower() == b"dkim-signature")
    if not count:
        transaction.notes["dkim_result"] = "none"
        transaction.notes["dkim_signatures"] = []
        self.store_auth_results("dkim=none")
        self.log(LOGINFO, "none, no signatures")
        return
    if count > MAX_SIGNATURES:
        self.log(LOGWARN, f"{count} signatures, checking the first {MAX_SIGNATURES}")
    lookup = dns.for_hook(self)
    signatures = [self.check_signature(dkim, verifier, index, lookup)
                  for index in range(min(count, MAX_SIGNATURES))]
    self.record(transaction, signatures)


def check_signature(self, dkim, verifier, index, lookup):
    """{domain, selector, result, detail} for the index-th signature."""
    header = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"][index]
    tags = _tags(header)
    state = {"key": False, "temp": "", "name": ""}

    def dnsfunc(name, timeout=5):
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        state["name"] = text.rstrip(".")
        result = lookup.lookup(text, "TXT")
        if result.temporary:
            state["temp"] = f"DNS {result.error or 'failure'} for {text.rstrip('.')}"
            raise dkim.DnsTimeoutError(state["temp"])
        if not result.found:
            return None
        state["key"] = True
        return b"".join(result.raw_txt[0])

    verifier.logger = _Logger()
    verifier.pk = None
    try:
        ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        if ok:
            result, detail = "pass", ""
        elif state["temp"]:
            result, detail = "temperror", state["temp"]
        elif not state["key"]:
            result, detail = "invalid", f"no key for {state['name']}"
        elif verifier.logger.error_text:
            result, detail = "invalid", verifier.logger.error_text
        else:
            result, detail = "fail", "signature did not verify"
    except dkim.ValidationError as error:
        text = str(error)
        result, detail = ("fail", "body hash did not verify") if "body hash" in text else ("invalid", text)
    except Exception as error:  # dkimpy's other errors: malformed signature or key
        result, detail = "invalid", str(error) or type(error).__name__
    signature = {"domain": tags.get("d", ""), "selector": tags.get("s", ""), "result": result,
                 "detail": _clean(detail)}
    self.log(LOGINFO, f"{result}, domain: {signature['domain']}, selector: {signature['selector']}"
                      + (f", {signature['detail']}" if detail else ""))
    return signature


def record(self, transaction, signatures):
    for signature in signatures:
        entry = f"dkim={AR_RESULT[signature['result']]}"
        if signature["result"] != "pass":
            entry += f" ({_comment(signature['detail']) or signature['result']})"
        if signature["domain"]:
            entry += f" header.d={signature['domain']}"
        if signature["selector"]:
            entry += f" header.s={signature['selector']}"
        self.store_auth_results(entry)
    best = min(signatures, key=lambda sig: PRIORITY.index(sig["result"]))
    result = best["result"]
    transaction.notes["dkim_result"] = result
    transaction.notes["dkim_signatures"] = signatures
    transaction.notes["dkim_pass_domains"] = sorted({sig["domain"] for sig in signatures
                                                     if sig["result"] == "pass" and sig["domain"]})
    detail = f"{result} ({best['detail']})" if best["detail"] else result
    if result == "pass":
        self.adjust_karma(1)
        transaction.header.add("X-DKIM-Authentication",
                               f"domain: {best['domain']}, selector: {best['selector']}, result: pass", 0)
    elif result == "fail":
        self.adjust_karma(-1)
        transaction.notes["dkim_reject"] = ("fail", f"signature invalid: {detail}")
    elif result == "temperror":
        transaction.notes["dkim_reject"] = ("temperror", detail)
    else:
        self.adjust_karma(-1)


# -- signing ------------------------------------------------------------------

def sign_it(self, transaction):
    sender = transaction.sender
    host = (sender.host or "").lower() if sender else ""
    if not host or not dns.valid_name(host):
        self.log(LOGINFO, "skip, no sender domain to sign for")
        return
    found = self.get_keydir(host)
    if found is None:
        return
    domain, keydir = found
    import os
    try:
        with open(os.path.join(keydir, "selector")) as handle:
            selector = handle.readline().strip()
        with open(os.path.join(keydir, "private"), "rb") as handle:
            private = handle.read()
    except OSError as error:
        self.log(LOGERROR, f"error, unable to read the key in {keydir}: {error.strerror}")
        return
    if not selector or not dns.valid_name(selector):
        self.log(LOGERROR, f"error, no valid selector in {keydir}/selector")
        return
    dkim = load_dkim()
    try:
        signer = dkim.DKIM(message_bytes(transaction), logger=_Logger())
        signature = signer.sign(selector.encode(), domain.encode(), private,
                                canonicalize=(b"relaxed", b"relaxed"))
    except Exception as error:  # a bad key or an unsignable message
        self.log(LOGERROR, f"error, could not sign: {_clean(error)}")
        return
    value = signature.decode("ascii").split(":", 1)[1].strip().replace("\r\n", "\n")
    transaction.header.add("DKIM-Signature", value, 0)
    self.log(LOGINFO, f"pass, signed for {domain} with selector {selector}")


def get_keydir(self, host):
    """(signing domain, key directory) for `host`, or None."""
    import os
    base = os.path.join(self.qp.conf.config_dir("dkim"), "dkim")
    labels = host.split(".")
    for start in range(len(labels) - 1):
        domain = ".".join(labels[start:])
        path = os.path.join(base, domain)
        if os.path.lexists(path):
            break
    else:
        self.log(LOGINFO, f"skip, DKIM not configured for {host}")
        return None
    if os.path.islink(path):
        domain = os.path.basename(os.path.realpath(path))
    if not os.path.isdir(path) or not os.access(os.path.join(path, "private"), os.R_OK):
        self.log(LOGERROR, f"error, unable to read the DKIM key in {path}")
        return None
    if domain != host:
        self.log(LOGINFO, f"info, using the {domain} key for {host}")
    return domain, path


# -- helpers ------------------------------------------------------------------

def message_bytes(transaction):
    """The message as received, with CRLF line ends."""
    parts = [transaction.header.as_bytes()]
    transaction.body_resetpos()
    while True:
        block = transaction.body_read(65536)
        if not block:
            break
        parts.append(block)
    transaction.body_resetpos()
    return b"".join(parts).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def load_dkim():
    """Import dkimpy without the dns.resolver its DNS module imports: keys are
    looked up through qpsmtpd's resolver."""
    global _dkim
    if _dkim is None:
        dns.load_dnspython()
        _dkim = dns.import_with_stand_ins("dkim", {"dns.resolver": {}})
    return _dkim


class _Logger:
    """What dkimpy logs, kept: its errors explain why a signature is invalid."""

    def __init__(self):
        self.error_text = ""

    def error(self, message, *args):
        self.error_text = str(message) % args if args else str(message)

    def debug(self, *args, **kwargs):
        pass

    info = warning = debug


def _tags(value):
    import re
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    tags = {}
    for part in text.split(";"):
        name, sep, content = part.partition("=")
        if sep:
            tags[name.strip().lower()] = re.sub(r"\s+", "", content)
    for key in ("d", "s"):
        if key in tags and not dns.valid_name(tags[key]):
            tags[key] = ""
    return tags


def _clean(text):
    import re
    return " ".join(re.sub(r"\bb'([^']*)'", r"\1", str(text)).split())[:200]


def _comment(text):
    """Text safe inside an Authentication-Results comment."""
    return "".join(char for char in text if " " <= char <= "~" and char not in "();\\")

