"""rcpt_ok - accept mail for the domains this host receives for.

Accepts a recipient whose domain is in `config/rcpthosts` (or a
subdomain of an entry starting with a dot), in `config/morercpthosts.cdb`,
or is `config/me`; the bare `<postmaster>` and `<abuse>` count as `me`.
Relay clients and whitelisted hosts/senders (`is_immune`) may send to any
domain.  Everything else gets `550 Relaying denied (#5.7.1)`.

Arguments: none (the common `loglevel N` is honoured).

Config files: rcpthosts, morercpthosts.cdb, me.

Load it last among the rcpt plugins, like qpsmtpd's rcpt_ok.
"""

from qpsmtpd import dsn


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
        return recipient.host.lower()
    user = (recipient.user or "").lower()
    if user in ("postmaster", "abuse"):
        return self.qp.config_value("me", "").lower()
    return None
