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

## Where it runs

Under `qpsmtpd.py --listen` (the forkserver) it runs in the parent's
`pre-connection` hook, as in qpsmtpd's forking daemons: a refused client
gets `550 <text>` / `451 <text>` before any process is forked for it, and
the per-IP limit applies — more than `--max-from-ip` (default 5)
concurrent sessions from one address get

    451 too many connections from 192.0.2.7, try again later

Under tcpserver, xinetd or systemd (one process per connection) there is
no such hook: the plugin runs in the `connect` hook instead (the client is
refused before it gets a greeting, with the same answer), and the per-IP
limit belongs to the super-server (`tcpserver -c` / tcprules, xinetd
`per_source`, systemd `MaxConnectionsPerSource=`).

## Arguments

None.

## Config files

`hosts_allow`.
"""

from qpsmtpd.constants import DECLINED, DENYSOFT, LOGWARN, LOGINFO, LOGDEBUG, return_code
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_pre_connection(self, transaction, remote_ip="", max_conn_ip=0, child_addrs=(), **_facts):
    if max_conn_ip:
        connections = 1 + sum(1 for address in child_addrs if address == remote_ip)
        if connections > max_conn_ip:
            message = f"too many connections from {remote_ip}"
            self.log(LOGINFO, f"fail: {message} ({connections} > {max_conn_ip})")
            return DENYSOFT, f"{message}, try again later"
    result = self.in_hosts_allow(remote_ip)
    if result:
        return result
    self.log(LOGDEBUG, "pass")
    return DECLINED


def hook_connect(self, transaction):
    if self.qp.forkserver:  # already decided in the parent, before the fork
        return DECLINED
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
