"""# check_badrcptto_patterns — the old plugin: refuse recipients matching `config/badrcptto_patterns`

The Perl qpsmtpd's `check_badrcptto_patterns` (merged into `badrcptto` in
0.94), kept so that old configurations load unchanged.  Each line of
`config/badrcptto_patterns` is a regular expression, whitespace, and the
reply text; the expression is matched (case-sensitively, unanchored, as
the old plugin did) against the lower-cased `user@host`:

    !       Sorry, bang paths not accepted here
    @.*@    Sorry, multiple at signs not accepted here
    %       Sorry, percent hack not accepted here

A match refuses the recipient with `550 <text>` (`550 Delivery denied`
without a text).  Relay clients are not checked.  A line that is not a
valid regular expression is logged and skipped.

New configurations: put these lines into `config/badrcptto` and use
`badrcptto` (every line with a regexp character is a pattern there).
Loading this plugin logs that once, at LOGNOTICE.

## Arguments

`loglevel N`.

## Config files

`badrcptto_patterns`.
"""

from qpsmtpd.args import Arguments
from qpsmtpd.constants import DECLINED, DENY, LOGINFO, LOGNOTICE
from qpsmtpd.plugin import Plugin


class CheckBadrcpttoPatterns(Plugin):
    arguments = Arguments()

    def init(self, qp, *args):
        qp.log(LOGNOTICE, "plugin check_badrcptto_patterns is an old plugin: its patterns belong in "
                          "config/badrcptto, read by badrcptto (docs/migration.md)")

    def hook_rcpt(self, transaction, recipient, params=None):
        if self.connection.relay_client:
            return DECLINED
        if not recipient or not recipient.host or not recipient.user:
            return DECLINED
        found = self.first_matching_line("badrcptto_patterns", f"{recipient.user}@{recipient.host}".lower())
        if not found:
            return DECLINED
        pattern, response = found
        self.log(LOGINFO, f"fail: pattern {pattern}")
        return (DENY, response) if response else DENY
