"""# helo — check the name the client gives in HELO/EHLO

Runs a list of tests on the HELO/EHLO argument, chosen by the `policy`
argument, and refuses the greeting at the first test that fails.  Every
message also gets an `X-HELO: <name>` header (any X-HELO the client sent
is removed).

## Tests

* **is_in_badhelo** — the name is listed in `config/badhelo` (case-insensitive):
  `I do not believe you are <name>.`  A line containing one of
  `{ } [ ] ( ) ^ $ | * + ? \\ !` is a regular expression; a leading `!`
  negates it (the name must *not* match).  A pattern match answers
  `Your HELO hostname is not allowed`.
* **invalid_localhost** — `localhost` from a client that is not on a
  loopback address: `You are not localhost`.
* **is_forged_literal** — an address literal (`[192.0.2.1]`,
  `[IPv6:2001:db8::1]`) that is not the client's own IP:
  `Forged IPs not accepted here`.
* **is_plain_ip** — a bare IP address instead of a name or a literal:
  `Plain IP is invalid HELO hostname (RFC 2821)`.
* **is_not_fqdn** — no dot in the name: `HELO name is not fully qualified.
  Read RFC 2821`; characters other than letters, digits, `-` and `.`:
  `HELO name contains invalid FQDN characters. Read RFC 1035`.
* **is_address_literal** — any valid address literal:
  `RFC 2821 allows an address literal, but we do not`.
* **no_forward_dns** — the name has no A/AAAA record: `HELO hostname does
  not exist` (NXDOMAIN) or `HELO hostname did not resolve`.
* **no_reverse_dns** — the client's address has no PTR record:
  `no reverse DNS for <ip>`.
* **no_matching_dns** — neither does the name point to the client's
  address (or its /24, /96 for IPv6), nor does the client's PTR name equal
  the HELO name (or share its last two labels): `That HELO hostname fails
  FCrDNS`.  A full match raises karma by one.
  The three DNS lookups are sent together; a DNS failure (timeout,
  SERVFAIL) skips the test instead of rejecting.

`0.0.0.0` and IPv4 addresses containing `255` are not treated as IP
addresses, as in qpsmtpd.

## Arguments

* `policy lenient` (default) — is_in_badhelo, invalid_localhost,
  is_forged_literal, is_plain_ip;
* `policy rfc` — lenient + is_not_fqdn, no_forward_dns, no_reverse_dns;
* `policy strict` — rfc + is_address_literal, no_matching_dns;
* `reject 1` (default) | `0` | `naughty`;
* `reject_type disconnect` (default) | `perm` | `temp` | `temp_disconnect` —
  by default the client gets `550 <reason>` and is disconnected;
* `timeout N` / `dns_timeout N` — seconds for the DNS tests (default 5);
* `loglevel N`.

Relay clients and whitelisted hosts are not checked.  A failed test costs
1 karma, a missing name 2.

## Config files

`badhelo`.

## Example

    helo policy lenient
    helo policy rfc reject naughty
"""

from qpsmtpd.constants import DECLINED, LOGERROR, LOGWARN, LOGNOTICE, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    Option("policy", default="lenient", choices=("lenient", "rfc", "strict"), help="which tests run"),
    reject_option(default=1), reject_type_option(default="disconnect"),
    Option("dns_timeout", kind="float", minimum=0, help="seconds for the DNS tests (default 5)"),
    Option("timeout", kind="float", minimum=0, help="the same as dns_timeout"),
)


LENIENT_TESTS = ["is_in_badhelo", "invalid_localhost", "is_forged_literal", "is_plain_ip"]
RFC_TESTS = ["is_not_fqdn", "no_forward_dns", "no_reverse_dns"]
STRICT_TESTS = ["is_address_literal", "no_matching_dns"]
REGEXP_CHARS = frozenset("{}[]()^$|*+?\\!")
IPV4_CHARS = frozenset("0123456789.")


def register(self, qp, *args):
    self.opts["dns_timeout"] = self.opts["dns_timeout"] or self.opts["timeout"] or 5.0
    self.populate_tests()
    self.register_hook("helo", "helo_handler")
    self.register_hook("ehlo", "helo_handler")
    self.register_hook("data_post", "data_post_handler")


def populate_tests(self):
    policy = self.opts["policy"]
    tests = list(LENIENT_TESTS)
    if policy in ("rfc", "strict"):
        tests += RFC_TESTS
    if policy == "strict":
        tests += STRICT_TESTS
    if policy not in ("lenient", "rfc", "strict"):
        self.log(LOGWARN, f"unknown policy {policy}, using lenient")
    self.helo_tests = tests


def helo_handler(self, transaction, host=None, *rest):
    if not host:
        self.log(LOGINFO, "fail, tolerated, no helo host")
        self.adjust_karma(-2)
        return DECLINED
    if self.is_immune():
        return DECLINED
    for name in self.helo_tests:
        test = getattr(self, name, None)
        if test is None:
            self.log(LOGINFO, f"skip, {name} needs DNS support")
            continue
        error = test(host)
        if error:
            self.adjust_karma(-1)
            return self.get_reject(*error)
    self.log(LOGINFO, "pass")
    return DECLINED


def data_post_handler(self, transaction):
    transaction.header.delete("X-HELO")
    transaction.header.add("X-HELO", self.connection.hello_host, 0)
    return DECLINED


def is_in_badhelo(self, host):
    error = f"I do not believe you are {host}."
    host = host.lower()
    for bad in self.qp.config("badhelo"):
        if not REGEXP_CHARS.isdisjoint(bad) and self.is_regex_match(host, bad):
            return "Your HELO hostname is not allowed", f"badhelo pattern match ({bad})"
        if host == bad.lower():
            return error, "in badhelo"
    return None


def is_regex_match(self, host, pattern):
    import re  # only for badhelo patterns

    negate = pattern.startswith("!")
    if negate:
        pattern = pattern[1:]
    try:
        found = re.search(pattern, host)
    except re.error as problem:
        self.log(LOGWARN, f"invalid badhelo pattern {pattern}: {problem}")
        return False
    return not found if negate else bool(found)


def invalid_localhost(self, host):
    if is_localhost(self.connection.remote_ip):
        self.log(LOGDEBUG, "pass, is localhost")
        return None
    if host.lower() != "localhost":
        self.log(LOGDEBUG, "pass, host is not localhost")
        return None
    return "You are not localhost", "invalid localhost"


def is_plain_ip(self, host):
    if not is_valid_ip(host):
        return None
    self.log(LOGDEBUG, "fail, plain IP")
    return "Plain IP is invalid HELO hostname (RFC 2821)", "plain IP"


def is_address_literal(self, host):
    literal = literal_ip(host)
    if literal is None or not is_valid_ip(literal):
        return None
    self.log(LOGDEBUG, "fail, bracketed IP")
    return "RFC 2821 allows an address literal, but we do not", "bracketed IP"


def is_forged_literal(self, host):
    literal = literal_ip(host)
    if literal is None or not is_valid_ip(literal):
        return None
    if same_ip(literal, self.connection.remote_ip):
        return None
    return "Forged IPs not accepted here", "forged IP literal"


def is_not_fqdn(self, host):
    import re  # the rfc and strict policies only

    if re.fullmatch(r"\[(\d{1,3}\.){3}\d{1,3}\]", host):
        return None
    if "." not in host:
        return "HELO name is not fully qualified. Read RFC 2821", "not FQDN"
    if re.search(r"[^a-zA-Z0-9\-.]", host):
        return "HELO name contains invalid FQDN characters. Read RFC 1035", "invalid FQDN chars"
    return None


def literal_ip(host):
    """The IP inside `[...]` (an `IPv6:` tag removed), or None."""
    if len(host) < 2 or host[0] != "[" or host[-1] != "]":
        return None
    inner = host[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    return None if "]" in inner else inner


def is_localhost(ip):
    if not ip:
        return False
    return ip.startswith("127.") or ":127." in ip or ip == "::1"


def is_valid_ip(text):
    if ":" not in text and not IPV4_CHARS.issuperset(text):
        return False  # a host name: no need to load ipaddress
    import ipaddress

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.version == 4:
        return text != "0.0.0.0" and "255" not in text
    return True


def same_ip(first, second):
    import ipaddress

    try:
        return ipaddress.ip_address(first) == ipaddress.ip_address(second)
    except ValueError:
        return first == second


# -- DNS tests of the rfc and strict policies ---------------------------------

def helo_dns(self, host):
    """A, AAAA of the name and PTR of the client, asked together once per HELO."""
    from qpsmtpd import dns
    budget = self.opts["dns_timeout"]
    ptr = dns.ptr_name(self.connection.remote_ip) or "invalid."
    return dns.for_hook(self, budget).many([(host, "A"), (host, "AAAA"), (ptr, "PTR")])


def no_forward_dns(self, host):
    if literal_ip(host) is not None or is_valid_ip(host):
        return None
    notes = self.connection.notes
    notes["helo_forward_match"] = notes["helo_reverse_match"] = False
    a, aaaa, _ptr = self.helo_dns(host)
    addresses = a.answers + aaaa.answers
    if not addresses:
        if a.nxdomain:
            return "HELO hostname does not exist", "no such host"
        if a.temporary or aaaa.temporary:
            self.log(LOGERROR, f"skip, query failed ({a.error or aaaa.error})")
            return None
        return "HELO hostname did not resolve", "no forward DNS"
    for address in addresses:
        if self.check_ip_match(address):
            break
    self.log(LOGDEBUG, "pass, forward DNS")
    return None


def no_reverse_dns(self, host):
    ip = self.connection.remote_ip
    _a, _aaaa, ptr = self.helo_dns(host)
    if ptr.temporary:
        self.log(LOGINFO, f"skip, error getting reverse DNS for {ip} ({ptr.error})")
        return None
    if not ptr.found:
        return f"no reverse DNS for {ip}", "no rDNS"
    for name in ptr.answers:
        self.log(LOGDEBUG, f"PTR: {name}")
        self.check_name_match(name, host.lower().rstrip("."))
    return None


def no_matching_dns(self, host):
    notes = self.connection.notes
    if any(result.temporary for result in self.helo_dns(host)):
        self.log(LOGINFO, "skip, DNS failure")
        return None
    forward, reverse = notes.get("helo_forward_match"), notes.get("helo_reverse_match")
    if forward and reverse:
        self.log(LOGDEBUG, "forward and reverse match")
        self.adjust_karma(1)
        return None
    if forward or reverse:
        self.log(LOGDEBUG, "name matches IP" if forward else "reverse matches name")
        return None
    self.log(LOGINFO, "fail, no forward or reverse DNS match")
    return "That HELO hostname fails FCrDNS", "no matching DNS"


def check_ip_match(self, address):
    """Same address, or same /24 (IPv4) or /96 (IPv6) as the client."""
    import ipaddress
    try:
        found = ipaddress.ip_address(address)
        client = ipaddress.ip_address(self.connection.remote_ip)
    except ValueError:
        return False
    if found == client:
        self.log(LOGDEBUG, "forward ip match")
    elif found.version == client.version and \
            found in ipaddress.ip_network(f"{client}/{24 if client.version == 4 else 96}", strict=False):
        self.log(LOGNOTICE, "forward network match")
    else:
        return False
    self.connection.notes["helo_forward_match"] = True
    return True


def check_name_match(self, dns_name, helo_name):
    """Same name, or same last two labels."""
    if dns_name.count(".") < 1:
        return
    if dns_name == helo_name:
        self.log(LOGDEBUG, "reverse name match")
    elif dns_name.split(".")[-2:] == helo_name.split(".")[-2:]:
        self.log(LOGNOTICE, "reverse domain match")
    else:
        return
    self.connection.notes["helo_reverse_match"] = True
