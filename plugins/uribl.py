"""uribl - look up the hosts and addresses of URIs in the message body in URI blocklists.

At the end of DATA the body is scanned for host names (`www.example.com`,
`http://user@host.example.net:8080/path`, and any bare `host.domain.tld`
with a known top-level domain) and for IP addresses in URIs
(`http://192.0.2.7/`, `http://0xc0.0.02.7/`, `http://3221225991/`).
Quoted-printable soft line breaks, `%xx`/`=xx` escapes, `&#NN;` entities and
inserted semicolons are undone first.

Each host is looked up with its parent domains down to the registrable
domain (`a.b.example.co.uk` → `a.b.example.co.uk`, `b.example.co.uk`,
`example.co.uk`; the public suffix list decides what is registrable, see
`dmarc`), each address reversed (`7.2.0.192.zone`), in every zone at once
through qpsmtpd's resolver.  Only A answers whose value, masked, is not
zero count; the TXT record of a listed name is fetched for the reason.

## Config files

`uribl_zones` — one zone per line: `zone [mask[,mask...]] [action]`:

    multi.surbl.org 2,4,8,16,32,64 deny
    black.uribl.com 0x2 add-header
    dbl.example.net

The mask (decimal, default `0x00ffffff`; `-1` means that default too) is
ANDed with the answer's address (`127.0.0.2` → 2).  Actions: `add-header`
(an `X-URIBL-Match:` header), `deny` (refuse, 552), `denysoft` (defer,
452), `log`.

`uribl_whitelist_domains` — registrable domains never looked up.

## Arguments

* `action add-header|deny|denysoft|log` — the action of zones that name
  none (default `add-header`);
* `checkip yes|no` (default yes) — look up addresses in URIs;
* `check-headers 1` (alias `scan-headers`) — scan the header too;
* `timeout N` — seconds all lookups may take (default `config/dns_budget`);
* `max_names N` — look up at most N names per message (default 50: a
  message cannot make the server send thousands of queries);
* `loglevel N`.

## Replies

    552 spam-host.com in multi.surbl.test: listed by surbl
    452 spam-host.com in dbl.test: 127.0.0.2
"""

from qpsmtpd import dns
from qpsmtpd.constants import DENY, DENYSOFT, DECLINED, LOGERROR, LOGWARN, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("action", default="add-header", choices=("add-header", "deny", "denysoft", "log"),
           help="the action of zones that name none"),
    Option("checkip", kind="bool", default=True, help="look up addresses found in URIs"),
    Option("check-headers", kind="bool", default=False, aliases=("scan-headers",), help="scan the header too"),
    Option("timeout", kind="float", minimum=0, help="seconds for all lookups of one message"),
    Option("max_names", kind="int", default=50, minimum=1, help="names looked up per message"),
    Option("mask", help="accepted for compatibility; masks are set per zone in uribl_zones"),
)

ACTIONS = ("add-header", "deny", "denysoft", "log")
DEFAULT_MASK = 0x00FFFFFF
FALLBACK_TLDS = frozenset("com net org info biz edu gov mil int name pro aero coop museum mobi asia tel travel jobs cat "
                          "xxx arpa".split())


def hook_data_post(self, transaction):
    if self.is_immune():
        return DECLINED
    zones = self.get_zones()
    if not zones:
        return DECLINED
    names = self.find_names(transaction)
    if not names:
        self.log(LOGINFO, "pass, no URIs found in mail")
        return DECLINED
    matches = self.lookup(names, zones)
    refusals = {}
    for action, desc in matches:
        self.log(LOGWARN, desc)
        if action == "add-header":
            transaction.header.add("X-URIBL-Match", desc, 0)
        elif action in ("deny", "denysoft"):
            refusals.setdefault(action, desc)
    if "deny" in refusals:
        return DENY, refusals["deny"]
    if "denysoft" in refusals:
        return DENYSOFT, refusals["denysoft"]
    return DECLINED


def get_zones(self):
    """{zone: (mask, action)} from config/uribl_zones."""
    zones = {}
    for line in self.qp.config("uribl_zones"):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        zone = words[0].strip(".").lower()
        mask = parse_mask(words[1]) if len(words) > 1 else DEFAULT_MASK
        action = words[2].lower() if len(words) > 2 else self.opts["action"]
        if mask is None:
            self.log(LOGERROR, f"Malformed mask {words[1]} for {zone}")
        elif action not in ACTIONS:
            self.log(LOGERROR, f"Unknown action {action} for {zone}")
        elif dns.valid_name(zone):
            zones[zone] = (mask, action)
    return zones


def parse_mask(text):
    mask = 0
    for part in text.split(","):
        try:
            value = int(part, 0)
        except ValueError:
            return None
        mask |= value if value >= 0 else DEFAULT_MASK
    return mask


# -- scanning -------------------------------------------------------------------

def find_names(self, transaction):
    """The names to look up (reversed addresses and host names), in the order found."""
    from qpsmtpd import publicsuffix
    scanner = Scanner(publicsuffix.for_session(self.qp), self.qp.config("uribl_whitelist_domains"),
                      self.opts["checkip"], self.opts["max_names"])
    if self.opts["check-headers"]:
        for line in transaction.header.as_string().split("\n"):
            scanner.feed(line)
    transaction.body_resetpos()
    while not scanner.full:
        line = transaction.body_getline()
        if line is None:
            break
        scanner.feed(line.decode("latin-1").rstrip("\r\n"))
    scanner.finish()
    transaction.body_resetpos()
    for host in scanner.skipped:
        self.log(LOGINFO, f"skipping whitelisted URI domain {host}")
    if scanner.full:
        self.log(LOGINFO, f"stopped at {scanner.limit} names")
    self.log(LOGDEBUG, f"names: {', '.join(scanner.names)}")
    return list(scanner.names)


class Scanner:
    """Collects URI hosts and addresses from lines of text."""

    def __init__(self, suffixes, whitelist, checkip, limit):
        import re
        self.suffixes = suffixes
        self.whitelist = {entry.strip().lower() for entry in whitelist if entry.strip()}
        self.checkip = checkip
        self.limit = max(1, limit)
        self.names = {}
        self.skipped = []
        self.pending = []
        self.re = re
        self.integer_ip = re.compile(r"\w{3,16}:/+(?:\S+@)?(\d{7,})(?::\d*)?(?=[/?\s]|$)")
        self.dotted_ip = re.compile(r"\w{3,16}:/+(?:\S+@)?((?:\d+|0[xX][0-9A-Fa-f]+)(?:\.(?:\d+|0[xX][0-9A-Fa-f]+)){3})")
        self.hostname = re.compile(r"(?<![\w.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:xn--[a-z0-9-]+|[a-z]{2,63}))(?!\w)",
                                   re.IGNORECASE)

    @property
    def full(self):
        return len(self.names) >= self.limit

    def feed(self, line):
        if line.endswith("="):
            self.pending.append(line[:-1])
            return
        if self.pending:
            line = "".join(self.pending) + line
            self.pending = []
        self.scan(line)

    def finish(self):
        if self.pending:
            line, self.pending = "".join(self.pending), []
            self.scan(line)

    def scan(self, line):
        re = self.re
        line = re.sub(r"[=%]([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), line)
        line = re.sub(r"&#(\d{2,3});?", lambda m: chr(int(m.group(1))) if int(m.group(1)) < 256 else "", line)
        line = line.replace(";", "")
        if self.checkip:
            for match in self.integer_ip.finditer(line):
                value = int(match.group(1)) & 0xFFFFFFFF
                self.add(".".join(str((value >> shift) & 0xFF) for shift in (0, 8, 16, 24)))
            for match in self.dotted_ip.finditer(line):
                octets = [_octet(part) for part in match.group(1).split(".")]
                if all(0 <= octet <= 255 for octet in octets):
                    self.add(".".join(str(octet) for octet in reversed(octets)))
        for match in self.hostname.finditer(line):
            self.add_host(match.group(1).lower())

    def add_host(self, host):
        tld = host.rsplit(".", 1)[-1]
        if self.suffixes.tlds:
            if not self.suffixes.is_tld(tld):
                return
        elif not (len(tld) == 2 or tld in FALLBACK_TLDS):
            return
        registrable = self.suffixes.registrable_domain(host)
        if registrable is None:
            return
        if registrable in self.whitelist:
            if host not in self.skipped:
                self.skipped.append(host)
            return
        labels = host.split(".")
        for start in range(len(labels) - registrable.count(".")):
            self.add(".".join(labels[start:]))

    def add(self, name):
        if not self.full and name not in self.names:
            self.names[name] = True


def _octet(text):
    if text.lower().startswith("0x"):
        return int(text, 16)
    if len(text) > 1 and text.startswith("0") and set(text) <= set("01234567"):
        return int(text, 8)
    return int(text)


# -- looking up -------------------------------------------------------------------

def lookup(self, names, zones):
    """[(action, description)] for every listed (name, zone)."""
    resolver = dns.for_hook(self)
    pairs = [(name, zone) for name in names for zone in zones if dns.valid_name(f"{name}.{zone}")]
    results = resolver.many([(f"{name}.{zone}", "A") for name, zone in pairs])
    listed = []
    failed = 0
    for (name, zone), result in zip(pairs, results):
        if result.temporary:
            failed += 1
        elif result.found and evaluate(zones[zone][0], result.answers):
            listed.append((name, zone, result.answers[0]))
    if failed:
        self.log(LOGERROR, f"{failed} of {len(pairs)} lookups failed: {results[0].error if results else ''}")
    reasons = resolver.many([(f"{name}.{zone}", "TXT") for name, zone, _a in listed])
    self.log(LOGINFO, f"{len(pairs)} lookups, {len(listed)} match{'es' if len(listed) != 1 else ''}")
    matches = []
    for (name, zone, address), txt in zip(listed, reasons):
        reason = " ".join(txt.answers[0].split()) if txt.found else address
        matches.append((zones[zone][1], f"{name} in {zone}: {reason}"))
    return matches


def evaluate(mask, answers):
    for answer in answers:
        parts = answer.split(".")
        if len(parts) == 4 and all(part.isdigit() for part in parts):
            value = 0
            for part in parts:
                value = (value << 8) | (int(part) & 0xFF)
            if value & mask:
                return True
    return False
