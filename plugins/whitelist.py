"""# whitelist — exempt trusted hosts, greetings, senders and recipients

Marks connections, greetings, senders and recipients listed in its config
files, so that later plugins skip their checks for them (`is_immune` skips
whitelisted hosts and senders).  A match also answers OK for that stage,
so the plugins listed after `whitelist` in the same hook do not run:
list it before the plugins it should override.

| config file | checked at | note set | matches |
| --- | --- | --- | --- |
| `whitelisthosts` | connect | connection `whitelisthost` | an IP, the start of one (`192.168.`), or a network (`10.0.0.0/8`, `2001:db8::/32`) |
| `$WHITELISTCLIENT` (environment, e.g. from tcprules) | connect | connection `whitelistclient` | — |
| `whitelisthelo` | HELO/EHLO | connection `whitelisthelo` | the HELO name (case-insensitive) |
| `whitelistsenders` | MAIL | transaction `whitelistsender` | the sender address or its domain |
| `whitelistrcpt` | RCPT | transaction `whitelistrcpt` (count of such recipients) | the recipient address or its domain |

At RCPT (`whitelistrcpt`, and every check with `per_recipient`) a match
answers OK only for a recipient in a local domain (`me`, `rcpthosts`,
`morercpthosts.cdb`, no routing characters in the local part) or for a
relay client; for any other recipient it answers DECLINED and `rcpt_ok`
decides: whitelisting skips checks, it never lets mail relay.

A whitelisted host or client gains 5 karma.  The sender and recipient
marks belong to the message: the next MAIL starts without them.

## Arguments

* `per_recipient 1` — do all checks at RCPT, with the recipient's own
  lists (via `user_config`) added to the global ones; a match accepts that
  recipient (the `whitelistsender` mark goes into the recipient's notes,
  not the transaction's, so it does not cover the other recipients);
* `merge 0` — with `per_recipient`, use only the recipient's lists when it
  has them;
* `loglevel N`.

Whitelisting by DNS is done by `dns_whitelist_soft`: it sets the
`whitelisthost` note for clients listed in `whitelist_zones`.  With
`dns_whitelist_soft` listed before `whitelist`, such a client is treated
here as one of `whitelisthosts` (OK at connect, without the karma bonus;
not with `per_recipient`).

## Example

    whitelist
    whitelist per_recipient 1 merge 0
"""

from qpsmtpd.constants import OK, DECLINED, LOGCRIT, LOGDEBUG, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("per_recipient", kind="bool", default=False, help="do every check at RCPT, per recipient"),
    Option("merge", kind="bool", default=True, help="with per_recipient: add the global lists"),
)


def register(self, qp, *args):
    self.per_recipient = self.opts["per_recipient"]
    self.merge = self.opts["merge"]
    self.helo_name = None
    if not self.per_recipient:
        self.register_hook("connect", "check_host")
        self.register_hook("helo", "check_helo")
        self.register_hook("ehlo", "check_helo")
        self.register_hook("mail", "check_sender")
        self.register_hook("rcpt", "check_rcpt")
        return
    self.register_hook("rcpt", "check_host")
    self.register_hook("helo", "helo_helper")
    self.register_hook("ehlo", "helo_helper")
    self.register_hook("rcpt", "check_helo")
    self.register_hook("rcpt", "check_sender")
    self.register_hook("rcpt", "check_rcpt")


def lines(self, name, rcpt=None):
    """Global lines of `name`; with a recipient, its own lines (merged or instead)."""
    global_lines = self.qp.config(name)
    if rcpt is None:
        return global_lines
    code, *values = self.qp.run_hooks_no_respond("user_config", rcpt, name)
    own = []
    if code == OK:
        for value in values:
            own.extend(value if isinstance(value, (list, tuple)) else [value])
    if not own:
        return global_lines
    return own + [line for line in global_lines if line not in own] if self.merge else own


def check_host(self, transaction, rcpt=None, *args):
    import ipaddress
    import os

    ip = self.connection.remote_ip
    if not ip:
        return DECLINED
    if not self.per_recipient and self.connection.notes.get("whitelisthost"):
        self.log(LOGCRIT, f"pass, {ip} is whitelisted in DNS")
        return OK
    if "WHITELISTCLIENT" in os.environ:
        self.connection.notes["whitelistclient"] = 1
        self.log(LOGCRIT, f"pass, {ip} is whitelisted client")
        self.adjust_karma(5)
        return self.verdict(rcpt if self.per_recipient else None)
    for entry in self.lines("whitelisthosts", rcpt if self.per_recipient else None):
        if entry == ip or ip.startswith(entry):
            self.connection.notes["whitelisthost"] = 1
            self.log(LOGCRIT, f"pass, {ip} is a whitelisted host")
            self.adjust_karma(5)
            return self.verdict(rcpt if self.per_recipient else None)
        try:
            inside = ipaddress.ip_address(ip) in ipaddress.ip_network(entry, strict=False)
        except (ValueError, TypeError):
            inside = False
        if inside:
            self.connection.notes["whitelisthost"] = 1
            self.log(LOGCRIT, f"pass, {ip} is in a whitelisted block")
            self.adjust_karma(5)
            return self.verdict(rcpt if self.per_recipient else None)
    self.log(LOGDEBUG, f"skip: {ip} is not whitelisted")
    return DECLINED


def helo_helper(self, transaction, helo=None, *args):
    self.helo_name = helo
    return DECLINED


def check_helo(self, transaction, helo=None, *args):
    rcpt = None
    if self.per_recipient:
        rcpt, helo = helo, self.helo_name
    for entry in self.lines("whitelisthelo", rcpt):
        if helo and entry.lower() == helo.lower():
            self.connection.notes["whitelisthelo"] = 1
            self.log(LOGCRIT, f"helo host {helo} in whitelisthelo")
            return self.verdict(rcpt)
    return DECLINED


def check_sender(self, transaction, sender=None, *args):
    rcpt = None
    if self.per_recipient:
        rcpt, sender = sender, transaction.sender
    if sender is None or sender.format() == "<>" or not sender.host:
        return DECLINED
    address, host = sender.address.lower(), sender.host.lower()
    for entry in self.lines("whitelistsenders", rcpt):
        entry = entry.lower()
        if entry in (address, host):
            (rcpt.notes if rcpt is not None else transaction.notes)["whitelistsender"] = 1
            self.log(LOGCRIT, f"envelope sender {address} in whitelistsenders")
            return self.verdict(rcpt)
    return DECLINED


def check_rcpt(self, transaction, rcpt=None, *args):
    if rcpt is None or not rcpt.host:
        return DECLINED
    address, host = rcpt.address.lower(), rcpt.host.lower()
    for entry in self.lines("whitelistrcpt", rcpt if self.per_recipient else None):
        entry = entry.lower()
        if entry in (address, host):
            transaction.notes["whitelistrcpt"] = (transaction.notes.get("whitelistrcpt") or 0) + 1
            self.log(LOGCRIT, f"recipient {address} in whitelistrcpt")
            return self.verdict(rcpt)
    return DECLINED


def verdict(self, rcpt=None):
    """OK for a match; at RCPT only for mail that stays here (or a relay client):
    whitelisting skips checks, it never opens the relay."""
    if rcpt is None or self.is_relay_client() or self.is_local_recipient(rcpt):
        return OK
    self.log(LOGINFO, f"whitelisted, but {rcpt.format()} is not local: the relay check decides")
    return DECLINED
