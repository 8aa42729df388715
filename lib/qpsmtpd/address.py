"""RFC 5321 mailbox addresses, parsed the way `Qpsmtpd::Address` does.

`Address.parse("<user@example.com>")` accepts the path with its angle
brackets: source routes are dropped, quoted local parts are unquoted,
domains may be IP literals (`[192.0.2.1]`, `[IPv6:...]`), `<postmaster>`
is allowed bare and `<>` is the null sender.  `format()` gives the
canonical `<...>` form (quoting the local part where needed) and is also
what `str()` returns.  Addresses compare case-sensitively on the local part
and by text otherwise, like qpsmtpd's overloaded `cmp`.
"""

from __future__ import annotations

import re

from .notes import Notes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any
    from .qp import Qpsmtpd

_ATOM = r"[a-zA-Z0-9!#%&*+=?^_`{|}~$'\-/]+"
_ADDRESS_LITERAL = r"(?:\[(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|IPv6:[0-9A-Fa-f:.]+)\])"
_SUBDOMAIN = r"(?:[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)"
_DOMAIN = rf"(?:{_ADDRESS_LITERAL}|{_SUBDOMAIN}(?:\.{_SUBDOMAIN})*)"
_QTEXT = r"[\x01-\x08\x0B\x0C\x0E-\x1F\x20\x21\x23-\x5B\x5D-\x7F]"
_TEXT = r"[\x01-\x09\x0B\x0C\x0E-\x7F]"

_SOURCE_ROUTE = re.compile(rf"^@{_DOMAIN}(?:,@{_DOMAIN})*:")
_LOCAL_AT_DOMAIN = re.compile(rf"^(.*)@({_DOMAIN})$", re.S)
_DOT_ATOM = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_QUOTED = re.compile(rf'^"((?:{_QTEXT}|\\{_TEXT})*)"$')
_UNESCAPE = re.compile(rf"\\({_TEXT})")
_NEEDS_QUOTE = re.compile(r"[^a-zA-Z0-9!#$%&'*+\-/=?^_`{|}~.]")


def canonify(path: str) -> tuple[str | None, str | None]:
    """Split `<path>` into (local part, domain); (None, None) when unparseable."""
    if len(path) < 2 or path[0] != "<" or path[-1] != ">":
        return None, None
    path = _SOURCE_ROUTE.sub("", path[1:-1], count=1)
    if path == "":
        return "", None
    if path.lower() == "postmaster":
        return "postmaster", None
    match = _LOCAL_AT_DOMAIN.match(path)
    if not match:
        return None, None
    local, domain = match.group(1), match.group(2)
    if _DOT_ATOM.match(local):
        return local, domain
    quoted = _QUOTED.match(local)
    if quoted:
        return _UNESCAPE.sub(r"\1", quoted.group(1)), domain
    return None, None


class Address:
    """One envelope address: `user`, `host`, `notes`, and `format()`."""

    __slots__ = ("user", "host", "notes", "qp")

    def __init__(self, user: str | None = None, host: str | None = None) -> None:
        self.user = user
        self.host = host
        self.notes = Notes()
        self.qp: Qpsmtpd | None = None

    @classmethod
    def parse(cls, text: str) -> Address | None:
        """Parse `<user@host>` (brackets required); None when it is not an address.

        Without brackets the text is split at the last `@` without checks,
        as `Qpsmtpd::Address->new("user@host")` does.
        """
        if text.startswith("<") and text.endswith(">"):
            user, host = canonify(text)
            if user is None:
                return None
            if user == "":
                return cls(None, None)
            return cls(user, host)
        user, _sep, host = text.rpartition("@")
        if not _sep:
            return cls(None, None)
        return cls(user, host)

    @property
    def address(self) -> str:
        """`user@host` without brackets or quoting ('' for the null sender)."""
        user = self.user or ""
        return user + ("@" + self.host if self.host is not None else "")

    def is_null(self) -> bool:
        return self.user is None

    def format(self) -> str:
        """Canonical `<user@host>`, quoting the local part where RFC 5321 needs it."""
        if self.user is None:
            return "<>"
        host = "@" + self.host if self.host is not None else ""
        if _NEEDS_QUOTE.search(self.user):
            escaped = _NEEDS_QUOTE.sub(lambda m: "\\" + m.group(0), self.user)
            return f'<"{escaped}"{host}>'
        return f"<{self.user}{host}>"

    def config(self, name: str) -> list[str]:
        """Per-recipient config via the `user_config` hook."""
        if self.qp is None:
            return []
        return self.qp.config(name, self)

    def _sort_key(self) -> str:
        return "=".join(reversed(self.format().split("@"))).replace("<", "").replace(">", "")

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"Address({self.format()!r})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            other = Address.parse(other if other.startswith("<") else f"<{other}>")
        if not isinstance(other, Address):
            return NotImplemented
        return self._sort_key() == other._sort_key()

    def __lt__(self, other: Address) -> bool:
        return self._sort_key() < other._sort_key()

    def __hash__(self) -> int:
        return hash(self._sort_key())
