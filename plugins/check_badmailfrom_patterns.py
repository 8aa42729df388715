"""# check_badmailfrom_patterns — the old plugin: refuse senders matching `config/badmailfrom_patterns`

The Perl qpsmtpd's `check_badmailfrom_patterns` (merged into
`badmailfrom` in 0.94), kept so that old configurations load unchanged.
Each line of `config/badmailfrom_patterns` is a regular expression,
optionally whitespace and the reply text, matched (case-sensitively,
unanchored) against the lower-cased `user@host` of the sender:

    ^streamsendbouncer@.*\\.mailengine1\\.com$    Your right-hand side VERP doesn't fool me
    ^admin.*\\.ppoonn400\\.com$

As the old plugin did, MAIL is accepted and every RCPT of that
transaction is refused with `550 <text>` (default: `Your envelope sender
is in my badmailfrom_patterns list`).  The null sender `<>` is never
checked.  A line that is not a valid regular expression is logged and
skipped.

New configurations: put these lines into `config/badmailfrom` and use
`badmailfrom`.  Loading this plugin logs that once, at LOGNOTICE.

## Arguments

`loglevel N`.

## Config files

`badmailfrom_patterns`.
"""

from qpsmtpd.args import Arguments
from qpsmtpd.constants import DECLINED, DENY, LOGINFO, LOGNOTICE
from qpsmtpd.plugin import Plugin

DEFAULT_RESPONSE = "Your envelope sender is in my badmailfrom_patterns list"
NOTE = "badmailfrom_patterns"


class CheckBadmailfromPatterns(Plugin):
    arguments = Arguments()

    def init(self, qp, *args):
        qp.log(LOGNOTICE, "plugin check_badmailfrom_patterns is an old plugin: its patterns belong in "
                          "config/badmailfrom, read by badmailfrom (docs/migration.md)")

    def hook_mail(self, transaction, sender, params=None):
        if not sender or sender.format() == "<>" or not sender.host:
            return DECLINED
        found = self.first_matching_line("badmailfrom_patterns", f"{sender.user or ''}@{sender.host}".lower())
        if found:
            pattern, response = found
            transaction.notes[NOTE] = response or DEFAULT_RESPONSE
            self.log(LOGINFO, f"fail: pattern {pattern}")
        return DECLINED

    def hook_rcpt(self, transaction, recipient, params=None):
        response = transaction.notes.get(NOTE)
        if response:
            return DENY, response
        return DECLINED
