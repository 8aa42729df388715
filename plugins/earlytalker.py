"""# earlytalker — refuse clients that talk before the greeting

A well-behaved SMTP client waits for the `220` greeting.  Spam software
often sends its whole dialogue at once.  This plugin waits `wait` seconds
before the greeting; a client that sends anything in that time is refused:

    550 Connecting host started transmitting before SMTP greeting

and disconnected.  With `defer-reject 1` the greeting is sent as usual and
the refusal comes at MAIL instead.  With `check-at DATA` the same test runs
when the client sends DATA (the client must wait for the `354` before
sending the message; the refusal is `554 ...`).

Relay clients, whitelisted hosts and connections whose `karma_history`
note is above 5 are not delayed.  Another plugin may set the connection
note `earlytalker_wait` to choose the delay for one connection.  An early
talker gets the connection note `earlytalker` and loses 1 karma.

## Arguments

* `wait N` — seconds to wait (default 1; fractions allowed: `wait 0.5`);
* `check-at CONNECT|DATA` — when to check; may be given twice (default CONNECT);
* `defer-reject 0|1` — refuse at MAIL instead of at connect;
* `reject 1` (default) | `0` | `naughty`;
* `reject_type perm` (default) | `temp` | `disconnect` | `temp_disconnect`;
* `action deny|denysoft|log` — qpsmtpd's older form of `reject`/`reject_type`;
* `loglevel N`.

## Example

    earlytalker wait 2 check-at CONNECT check-at DATA reject_type temp
"""

from qpsmtpd.constants import DECLINED, LOGERROR, LOGWARN, LOGINFO
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    Option("wait", kind="float", default=1.0, minimum=0, help="seconds to wait for the client"),
    Option("check-at", kind="list", help="CONNECT and/or DATA (repeatable)"),
    Option("defer-reject", kind="bool", default=False, help="refuse at MAIL instead of at connect"),
    Option("action", choices=("deny", "denysoft", "log"), help="the older form of reject/reject_type"),
    reject_option(default=None), reject_type_option(),
)


def register(self, qp, *args):
    if len(args) % 2:
        self.log(LOGERROR, "Unrecognized/mismatched arguments")
        self.check_at = set()
        return
    self.check_at = {word.upper() for word in self.opts["check-at"]} or {"CONNECT"}
    action = self.opts["action"]
    if action is not None and self.opts["reject"] is None:
        self.opts["reject"] = 1 if action.startswith("deny") else 0
    if self.opts["reject_type"] is None:
        self.opts["reject_type"] = "temp" if action == "denysoft" else "perm"
    self.register_hook("connect", "connect_handler")
    self.register_hook("data", "data_handler")
    if self.defer_reject():
        self.register_hook("mail", "mail_handler")
    if self.opts["reject"] is None:
        self.opts["reject"] = 1


def defer_reject(self):
    return bool(self.opts["defer-reject"])


def wait_length(self):
    override = self.connection.notes.get("earlytalker_wait")
    value = override if override else self.opts["wait"]
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        self.log(LOGWARN, f"invalid wait {value}, using 1")
        return 1.0


def client_spoke(self, wait):
    io = getattr(self.qp, "io", None)
    if io is None:
        return False
    if io.buffer or io.transport.pending():
        return True
    return bool(io.transport.wait_readable(wait))


def connect_handler(self, transaction):
    if "CONNECT" not in self.check_at or self.is_immune():
        return DECLINED
    karma = self.connection.notes.get("karma_history")
    if karma is not None and karma > 5:
        self.log(LOGINFO, f"skip, karma {karma}")
        return DECLINED
    if not self.client_spoke(self.wait_length()):
        return self.log_and_pass()
    if not self.defer_reject():
        return self.log_and_deny()
    self.connection.notes["earlytalker"] = 1
    self.adjust_karma(-1)
    return DECLINED


def data_handler(self, transaction):
    if "DATA" not in self.check_at or self.is_immune():
        return DECLINED
    if not self.client_spoke(self.wait_length()):
        return self.log_and_pass()
    return self.log_and_deny()


def mail_handler(self, transaction, sender=None, params=None):
    if not self.connection.notes.get("earlytalker"):
        return DECLINED
    return self.log_and_deny()


def log_and_pass(self):
    self.log(LOGINFO, "pass, not spontaneous")
    return DECLINED


def log_and_deny(self):
    self.connection.notes["earlytalker"] = 1
    self.adjust_karma(-1)
    return self.get_reject("Connecting host started transmitting before SMTP greeting",
                           "remote started talking before we said hello")
