"""RFC 5321 mailbox addresses, parsed the way `Qpsmtpd::Address` does.

`Address.parse("<user@example.com>")` accepts the path with its angle
brackets: source routes are dropped, quoted local parts are unquoted,
domains may be IP literals (`[192.0.2.1]`, `[IPv6:...]`), `<postmaster>`
is allowed bare and `<>` is the null sender.  `format()` gives the
canonical `<...>` form (quoting the local part where needed) and is also
what `str()` returns.  Addresses compare case-sensitively on the local part
and by text otherwise, like qpsmtpd's overloaded `cmp`.

Internationalised addresses (RFC 6531/6532) are parsed only when asked
(`Address.parse(text, utf8=True)`, for MAIL/RCPT with the SMTPUTF8
parameter): UTF-8 characters in local parts (dot-atom or quoted) and U-labels
in domains.  Invalid UTF-8 (which the command decoder keeps as surrogates),
C0/C1 control characters and labels IDNA cannot encode are refused.
`ascii_domain()` gives the A-label form used for lookups (rcpthosts, relay,
badmailfrom), so `bücher.example` and `xn--bcher-kva.example` are one domain.
"""

from __future__ import annotations

from .notes import Notes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any
    from .qp import Qpsmtpd

# Hand-written matching instead of regular expressions: `re` (and the `enum`
# it imports) would cost every connection about 5 ms of start-up.
_LETTERS_DIGITS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LDH = _LETTERS_DIGITS | {"-"}
_ATOM = _LETTERS_DIGITS | frozenset("!#%&*+=?^_`{|}~$'-/")
_UNQUOTED = _ATOM | {"."}  # what format() leaves unquoted
_HEX_COLON_DOT = frozenset("0123456789abcdefABCDEF:.")
# RFC 5321 qtextSMTP and quoted-pairSMTP: printable ASCII and space only.  The obsolete
# control characters RFC 2822 allowed in quoted strings are refused: no next hop, log
# line or header should ever see them.
_QTEXT = frozenset(chr(c) for c in [*range(0x20, 0x22), *range(0x23, 0x5C), *range(0x5D, 0x7F)])
_TEXT = frozenset(chr(c) for c in range(0x20, 0x7F))


def is_domain(text: str, utf8: bool = False) -> bool:
    """An RFC 5321 domain: dot-separated LDH labels (or U-labels with `utf8`), or an address literal."""
    if text.startswith("["):
        return _is_address_literal(text)
    for label in text.split("."):
        if utf8 and not label.isascii():
            if not _is_u_label(label):
                return False
            continue
        if not label or label[0] not in _LETTERS_DIGITS or label[-1] not in _LETTERS_DIGITS:
            return False
        if not _LDH.issuperset(label):
            return False
    return True


def _is_utf8_char(char: str) -> bool:
    """A non-ASCII character RFC 6532 allows: printable, valid UTF-8 (no surrogate), no C1 control."""
    return char > "\x7f" and char.isprintable()


def _is_u_label(label: str) -> bool:
    if not all(char in _LDH or _is_utf8_char(char) for char in label) or label.startswith("-") or label.endswith("-"):
        return False
    return _label_to_ascii(label) is not None


def _label_to_ascii(label: str) -> str | None:
    import encodings.idna  # only for internationalised domains

    try:
        encoded = encodings.idna.ToASCII(label).decode("ascii")
    except (UnicodeError, ValueError):
        return None
    return encoded.lower()


def ascii_domain(host: str) -> str:
    """The domain in lower case with every U-label as its A-label (`xn--...`); as is when IDNA refuses it."""
    host = host.lower()
    if host.isascii():
        return host
    labels = [label if label.isascii() else _label_to_ascii(label) for label in host.split(".")]
    if any(label is None for label in labels):
        return host
    return ".".join(labels)  # type: ignore[arg-type]


def unicode_domain(host: str) -> str:
    """The domain with every A-label as its U-label (for display); as is when one does not decode."""
    if "xn--" not in host.lower():
        return host
    import encodings.idna

    try:
        return ".".join(encodings.idna.ToUnicode(label) if label.lower().startswith("xn--") else label
                        for label in host.split("."))
    except (UnicodeError, ValueError):
        return host


def _is_address_literal(text: str) -> bool:
    if len(text) < 3 or not text.endswith("]"):
        return False
    inner = text[1:-1]
    if inner.startswith("IPv6:"):
        return len(inner) > 5 and _HEX_COLON_DOT.issuperset(inner[5:])
    parts = inner.split(".")
    return len(parts) == 4 and all(1 <= len(part) <= 3 and part.isascii() and part.isdigit() for part in parts)


def _strip_source_route(path: str) -> str:
    """`@hop1,@hop2:user@host` -> `user@host` (the route is obsolete and ignored)."""
    if not path.startswith("@"):
        return path
    start = 0
    while True:
        colon = path.find(":", start)
        if colon < 0:
            return path
        hops = path[:colon].split(",")
        if all(hop.startswith("@") and is_domain(hop[1:]) for hop in hops):
            return path[colon + 1:]
        start = colon + 1


def _is_dot_atom(local: str, utf8: bool = True) -> bool:
    """RFC 5321 dot-atom; with `utf8` (RFC 6531 atext) non-ASCII characters too."""
    if local.isascii() or not utf8:
        return all(part and _ATOM.issuperset(part) for part in local.split("."))
    return all(part and all(char in _ATOM or _is_utf8_char(char) for char in part) for part in local.split("."))


def _unquote(local: str, utf8: bool = False) -> str | None:
    """The content of a quoted local part with its escapes removed; None if invalid."""
    if len(local) < 2 or local[0] != '"' or local[-1] != '"':
        return None
    chars: list[str] = []
    inner = local[1:-1]
    index = 0
    while index < len(inner):
        char = inner[index]
        if char == "\\":
            index += 1
            if index == len(inner) or inner[index] not in _TEXT:
                return None
            chars.append(inner[index])
        elif char in _QTEXT or (utf8 and _is_utf8_char(char)):
            chars.append(char)
        else:
            return None
        index += 1
    return "".join(chars)


def canonify(path: str, utf8: bool = False) -> tuple[str | None, str | None]:
    """Split `<path>` into (local part, domain); (None, None) when unparseable.

    Without `utf8` only ASCII addresses parse (8-bit ones are refused, as ever)."""
    if len(path) < 2 or path[0] != "<" or path[-1] != ">":
        return None, None
    path = _strip_source_route(path[1:-1])
    if path == "":
        return "", None
    if path.lower() == "postmaster":
        return "postmaster", None
    local, at, domain = path.rpartition("@")
    if not at or not is_domain(domain, utf8):
        return None, None
    if _is_dot_atom(local, utf8):
        return local, domain
    unquoted = _unquote(local, utf8)
    if unquoted is not None:
        return unquoted, domain
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
    def parse(cls, text: str, utf8: bool = False) -> Address | None:
        """Parse `<user@host>` (brackets required); None when it is not an address.

        `utf8`: the SMTPUTF8 parameter was given, UTF-8 local parts and U-labels are allowed.

        Without brackets the text is split at the last `@` without checks,
        as `Qpsmtpd::Address->new("user@host")` does.
        """
        if text.startswith("<") and text.endswith(">"):
            user, host = canonify(text, utf8)
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

    def is_utf8(self) -> bool:
        """True when the address needs SMTPUTF8 (a non-ASCII local part or U-label)."""
        return not self.address.isascii()

    def is_null(self) -> bool:
        return self.user is None

    def format(self) -> str:
        """Canonical `<user@host>`, quoting the local part where RFC 5321 needs it.

        A local part that is not a dot-atom is quoted, every character outside
        the atom set escaped (`"a b"` -> `"a\\ b"`, as qpsmtpd writes it), so
        `"x> RET=FULL"@example.com` stays one address on the next hop.
        """
        if self.user is None:
            return "<>"
        host = "@" + self.host if self.host is not None else ""
        if not _is_dot_atom(self.user):
            escaped = "".join(char if char in _UNQUOTED or _is_utf8_char(char) else "\\" + char
                              for char in self.user)
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
