"""# noop_counter — disconnect after too many NOOPs in a row

Counts consecutive `NOOP` commands; any other command (HELO, EHLO, MAIL,
RCPT, DATA, RSET, VRFY, HELP) resets the count.  The NOOP that reaches the
limit is answered

    500 Stop wasting my time, too many consecutive NOOPs

and the connection is closed.  Load it early, so that it sees the other
commands before a plugin answers them.

## Arguments

One number: the limit (default 3).

## Example

    noop_counter 5
"""

from qpsmtpd.constants import DENY_DISCONNECT, DECLINED, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("max", kind="int", default=3, minimum=0, help="NOOPs allowed in a row"),),
)


def register(self, qp, *args):
    self.noop_count = 0
    self.max_noop = self.opts["max"]


def hook_noop(self, transaction, *args):
    self.noop_count += 1
    if self.noop_count >= self.max_noop:
        self.log(LOGINFO, f"fail, {self.noop_count} consecutive NOOPs")
        return DENY_DISCONNECT, "Stop wasting my time, too many consecutive NOOPs"
    return DECLINED


def reset_noop_counter(self, transaction, *args):
    self.noop_count = 0
    return DECLINED


hook_helo = hook_ehlo = hook_mail = hook_rcpt = hook_data = reset_noop_counter
hook_reset_transaction = hook_vrfy = hook_help = reset_noop_counter
