"""# random_error — fail at random, for testing clients

Makes a share of the sessions fail, to test how clients cope with errors.
The argument is the percentage of messages that should fail (default 1;
negative disables).  Each of the six checkpoints (connect, HELO/EHLO, MAIL,
RCPT, DATA, end of DATA) fails with the probability that gives that overall
rate; a failure is `random failure`: two in five times a temporary
rejection with disconnection (`421`/`450`/`451`), otherwise a temporary
rejection (`450`/`451`/`452`).

Other plugins may change the rate for one connection by setting the
connection note `random_fail_%`.

## Arguments

One number: the failure percentage.

## Example

    random_error 5
"""

from qpsmtpd.constants import DENYSOFT, DENYSOFT_DISCONNECT, DECLINED, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("percent", kind="float", default=1.0, strict=True,
                       help="chance of a failure per step, in percent (negative: never)"),),
)


def register(self, qp, *args):
    if len(args) > 1:
        raise ValueError(f"Invalid args: '{' '.join(args)}'")
    self.fail_percent = self.opts["percent"] or 1.0


def random_fail(self, transaction, *args):
    import random

    percent = self.connection.notes.get("random_fail_%")
    try:
        percent = float(percent)
    except (TypeError, ValueError):
        percent = self.fail_percent
    if percent <= 0:
        return DECLINED
    success = max(0.0, 1 - percent / 100) ** (1 / 6)
    self.log(LOGINFO, f"to fail, rand(1) must be more than {success}")
    if random.random() < success:
        return DECLINED
    if random.random() * 5 < 2:
        return DENYSOFT_DISCONNECT, "random failure"
    return DENYSOFT, "random failure"


def hook_connect(self, transaction):
    self.connection.notes["random_fail_%"] = self.fail_percent
    return self.random_fail(transaction)


hook_helo = hook_ehlo = hook_mail = hook_rcpt = hook_data = hook_data_post = random_fail
