"""# bogus_bounce — refuse bounces that cannot be real

A bounce (a message with the null envelope sender `<>`) goes to exactly one
recipient, and carries no Return-Path other than `<>` (RFC 3834).  At the
end of DATA a bounce with several recipients, or with a non-empty
Return-Path header, is "bogus":

    552 fail, this bounce message does not have 1 recipient
    552 a bounce return path must be empty (RFC 3834)

## Arguments

The first argument alone is the action (qpsmtpd's older form):

* `log` (default) — only log bogus bounces;
* `deny` — refuse them permanently (552);
* `denysoft` — refuse them temporarily (452).

Or the common `reject 0|1|naughty` and `reject_type perm|temp|...`
(default `reject 0`, only logging).

## Example

    bogus_bounce log
    bogus_bounce deny
"""

from qpsmtpd.constants import DECLINED, LOGINFO
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    Option("action", choices=("log", "deny", "denysoft"), help="the older form of reject"),
    reject_option(default=None), reject_type_option(),
    positional=(Option("action", choices=("log", "deny", "denysoft")),),  # `bogus_bounce deny`
)


def register(self, qp, *args):
    action = self.opts["action"] or ""
    if self.opts["reject"] is None:
        self.opts["reject"] = 1 if action in ("deny", "denysoft") else 0
    if "soft" in action:
        self.opts["reject_type"] = "temp"


def hook_data_post(self, transaction):
    sender = transaction.sender
    if sender is not None and sender.address:
        self.log(LOGINFO, "pass, not a null sender")
        return DECLINED
    recipients = transaction.recipients
    if len(recipients) != 1:
        self.log(LOGINFO, "fail, bogus bounce to: " + ",".join(rcpt.address for rcpt in recipients))
        return self.get_reject("fail, this bounce message does not have 1 recipient")
    return_path = transaction.header.get("Return-Path") if transaction.header is not None else None
    if return_path and return_path.strip() != "<>":
        self.log(LOGINFO, "fail, bounce messages must not have a Return-Path")
        return self.get_reject("a bounce return path must be empty (RFC 3834)")
    self.log(LOGINFO, "pass, single recipient, empty Return-Path")
    return DECLINED
