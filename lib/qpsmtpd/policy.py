"""Shared policy helpers for plugins (reject arguments, immunity, karma, naughty).

`PolicyMixin` is a base of every plugin; the helpers here are what
qpsmtpd's plugins rely on to honour the common arguments `reject`,
`reject_type` and `loglevel` and to cooperate through notes.
"""

from __future__ import annotations

from typing import Any

from .constants import LOGINFO


class PolicyMixin:
    """Helpers every plugin inherits (see docs/writing-plugins.md)."""

    def is_immune(self: Any) -> bool:
        """True for relay clients and whitelisted hosts or senders: policy checks skip them."""
        if self.qp.connection.relay_client:
            self.log(LOGINFO, "skip, relay client")
            return True
        if self.qp.connection.notes.get("whitelisthost"):
            self.log(LOGINFO, "skip, whitelisted host")
            return True
        if self.qp.transaction.notes.get("whitelistsender"):
            self.log(LOGINFO, "skip, whitelisted sender")
            return True
        return False
