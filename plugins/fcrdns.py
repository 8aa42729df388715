"""fcrdns - forward-confirmed reverse DNS of the client.

When the client connects: the client's address must have PTR records
(reverse DNS), and one of the names must resolve (A/AAAA) back to the
client.  To spare server pools, an address in the same /24 (IPv4) or /64
(IPv6) network as the client counts as a match.  A client that calls
itself `localhost` (TCPREMOTEHOST) must connect from a loopback address.

The result goes into the Authentication-Results header as `iprev=pass`,
`iprev=fail` (names found but none points back), `iprev=permerror` (no
PTR record) or `iprev=temperror` (DNS failure); the connection note
`fcrdns` holds `pass`, `fail`, `permerror` or `temperror`, and
`fcrdns_ptr` the PTR names.  A pass raises karma by one, a failure lowers
it by one.

## Arguments

* `reject 0|1|naughty` (default 0: only karma and the header, as
  qpsmtpd).  With `reject 1` a client without forward-confirmed reverse
  DNS is refused at connect; DNS trouble (temperror) never rejects.
* `reject_type` (default `temp`).
* `timeout N` — seconds all lookups may take (default 5).
* `loglevel N`.

## Reply

    450 Your IP address 192.0.2.26 has no forward-confirmed reverse DNS
"""

from qpsmtpd import dns
from qpsmtpd.constants import DECLINED, LOGNOTICE, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    reject_option(default=0), reject_type_option(default="temp"),
    Option("timeout", kind="float", default=5.0, minimum=0, help="seconds for all lookups"),
)


def hook_connect(self, transaction):
    if self.is_immune():
        return DECLINED
    ip = self.connection.remote_ip
    if is_localhost(ip):
        self.log(LOGINFO, "pass, is localhost")
        return DECLINED
    if not self.localhost_ok() or not self.fqdn_ok():
        return self.finish("fail", ip)
    status = self.check(ip)
    if status == "pass":
        self.log(LOGINFO, "pass")
    return self.finish(status, ip)


def finish(self, status, ip):
    self.connection.notes["fcrdns"] = status
    if status != "pass":
        self.adjust_karma(-1)
    if status in ("pass", "temperror"):
        return DECLINED
    return self.get_reject(f"Your IP address {ip} has no forward-confirmed reverse DNS", status)


def is_localhost(ip):
    return ip.startswith(("127.", "::ffff:127.")) or ip == "::1"


def localhost_ok(self):
    if (self.connection.remote_host or "").lower() == "localhost":
        self.log(LOGINFO, "fail, not localhost")
        return False
    return True


def fqdn_ok(self):
    """qpsmtpd's sanity check of the name tcpserver looked up (if any)."""
    host = self.connection.remote_host or ""
    if not host or host == "Unknown" or host.startswith("["):
        return True
    if "." not in host:
        self.log(LOGINFO, "fail, not FQDN")
        return False
    if not dns.valid_name(host) or "_" in host:
        self.log(LOGINFO, "fail, invalid FQDN chars")
        return False
    return True


def check(self, ip):
    lookup = dns.for_hook(self)
    name = dns.ptr_name(ip)
    if name is None:
        self.log(LOGINFO, f"skip, not an IP address: {ip}")
        return "pass"
    ptr = lookup.lookup(name, "PTR")
    if ptr.temporary:
        self.log(LOGINFO, f"fail, error getting rDNS: {ptr.error}")
        return self.iprev("temperror")
    if not ptr.found:
        self.log(LOGINFO, f"fail, no rDNS ({ptr.status})")
        return self.iprev("permerror")
    hosts = ptr.answers[:10]
    self.connection.notes["fcrdns_ptr"] = hosts
    results = lookup.many([(host, kind) for host in hosts for kind in ("A", "AAAA")])
    addresses = [answer for result in results for answer in result.answers]
    if self.matches(ip, addresses):
        self.adjust_karma(1)
        return self.iprev("pass")
    if not addresses and any(result.temporary for result in results):
        self.log(LOGINFO, "fail, error getting forward DNS")
        return self.iprev("temperror")
    self.log(LOGINFO, "fail, no PTR hosts have forward DNS" if not addresses
             else "fail, forward DNS does not match")
    return self.iprev("fail")


def matches(self, ip, addresses):
    import ipaddress
    client = ipaddress.ip_address(ip)
    if client.version == 6 and client.ipv4_mapped:
        client = client.ipv4_mapped
    network = ipaddress.ip_network(f"{client}/{24 if client.version == 4 else 64}", strict=False)
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address == client:
            self.log(LOGDEBUG, "forward ip match")
            return True
        if address in network:
            self.log(LOGNOTICE, "forward network match")
            return True
    return False


def iprev(self, status):
    self.store_auth_results(f"iprev={status}")
    return status
