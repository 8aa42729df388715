"""# rcpt_ok — accept mail only for the domains this host receives for

Works like qmail's `rcpthosts`: a recipient is accepted when its domain

* is listed in `config/rcpthosts` (case-insensitively), or is a subdomain of
  an entry that starts with a dot (`.example.com` accepts `mx.example.com`),
* is a key of `config/morercpthosts.cdb` (built with `qmail-newmrh`),
* is `config/me` (always accepted, as qmail-smtpd does for `me`).

A bare `<postmaster>` or `<abuse>` (no domain) counts as mail for `me`; any
other recipient without a domain is left to the following plugins.  A
recipient at an address literal of this server (`user@[192.0.2.25]`, the
local IP of the connection) counts as mail for `config/localiphost`
(default: `me`), as in qmail.

Relay clients and whitelisted hosts or senders (see `is_immune`) may send
to any domain.  Every other recipient gets

    550 Relaying denied (#5.7.1)

## Arguments

None besides the common `loglevel N`.

## Config files

`rcpthosts`, `morercpthosts.cdb`, `me`, `localiphost`.

## Example

    # config/plugins: rcpt_ok comes last among the rcpt plugins
    badrcptto
    rcpt_ok
"""

from qpsmtpd import dsn
from qpsmtpd.constants import OK, LOGINFO
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_rcpt(self, transaction, recipient, params=None):
    if self.is_immune():
        return OK
    host = self.get_rcpt_host(recipient)
    if not host:
        return OK
    if self.is_in_rcpthosts(host) or self.is_in_morercpthosts(host):
        return OK
    return dsn.relaying_denied()


def is_in_rcpthosts(self, host):
    for allowed in self.qp.config("me") + self.qp.config("rcpthosts"):
        allowed = allowed.strip().lower()
        if not allowed:
            continue
        if host == allowed:
            self.log(LOGINFO, f"pass: {host} in rcpthosts")
            return True
        if allowed.startswith(".") and host.endswith(allowed):
            self.log(LOGINFO, f"pass: {host} in rcpthosts as {allowed}")
            return True
    return False


def is_in_morercpthosts(self, host):
    more = self.qp.config("morercpthosts", "map")
    if host in more:
        self.log(LOGINFO, f"pass: {host} found in morercpthosts")
        return True
    self.log(LOGINFO, f"fail: {host} not in morercpthosts")
    return False


def get_rcpt_host(self, recipient):
    if not recipient:
        return None
    if recipient.host:
        host = recipient.host.lower()
        local_ip = self.connection.local_ip
        if local_ip and host in (f"[{local_ip}]", f"[ipv6:{local_ip}]".lower()):
            return str(self.qp.config_value("localiphost") or self.qp.config_value("me", "")).lower()
        return host
    user = (recipient.user or "").lower()
    if user in ("postmaster", "abuse"):
        return str(self.qp.config_value("me", "")).lower()
    return None
