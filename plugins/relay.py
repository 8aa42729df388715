"""# relay — decide whether the client may relay

At connect time the client's IP is looked up, in this order:

1. `config/norelayclients` — a match here turns relaying off, even if a
   later source would allow it (and `$RELAYCLIENT` is ignored);
2. the `RELAYCLIENT` environment variable (set by tcpserver rules) — relay;
3. `config/relayclients` — relay when the IP matches a line;
4. `config/morerelayclients.cdb` — relay when a key matches.

A relay client may send to any domain (`rcpt_ok` and the policy plugins
skip it, see `is_immune`).  The plugin sets `connection.relay_client` and
the connection note `relayclient`.

## Line formats

* a full address: `192.0.2.7`, `2001:db8::7` (any IPv6 spelling);
* a prefix ending in a dot or colon, matching whole networks:
  `192.168.42.`, `2001:db8:e431:ae06:` (groups with or without leading zeros);
* `relayclients` only: a CIDR block, `10.1.0.0/24`, `2001:db8:e431:ae06::/64`
  (the network and broadcast addresses included).

`::1` (IPv6 localhost) may always relay, as in qpsmtpd.
`norelayclients` and `morerelayclients` keys take full addresses and prefixes.

## Arguments

`only 1` — relay-only mode: every recipient from a client that may not
relay is refused (`550 relaying denied`); relay clients' recipients are
accepted without asking later rcpt plugins.  Put the plugin before the
other rcpt plugins then.

## Config files

`relayclients`, `morerelayclients.cdb`, `norelayclients`.

## Example

    relay
    relay only 1
"""

from qpsmtpd.constants import OK, DENY, DECLINED, LOGERROR, LOGWARN, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("only", kind="bool", default=False, help="refuse every recipient of clients that may not relay"),
)


def register(self, qp, *args):
    if len(args) % 2:
        self.log(LOGERROR, "Bad arguments")
    if self.opts["only"]:
        self.register_hook("rcpt", "relay_only")


def _candidates(ip):
    """The strings an IP may be listed as: itself and its dot/colon prefixes."""
    found = [ip]
    parsed = None
    if ":" in ip:  # only IPv6 needs the ipaddress module
        import ipaddress

        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            pass
    if parsed is not None and parsed.version == 6:
        exploded = parsed.exploded
        groups = exploded.split(":")
        short = [group.lstrip("0") or "0" for group in groups]
        found += [parsed.compressed, exploded]
        for size in range(len(groups) - 1, 0, -1):
            found.append(":".join(groups[:size]) + ":")
            found.append(":".join(short[:size]) + ":")
        text = exploded
        while text:
            text = text[:-1].rstrip(":")
            if text:
                found.append(text)
        return found
    text = ip
    while True:
        stripped = _strip_octet(text)
        if stripped is None or stripped == text:
            break
        text = stripped
        if text:
            found.append(text)
    return found


def _strip_octet(text):
    """`192.0.2.1` -> `192.0.2.`, `192.0.2.` -> `192.0.`; None when no octet ends the text."""
    end = len(text) - 1 if text.endswith(".") else len(text)
    start = end
    while start > 0 and text[start - 1] in "0123456789":
        start -= 1
    return text[:start] if start < end else None


def _normalize(entry):
    entry = entry.strip().lower()
    if ":" not in entry:
        return entry  # IPv4 addresses and prefixes are compared as written
    import ipaddress

    try:
        return ipaddress.ip_address(entry).compressed
    except ValueError:
        return entry


def is_in_norelayclients(self):
    ip = self.connection.remote_ip
    listed = {_normalize(line.split()[0]) for line in self.qp.config("norelayclients") if line.split()}
    for candidate in _candidates(ip):
        if candidate.lower() in listed:
            self.log(LOGINFO, f"{candidate} in norelayclients")
            return True
    self.log(LOGDEBUG, "no match in norelayclients")
    return False


def is_in_cidr_block(self, blocks):
    if not blocks:
        return False
    import ipaddress

    ip = self.connection.remote_ip
    if not ip:
        self.log(LOGINFO, "err, no remote_ip?")
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for block in blocks:
        try:
            network = ipaddress.ip_network(block, strict=False)
        except ValueError:
            self.log(LOGWARN, f"invalid CIDR block in relayclients: {block}")
            continue
        if address.version == network.version and address in network:
            self.log(LOGINFO, f"pass, cidr match ({ip})")
            return True
    self.log(LOGDEBUG, "no cidr match")
    return False


def is_octet_match(self, octets):
    ip = self.connection.remote_ip
    if ip == "::1":
        self.log(LOGINFO, f"pass, octet matched localhost ({ip})")
        return True
    more = self.qp.config("morerelayclients", "map")
    for candidate in _candidates(ip):
        if candidate.lower() in octets:
            self.log(LOGINFO, f"pass, octet match in relayclients ({candidate})")
            return True
        if candidate in more or candidate.encode() in more:
            self.log(LOGINFO, f"pass, octet match in morerelayclients ({candidate})")
            return True
    self.log(LOGDEBUG, "no octet match")
    return False


def populate_relayclients(self):
    blocks, octets = [], set()
    client_is_ipv6 = ":" in (self.connection.remote_ip or "")
    for line in self.qp.config("relayclients"):
        entry = line.split()[0] if line.split() else ""
        if "/" in entry:
            blocks.append(entry)
        elif entry:
            # an IPv6 entry can only match an IPv6 client: normalise only then
            octets.add(_normalize(entry) if client_is_ipv6 else entry.lower())
    return blocks, octets


def set_relay(self, allowed):
    self.connection.relay_client = bool(allowed)
    self.connection.notes["relayclient"] = 1 if allowed else 0


def hook_connect(self, transaction):
    import os

    if self.is_in_norelayclients():
        self.set_relay(False)
        os.environ.pop("RELAYCLIENT", None)
        self.log(LOGINFO, "fail, disabled by norelayclients")
        return DECLINED
    if "RELAYCLIENT" in os.environ:
        self.set_relay(True)
        self.log(LOGINFO, "pass, enabled by env")
        return DECLINED
    blocks, octets = self.populate_relayclients()
    if self.is_in_cidr_block(blocks) or self.is_octet_match(octets):
        self.set_relay(True)
        return DECLINED
    self.log(LOGINFO, "skip, no match")
    return DECLINED


def relay_only(self, transaction, recipient, params=None):
    if self.connection.relay_client:
        return OK
    return DENY
