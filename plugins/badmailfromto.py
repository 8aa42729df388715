"""# badmailfromto — refuse given sender/recipient pairs

Each line of `config/badmailfromto` holds a sender and a recipient,
separated by whitespace:

    stalker@example.net    victim@example.com
    @spam.example          boss@example.com

When the envelope sender matches the first column (an address, or `@host`
for every sender at that host, case-insensitive) and a recipient matches
the second column of the same line, that recipient is refused at RCPT with

    550 mail to victim@example.com not accepted here

as if the mailbox did not exist, so the sender cannot tell that they are
blocked.  Other recipients of the same message are accepted.

## Arguments

`loglevel N`.

## Config files

`badmailfromto`.
"""

from qpsmtpd.constants import DENY, DECLINED, LOGWARN, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_mail(self, transaction, sender, params=None):
    lines = self.qp.config("badmailfromto")
    if not self.sender_is_checkable(sender, lines):
        return DECLINED
    host = sender.host.lower()
    sender_text = f"{sender.user.lower()}@{host}"
    listed = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        bad = parts[0].lower()
        if "@" not in bad:
            self.log(LOGWARN, f"bad config, no @ sign in {bad}")
            continue
        if bad == sender_text or (bad.startswith("@") and bad == "@" + host):
            listed.append(bad)
    if listed:
        transaction.notes["badmailfromto"] = listed
    return DECLINED


def hook_rcpt(self, transaction, recipient, params=None):
    listed = transaction.notes.get("badmailfromto")
    if not listed or not recipient.user or not recipient.host:
        self.log(LOGDEBUG, "pass, sender not listed")
        return DECLINED
    to = f"{recipient.user.lower()}@{recipient.host.lower()}"
    for line in self.qp.config("badmailfromto"):
        parts = line.split()
        if len(parts) < 2:
            continue
        if parts[0].lower() in listed and parts[1].lower() == to:
            self.log(LOGINFO, f"fail, {parts[0].lower()} may not send to {to}")
            return DENY, f"mail to {to} not accepted here"
    self.log(LOGDEBUG, "pass, recipient not listed")
    return DECLINED
