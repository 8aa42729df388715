"""The reply table: for every hook, what each plugin result answers the client.

This module is the one source of the mapping (hook, result) -> (SMTP code,
default text, enhanced status code, disconnect?, transaction reset?).  The
SMTP layer answers from it, docs/hooks.md's table is generated from it
(`python3 tools/render_hook_table.py`) and t/test_hook_codes.py is
parametrised from it.

A plugin may also answer with an explicit `Reply`:

    from qpsmtpd.replies import Reply
    return Reply(451, "Slow down", esc="4.7.1")

It is checked against the hook (`REPLY_CLASSES`): a 2xx from `rcpt` is an
acceptance, a 4xx/5xx from `connect` disconnects, a 2xx from `data_post`
is refused.  A reply the hook cannot give is a plugin fault: the client
gets 451 and the log names plugin, hook and value.
"""

from __future__ import annotations

from .constants import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, DONE, OK

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


class Reply:
    """An SMTP reply a plugin gives: code, text lines, enhanced status code.

    `disconnect=None` lets the hook decide (421, and any 4xx/5xx at
    `connect`, end the session); True or False says so explicitly.
    """

    __slots__ = ("code", "lines", "esc", "disconnect")

    def __init__(self, code: int, *lines: str, esc: str | None = None,
                 disconnect: bool | None = None) -> None:
        self.code = code
        self.lines = [str(line) for line in lines]
        self.esc = esc
        self.disconnect = disconnect

    def __repr__(self) -> str:
        esc = f", esc={self.esc!r}" if self.esc else ""
        return f"Reply({self.code}, {', '.join(repr(line) for line in self.lines)}{esc})"

    def valid_code(self) -> bool:
        return type(self.code) is int and 200 <= self.code <= 599

    def result_code(self) -> int:
        """The return code this reply stands for (for the deny/ok hooks and the notes)."""
        if self.code < 400:
            return OK
        if self.code == 421 or (self.disconnect and self.code < 500):
            return DENYSOFT_DISCONNECT
        if self.disconnect:
            return DENY_DISCONNECT
        return DENYSOFT if self.code < 500 else DENY


class Rule:
    """The reply for one (hook, result): code, default text, esc, what follows."""

    __slots__ = ("code", "text", "esc", "disconnect", "reset")

    def __init__(self, code: int | None, text: str = "", esc: str = "", *,
                 disconnect: bool = False, reset: bool = False) -> None:
        self.code = code          # None: no reply here (the step goes on, or a later reply)
        self.text = text          # default text when the plugin gave none; {sender}/{rcpt} filled in
        self.esc = esc            # enhanced status code (RFC 3463) when ENHANCEDSTATUSCODES is on
        self.disconnect = disconnect
        self.reset = reset        # the transaction ends (the message is not queued)


# Every result a plugin may return; anything else is a plugin fault.
RESULTS = (OK, DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED, DONE)

# What the engine answers when a plugin misbehaves in a hook whose reply it owns
# (raised, timed out, returned an unknown value, or returned DONE without a reply).
FAULT_TEXT = "Internal error - try again later"
FAULT = Rule(451, FAULT_TEXT, "4.3.0")
FAULT_AT_CONNECT = Rule(451, FAULT_TEXT, "4.3.0", disconnect=True)

_SOFT_BYE = "Connection from you temporarily denied, bye bye."

# hook -> {result: Rule}.  A result missing from a hook's entry means the
# step goes on as if the plugin had declined (`ACCEPT` below says how).
# DONE is never in the table: the plugin answered itself (see DONE_OWNED).
TABLE: dict[str, dict[int, Rule]] = {
    # forkserver only: the parent answers and closes without forking a session
    "pre-connection": {
        DENY: Rule(550, "Sorry, service not available for you", "5.7.1", disconnect=True),
        DENY_DISCONNECT: Rule(550, "Sorry, service not available for you", "5.7.1", disconnect=True),
        DENYSOFT: Rule(451, "Sorry, try again later", "4.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(451, "Sorry, try again later", "4.7.1", disconnect=True),
    },
    "connect": {
        DENY: Rule(550, "Connection from you denied, bye bye.", "5.7.1", disconnect=True),
        DENY_DISCONNECT: Rule(550, "Connection from you denied, bye bye.", "5.7.1", disconnect=True),
        DENYSOFT: Rule(450, _SOFT_BYE, "4.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(450, _SOFT_BYE, "4.7.1", disconnect=True),
    },
    "helo": {
        DENY: Rule(550, "", "5.7.1"),
        DENYSOFT: Rule(450, "", "4.7.1"),
        DENY_DISCONNECT: Rule(550, "", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(450, "", "4.7.1", disconnect=True),
    },
    "mail": {
        DENY: Rule(550, "{sender}, denied", "5.7.1"),
        DENYSOFT: Rule(450, "{sender}, temporarily denied", "4.7.1"),
        DENY_DISCONNECT: Rule(550, "{sender}, denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(421, "{sender}, temporarily denied", "4.7.1", disconnect=True),
    },
    "rcpt": {
        DENY: Rule(550, "relaying denied", "5.7.1"),
        DENYSOFT: Rule(450, "relaying denied", "4.7.1"),
        DENY_DISCONNECT: Rule(550, "delivery denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(421, "relaying denied", "4.7.1", disconnect=True),
        DECLINED: Rule(450, "No plugin decided if relaying is allowed", "4.7.1"),
    },
    "data": {
        DENY: Rule(554, "Message denied", "5.7.1", reset=True),
        DENYSOFT: Rule(451, "Message denied temporarily", "4.7.1", reset=True),
        DENY_DISCONNECT: Rule(554, "Message denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(451, "Message denied temporarily", "4.7.1", disconnect=True),
    },
    # Mid-DATA: the client is not waiting for a reply.  *_DISCONNECT answer at
    # once and close (as qpsmtpd); DENY/DENYSOFT are answered after the final
    # dot and the message is not queued (qpsmtpd ignored them).
    "data_headers_end": {
        DENY_DISCONNECT: Rule(554, "Message denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(421, "Message denied temporarily", "4.7.1", disconnect=True),
        DENY: Rule(554, "Message denied", "5.7.1", reset=True),
        DENYSOFT: Rule(451, "Message denied temporarily", "4.7.1", reset=True),
    },
    "data_post_headers": {
        DENY: Rule(552, "Message denied", "5.7.1", reset=True),
        DENYSOFT: Rule(452, "Message denied temporarily", "4.7.1", reset=True),
        DENY_DISCONNECT: Rule(552, "Message denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(452, "Message denied temporarily", "4.7.1", disconnect=True),
    },
    "data_post": {
        DENY: Rule(552, "Message denied", "5.7.1", reset=True),
        DENYSOFT: Rule(452, "Message denied temporarily", "4.7.1", reset=True),
        DENY_DISCONNECT: Rule(552, "Message denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(452, "Message denied temporarily", "4.7.1", disconnect=True),
    },
    # qpsmtpd logged "illegal value" and sent nothing; a reply is owed.
    "queue_pre": {
        DENY: Rule(552, "Message denied", "5.7.1", reset=True),
        DENYSOFT: Rule(452, "Message denied temporarily", "4.7.1", reset=True),
        DENY_DISCONNECT: Rule(552, "Message denied", "5.7.1", disconnect=True),
        DENYSOFT_DISCONNECT: Rule(452, "Message denied temporarily", "4.7.1", disconnect=True),
    },
    "queue": {
        OK: Rule(250, "Queued", "2.0.0", reset=True),
        DENY: Rule(552, "Message denied", "5.7.1", reset=True),
        DENYSOFT: Rule(452, "Message denied temporarily", "4.3.0", reset=True),
        DENY_DISCONNECT: Rule(451, "Queuing declined or disabled; try again later", "4.3.0", reset=True),
        DENYSOFT_DISCONNECT: Rule(451, "Queuing declined or disabled; try again later", "4.3.0", reset=True),
        DECLINED: Rule(451, "Queuing declined or disabled; try again later", "4.3.0", reset=True),
    },
    "unrecognized_command": {
        DENY: Rule(500, "Unrecognized command", "5.5.1"),
        DENY_DISCONNECT: Rule(521, "Unrecognized command", "5.5.1", disconnect=True),
        DENYSOFT: Rule(500, "Unrecognized command", "5.5.1"),
        DENYSOFT_DISCONNECT: Rule(500, "Unrecognized command", "5.5.1"),
        OK: Rule(500, "Unrecognized command", "5.5.1"),
        DECLINED: Rule(500, "Unrecognized command", "5.5.1"),
    },
    "noop": {
        DENY: Rule(500, "Stop wasting my time.", "5.5.1"),
        DENY_DISCONNECT: Rule(500, "Stop wasting my time.", "5.5.1", disconnect=True),
    },
    "vrfy": {
        DENY: Rule(554, "Access Denied", "5.7.1", reset=True),
        OK: Rule(250, "User OK", "2.1.5"),
    },
    "help": {
        DENY: Rule(500, "Syntax error, command not recognized", "5.5.1"),
    },
}
TABLE["ehlo"] = TABLE["helo"]

# The reply when no rule above answered (the step's normal, accepting reply).
ACCEPT: dict[str, Rule] = {
    "connect": Rule(220, "{greeting}", ""),
    "helo": Rule(250, "{me} Hi {remote_info} [{remote_ip}]; I am so happy to meet you.", "2.0.0"),
    "ehlo": Rule(250, "{me} Hi {remote_info} [{remote_ip}] + capabilities", "2.0.0"),
    "mail": Rule(250, "{sender}, sender OK - how exciting to get mail from you!", "2.1.0"),
    "rcpt": Rule(250, "{rcpt}, recipient ok", "2.1.5"),
    "data": Rule(354, "go ahead", ""),
    "data_headers_end": Rule(None),
    "data_post_headers": Rule(None),
    "data_post": Rule(None, "(on to queue_pre)"),
    "queue_pre": Rule(None, "(on to queue)"),
    "unrecognized_command": Rule(500, "Unrecognized command", "5.5.1"),
    "noop": Rule(250, "OK", "2.0.0"),
    "vrfy": Rule(252, "Just try sending a mail and we'll see how it turns out ...", "2.5.0"),
    "help": Rule(214, "(the help text)", "2.0.0"),
    "quit": Rule(221, "{me} closing connection. Have a wonderful day.", "2.0.0", disconnect=True),
}

# Hooks whose reply the engine owns: DONE there means "I answered"; DONE
# with nothing written is a fault (the client would wait, or take the next
# reply as this one's).
DONE_OWNED = frozenset(("connect", "helo", "ehlo", "mail", "rcpt", "data", "data_post_headers", "data_post",
                        "queue_pre", "queue", "unrecognized_command", "noop", "vrfy", "help"))

# The reply classes (first digit) a plugin's Reply may use in each hook.
REPLY_CLASSES: dict[str, frozenset[int]] = {
    "pre-connection": frozenset((4, 5)),
    "connect": frozenset((4, 5)),
    "helo": frozenset((4, 5)),
    "ehlo": frozenset((4, 5)),
    "mail": frozenset((2, 4, 5)),
    "rcpt": frozenset((2, 4, 5)),
    "data": frozenset((4, 5)),
    "data_headers_end": frozenset((4, 5)),
    "data_post_headers": frozenset((4, 5)),
    "data_post": frozenset((4, 5)),
    "queue_pre": frozenset((4, 5)),
    "queue": frozenset((2, 4, 5)),
    "unrecognized_command": frozenset((2, 4, 5)),
    "noop": frozenset((2, 4, 5)),
    "vrfy": frozenset((2, 4, 5)),
    "help": frozenset((2, 4, 5)),
    "quit": frozenset((2,)),
}


def rule_for(hook: str, code: int) -> Rule | None:
    """The deny/accept rule of the table for a plain result code, or None."""
    return TABLE.get(hook, {}).get(code)


def check_reply(hook: str, reply: Reply) -> str | None:
    """Why `reply` cannot be given in `hook`, or None when it can."""
    if not reply.valid_code():
        return f"reply code {reply.code!r} is not an SMTP code (200-599)"
    classes = REPLY_CLASSES.get(hook)
    if classes is None:
        return f"hook {hook} takes no SMTP reply"
    if reply.code // 100 not in classes:
        allowed = "/".join(f"{digit}xx" for digit in sorted(classes))
        return f"a {reply.code} reply is not allowed in hook {hook} (allowed: {allowed})"
    if reply.esc is not None and not valid_esc(reply.esc, reply.code):
        return f"enhanced status code {reply.esc!r} does not fit reply {reply.code}"
    return None


def valid_esc(esc: str, code: int) -> bool:
    """RFC 3463: class.subject.detail, the class matching the reply's first digit."""
    parts = esc.split(".")
    if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
        return False
    return parts[0] == str(code // 100) and len(parts[1]) <= 3 and len(parts[2]) <= 3


def describe_value(value: Any) -> str:
    """A plugin's bad return value, short and safe for one log line."""
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
