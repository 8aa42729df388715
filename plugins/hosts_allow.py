"""# hosts_allow — decide from the client's IP whether it may connect

Each line of `config/hosts_allow` holds an IP address or a network
(`address/bits`), a return code, and a text for the client:

    192.168.3.4      DECLINED
    192.168.3.0/24   DENY      Sorry, known spam only source
    2001:db8::/32    DENYSOFT  Not now, try later

The first line that matches the client decides: `DENY` / `DENY_DISCONNECT`
refuse the connection with `550 <text>`, `DENYSOFT` /
`DENYSOFT_DISCONNECT` with `450 <text>`, `OK` accepts the client without
asking the later connect plugins, `DECLINED` stops the search and lets the
other plugins decide.  IPv4 and IPv6 are supported.

## Without a pre-connection hook

qpsmtpd runs this plugin before the greeting in its forking daemons, in
the `pre-connection` hook, which also gets the number of connections the
client already has (`max_conn_ip`).  This server runs one process per
connection under tcpserver/xinetd/systemd, which have no such hook: the
plugin runs in the `connect` hook instead (the client is refused before
it gets a greeting, the answer is the same), and the per-IP connection
limit is not available — use the super-server's own limits instead
(`tcpserver -c` / tcprules, xinetd `per_source`, systemd
`MaxConnectionsPerSource=`).  tcprules (`tcpserver -x`) can also refuse
IPs before this process starts at all.

## Arguments

None.

## Config files

`hosts_allow`.
"""

from qpsmtpd.constants import DECLINED, LOGWARN, LOGINFO, LOGDEBUG, return_code
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_connect(self, transaction):
    result = self.in_hosts_allow(self.connection.remote_ip)
    if result:
        return result
    self.log(LOGDEBUG, "pass")
    return DECLINED


def in_hosts_allow(self, remote):
    import ipaddress

    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        self.log(LOGWARN, f"not an IP address: {remote}")
        return None
    for line in self.qp.config("hosts_allow"):
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        try:
            network = ipaddress.ip_network(parts[0], strict=False)
        except ValueError:
            self.log(LOGWARN, f"invalid network in hosts_allow: {parts[0]}")
            continue
        if network.version != address.version or address not in network:
            continue
        code = return_code(parts[1].upper())
        if not isinstance(code, int):
            code = DECLINED
        message = parts[2] if len(parts) > 2 else ""
        if "DENY" in parts[1].upper():
            self.log(LOGINFO, f"fail, {message}")
        self.log(LOGDEBUG, f"pass, {parts[1]}, {message}")
        return (code, message) if message else code
    return None
