"""Shared policy helpers for plugins (reject arguments, immunity, karma, naughty).

`PolicyMixin` is a base of every plugin; the helpers here are what
qpsmtpd's plugins rely on to honour the common arguments and to cooperate
through notes.

Common arguments (in `self.opts`, from `name key value ...` in config/plugins):

* `reject 0|1|naughty` — `0` only logs, `1` rejects, `naughty` defers the
  rejection to the `naughty` plugin.  `reject temp|perm|disconnect|temp_disconnect`
  means `reject 1` with that rejection type (unless `reject_type` is given).
* `reject_type perm|temp|disconnect|temp_disconnect` — the code a rejection
  gets (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT).
* `loglevel N|+N|-N` — applied by `Plugin.log`.

Notes other plugins read:

| where | note | meaning |
| --- | --- | --- |
| connection | `relayclient` | set with `connection.relay_client` by `relay` (and AUTH) |
| connection | `whitelisthost`, `whitelistclient`, `whitelisthelo` | set by `whitelist` |
| transaction | `whitelistsender`, `whitelistrcpt` | set by `whitelist` |
| connection / transaction | `naughty`, `naughty_reject_type` | deferred rejection (see below) |
| connection | `rejected` | set by `mark_naughty(reason)` / `clear_naughty()` |
| connection | `karma` | running total of `adjust_karma` |
| connection / transaction | `authentication_results` | `store_auth_results`; the engine joins both into the Authentication-Results header |

Scope: a result that describes the client (found in the connect, HELO/EHLO,
AUTH or command hooks) is kept in the connection notes; a result that
describes a message (found from MAIL on) is kept in the transaction notes,
so it never leaks into the next message of the same connection.  Both
`store_deferred_reject` and `store_auth_results` pick the scope from the
running hook and accept `scope="connection"|"transaction"` to override it.
"""

from __future__ import annotations


from .address import ascii_domain
from .constants import (DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGWARN,
                        LOGINFO)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

REJECT_TYPES = {
    "temp": DENYSOFT, "soft": DENYSOFT,
    "perm": DENY, "hard": DENY,
    "disconnect": DENY_DISCONNECT,
    "temp_disconnect": DENYSOFT_DISCONNECT,
}

# Hooks whose findings describe the client rather than one message.
CONNECTION_HOOKS = frozenset((
    "pre-connection", "connect", "helo", "ehlo", "helo_parse", "ehlo_parse", "auth", "auth_parse",
    "unrecognized_command", "noop", "vrfy", "help", "quit", "disconnect", "post-connection",
))


def reject_type_code(name: Any, default: int = DENY) -> int:
    """The return code a `reject_type` word stands for, `default` when unknown."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    return REJECT_TYPES.get(str(name or "").strip().lower(), default)


class _PendingNaughty:
    """`plugin.naughty`: the pending deferred rejection (the connection's, else the
    message's); falsy when none.  A getter only, so a plugin that has its own
    attribute or method called `naughty` (plugins/naughty.py) keeps it."""

    def __get__(self, plugin: Any, owner: Any = None) -> Any:
        if plugin is None:
            return self
        return plugin.connection.notes.get("naughty") or plugin.transaction.notes.get("naughty")


class PolicyMixin:
    """Helpers every plugin inherits (see docs/writing-plugins.md)."""

    # -- rejection ----------------------------------------------------------
    def get_reject(self: Any, smtp_mess: str | None = None, log_mess: str | None = None) -> Any:
        """What to return for a failed check, honouring `reject` and `reject_type`.

        `reject 0` logs and returns DECLINED; `reject naughty` stores a deferred
        rejection for the `naughty` plugin and returns DECLINED; anything else
        returns `(reject type, smtp_mess)`.
        """
        smtp_mess = smtp_mess or "unspecified error"
        suffix = f", {log_mess}" if log_mess else ""
        reject = self.opts.get("reject")
        text = str(reject).strip().lower() if reject is not None else None
        if text is not None and text in ("0", "", "false", "no"):
            self.log(LOGINFO, "fail, tolerated" + suffix)
            return DECLINED
        if text == "naughty":
            self.log(LOGINFO, "fail, NAUGHTY" + suffix)
            return self.store_deferred_reject(f"({self.plugin_name}) {smtp_mess}")
        self.log(LOGINFO, "fail" + suffix)
        return self.get_reject_type(), smtp_mess

    def get_reject_type(self: Any, default: int = DENY, deny: Any = None) -> int:
        """The code for `deny` (or the `reject_type` argument): perm, temp, disconnect..."""
        word = deny or self.opts.get("reject_type")
        if not word:
            reject = str(self.opts.get("reject") or "").lower()
            word = reject if reject in REJECT_TYPES else None
        if not word:
            return default
        return reject_type_code(word, default)

    def _notes_for(self: Any, scope: str | None) -> Any:
        if scope is None:
            scope = "connection" if (self.hook_name or "connect") in CONNECTION_HOOKS else "transaction"
        return self.connection.notes if scope == "connection" else self.transaction.notes

    def store_deferred_reject(self: Any, smtp_mess: str, scope: str | None = None) -> int:
        """Remember a rejection for the `naughty` plugin; returns DECLINED.

        Messages accumulate (one reply line each).  Found in a client hook the
        rejection is kept for the connection, from MAIL on for the message only.
        """
        notes = self._notes_for(scope)
        previous = notes.get("naughty")
        notes["naughty"] = f"{previous}\n{smtp_mess}" if isinstance(previous, str) and previous else smtp_mess
        if not notes.get("naughty_reject_type") and self.opts.get("reject_type"):
            notes["naughty_reject_type"] = self.opts["reject_type"]
        return DECLINED

    def store_auth_results(self: Any, result: str, scope: str | None = None) -> None:
        """Add `method=result ...` to what the Authentication-Results header will say."""
        notes = self._notes_for(scope)
        previous = notes.get("authentication_results")
        combined = f"{previous}; {result}" if previous else result
        self.log(LOGDEBUG, f"auth-results: {combined}")
        notes["authentication_results"] = combined
        self.qp.refresh_authentication_results()  # a data_post result still reaches this message

    def sender_is_checkable(self: Any, sender: Any, listed: list[str]) -> bool:
        """False (with a log line) when a sender list check has nothing to do:
        an empty list, the null sender, or an address without user or host."""
        if not listed:
            self.log(LOGDEBUG, "skip, empty list")
            return False
        if not sender or sender.format() == "<>":
            self.log(LOGDEBUG, "skip, null sender")
            return False
        if not sender.host or not sender.user:
            self.log(LOGDEBUG, "skip, missing user or host")
            return False
        return True

    # -- relaying -------------------------------------------------------------
    # Only relay decisions (relay, AUTH, the relayclient note) let a recipient in a
    # foreign domain through; immunity (whitelists) only skips checks.
    def recipient_domain(self: Any, recipient: Any) -> str | None:
        """The domain a recipient is for (lower case): an address literal of this
        server counts as `localiphost` (default `me`), a bare postmaster/abuse as `me`;
        None when there is none to check."""
        if not recipient:
            return None
        if recipient.host:
            host = ascii_domain(recipient.host)  # IDNA: a U-label domain is looked up as its A-label
            local_ip = self.connection.local_ip
            if local_ip and host in (f"[{local_ip}]", f"[ipv6:{local_ip}]".lower()):
                return str(self.qp.config_value("localiphost") or self.qp.config_value("me", "")).lower()
            return host
        if (recipient.user or "").lower() in ("postmaster", "abuse"):
            return str(self.qp.config_value("me", "")).lower()
        return None

    def is_local_domain(self: Any, host: str) -> bool:
        """True when `host` is `me`, in `rcpthosts` (`.domain` for subdomains) or `morercpthosts.cdb`."""
        for allowed in self.qp.config("me") + self.qp.config("rcpthosts"):
            allowed = ascii_domain(allowed.strip())
            if not allowed:
                continue
            if host == allowed:
                self.log(LOGINFO, f"pass: {host} in rcpthosts")
                return True
            if allowed.startswith(".") and host.endswith(allowed):
                self.log(LOGINFO, f"pass: {host} in rcpthosts as {allowed}")
                return True
        if host in self.qp.config("morercpthosts", "map"):
            self.log(LOGINFO, f"pass: {host} found in morercpthosts")
            return True
        self.log(LOGINFO, f"fail: {host} not in rcpthosts or morercpthosts")
        return False

    @staticmethod
    def has_routing(recipient: Any) -> bool:
        """True for a local part that routes onwards on many MTAs: `a@b` (quoted), `a%b`, `b!a`."""
        user = getattr(recipient, "user", None) or ""
        return "@" in user or "%" in user or "!" in user

    def is_local_recipient(self: Any, recipient: Any) -> bool:
        """True when mail for `recipient` stays here: a local domain and no routing in the
        local part (a next hop would relay `"x@evil"@local`, `x%evil@local`, `evil!x@local`)."""
        host = self.recipient_domain(recipient)
        if not host or not self.is_local_domain(host):
            return False
        if self.has_routing(recipient):
            self.log(LOGINFO, f"fail: routing characters in the local part of {recipient.format()}")
            return False
        return True

    # -- patterns from config files ---------------------------------------------
    def search_pattern(self: Any, pattern: str, text: str, ignore_case: bool = False) -> bool:
        """`re.search` of a pattern an admin wrote in a config file; an invalid one is logged
        (naming this plugin and the pattern) and matches nothing."""
        import re  # only for plugins whose config has patterns

        try:
            return re.search(pattern, text, re.IGNORECASE if ignore_case else 0) is not None
        except re.error as error:
            self.log(LOGWARN, f"invalid pattern {pattern}: {error}")
            return False

    def first_matching_line(self: Any, config_name: str, text: str) -> tuple[str, str] | None:
        """(pattern, rest of the line) of the first `PATTERN [text]` line of `config_name`
        whose pattern is found in `text`, or None."""
        for line in self.qp.config(config_name):
            parts = line.split(None, 1)
            if parts and self.search_pattern(parts[0], text):
                return parts[0], parts[1].strip() if len(parts) > 1 else ""
        return None

    # -- immunity and naughtiness ---------------------------------------------
    naughty = _PendingNaughty()

    def is_relay_client(self: Any) -> bool:
        """True when this connection may relay (`relay`, AUTH, or the `relayclient` note)."""
        connection = self.connection
        return bool(connection.relay_client or connection.notes.get("relayclient"))

    def is_immune(self: Any) -> bool:
        """True for relay clients and whitelisted hosts or senders: policy checks skip them."""
        connection = self.connection
        if self.is_relay_client():
            self.log(LOGINFO, "skip, relay client")
            return True
        if connection.notes.get("whitelisthost"):
            self.log(LOGINFO, "skip, whitelisted host")
            return True
        if self.transaction.notes.get("whitelistsender"):
            self.log(LOGINFO, "skip, whitelisted sender")
            return True
        return False

    def mark_naughty(self: Any, reason: Any = True) -> bool:
        """Mark the connection naughty and rejected (a pending naughty message is
        kept, else `reason` becomes it); True when the connection is now naughty."""
        notes = self.connection.notes
        if not (reason and notes.get("naughty")):
            notes["naughty"] = reason
        notes["rejected"] = reason
        if notes.get("naughty"):
            self.log(LOGINFO, "skip, naughty")
            return True
        return False

    def clear_naughty(self: Any, value: Any = 0) -> None:
        """Forget the connection's naughty mark (e.g. for mail to postmaster)."""
        self.connection.notes["naughty"] = value
        self.connection.notes["rejected"] = value

    def adjust_karma(self: Any, value: int) -> int:
        """Add `value` to the connection's karma (read by karma-aware plugins)."""
        karma = (self.connection.notes.get("karma") or 0) + value
        self.log(LOGINFO, f"karma {value} ({karma})")
        self.connection.notes["karma"] = karma
        return value
