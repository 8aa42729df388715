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

Relay clients (`relay`, SMTP AUTH: see `is_relay_client`) may send to any
domain.  Whitelisting (`whitelist`, `dns_whitelist_soft`) does not let a
recipient in: it only skips checks.  A local part with routing characters
(`"a@b"@local`, `a%b@local`, `b!a@local`) is not mail for a local domain
either (many next hops relay it onwards).  Every other recipient gets

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
    if self.is_relay_client():
        self.log(LOGINFO, "pass, relay client")
        return OK
    host = self.recipient_domain(recipient)
    if not host:
        return OK
    if self.is_local_recipient(recipient):
        return OK
    return dsn.relaying_denied()
