"""# naughty — carry out deferred rejections

Plugins called with `reject naughty` do not refuse at once: they store their
rejection (see `store_deferred_reject`), and this plugin refuses at the
stage chosen here.  That lets a client authenticate first (a successful
AUTH clears the connection's naughty mark), gives one place to choose when
rejections happen, and lets later plugins skip work for clients already
known to be bad (`self.naughty`).

A rejection found while the client connects or greets (dnsbl, helo, karma
...) holds for the whole connection; one found from MAIL on (badmailfrom,
SPF, headers ...) holds for that message only, so the next MAIL starts
clean.  When several plugins stored a rejection, the reply has one line
each, for example

    554 (badmailfrom) Your envelope sender is in my badmailfrom list

## Arguments

* `reject connect|mail|rcpt|data|data_post` — the stage that refuses
  (default `rcpt`).  The plugin also runs at `data_post` in case an earlier
  plugin answered OK at the chosen stage before it ran.  With `rcpt`, list
  `naughty` before `rcpt_ok` (which answers OK), or choose `data`.
* `reject_type disconnect` (default) | `perm` | `temp` | `temp_disconnect` —
  used when the plugin that stored the rejection did not give its own.
* `loglevel N`.

The reply code follows the stage: 550 at connect/MAIL/RCPT, 554 at DATA,
552 at the end of DATA (451/450/452 for temporary ones); with
`disconnect` the connection is closed after the reply.

## Example

    dnsbl reject naughty
    badmailfrom reject naughty
    naughty reject data
"""

from qpsmtpd.constants import DENY_DISCONNECT, DECLINED, LOGERROR, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_type_option

STAGES = ("connect", "mail", "rcpt", "data", "data_post", "hook_queue_post")

arguments = Arguments(
    Option("reject", choices=STAGES, help="the stage that refuses (default rcpt)"),
    reject_type_option(default="disconnect"),
)


def register(self, qp, *args):
    if len(args) % 2:
        self.log(LOGERROR, "Bad arguments")
    stage = self.opts["reject"]
    if stage is None and "reject" in args:  # a bad stage (the argument parser reported it)
        position = args.index("reject") + 1
        self.log(LOGERROR, f"fail, invalid hook {args[position] if position < len(args) else ''}")
        self.register_hook("data_post", "naughty")
        return
    stage = stage or "rcpt"
    if stage == "hook_queue_post":
        stage = "data_post"
    if stage != "data_post":
        self.register_hook("data_post", "naughty")
    self.log(LOGDEBUG, f"registering hook {stage}")
    self.register_hook(stage, "naughty")


def naughty(self, transaction, *args):
    messages, reject_type = [], None
    for scope in ("connection", "transaction"):
        notes = self.connection.notes if scope == "connection" else self.transaction.notes
        mark = notes.get("naughty")
        if not mark or isinstance(mark, dict):
            continue
        if scope == "connection" and self.qp.authenticated():
            self.log(LOGINFO, "skip, authenticated")
            continue
        messages.append(mark if isinstance(mark, str) else "naughty")
        reject_type = reject_type or notes.get("naughty_reject_type")
    if not messages:
        self.log(LOGINFO, "pass")
        return DECLINED
    self.log(LOGINFO, "disconnecting")
    code = self.get_reject_type(DENY_DISCONNECT, reject_type)
    return code, "\n".join(messages)
