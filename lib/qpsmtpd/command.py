"""Parsing the arguments of SMTP commands, as `Qpsmtpd::Command` does.

`parse(cmd, line, custom)` returns `(code, values...)`: `OK` and the parsed
pieces, or `DENY` and the error text for the client.  MAIL and RCPT follow
RFC 1869 (address, then `KEY[=VALUE]` parameters, parsed from the right);
other commands split on spaces.  A `*_parse` hook may supply `custom`, a
callable `(cmd, line) -> (code, values...)` used instead.
"""

from __future__ import annotations

from .constants import DENY, OK

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any, Callable
    ParseResult = tuple[Any, ...]

# Matched by hand: importing `re` would cost every connection about 5 ms.
_LETTERS_DIGITS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_KEYWORD = _LETTERS_DIGITS | {"-"}
_NOT_IN_VALUE = frozenset("= ") | frozenset(chr(c) for c in range(0x20))


def parse(cmd: str, line: str | None, custom: Callable[..., ParseResult] | None = None) -> ParseResult:
    cmd = cmd.lower()
    if line is None or not line.strip():
        if cmd in ("mail", "rcpt") and not callable(custom):
            return (DENY, "Syntax error in command")  # a bare MAIL is no null sender
        if line is None:
            return (OK,)
    if callable(custom):
        try:
            return tuple(custom(cmd, line))
        except Exception:  # a plugin's parser failed: the client sees its line refused
            return (DENY, line)
    if cmd == "mail":
        return _parse_path("mail", line, "from:")
    if cmd == "rcpt":
        return _parse_path("rcpt", line, "to:")
    return (OK, *[part for part in line.split(" ") if part != ""])


def _parse_path(cmd: str, line: str, keyword: str) -> ParseResult:
    if not line[:len(keyword)].lower() == keyword:
        return (DENY, "Syntax error in command")
    return _mail_params(cmd, line[len(keyword):].lstrip())


def is_esmtp_param(token: str) -> bool:
    """`KEYWORD` or `KEYWORD=VALUE` as RFC 1869 writes them (qpsmtpd's pattern)."""
    if not token or token[0] not in _LETTERS_DIGITS:
        return False
    keyword, equals, value = token.partition("=")
    if not _KEYWORD.issuperset(keyword):
        return False
    return not equals or (bool(value) and _NOT_IN_VALUE.isdisjoint(value))


def _split_params(line: str) -> tuple[str, list[str]]:
    """Take `KEY[=VALUE]` words off the end of `line`, right to left."""
    params: list[str] = []
    while True:
        space = len(line) - 1
        while space >= 0 and not line[space].isspace():
            space -= 1
        if space < 0 or not is_esmtp_param(line[space + 1:]):
            break
        params.append(line[space + 1:])
        line = line[:space].rstrip()
    params.reverse()
    return line, params


def _space_after_at(line: str) -> bool:
    at = line.find("@")
    return at >= 0 and any(char.isspace() for char in line[at + 1:])


def _mail_params(cmd: str, line: str) -> ParseResult:
    line, params = _split_params(line.rstrip())
    if line:
        if _space_after_at(line):
            return (DENY, "Syntax error in parameters")
        return (OK, line, *params)
    address = params.pop(0) if params else ""
    if cmd == "mail":
        if not address:
            return (OK, "<>")
        return (OK, address, *params)
    if "@" in address:
        return (OK, address, *params)
    if address.lower() in ("postmaster", "abuse"):
        return (OK, address, *params)
    return (DENY, "Syntax error in address")


def params_to_dict(params: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """`['SIZE=100', 'BODY=8BITMIME']` -> `{'size': '100', 'body': '8BITMIME'}`."""
    result: dict[str, str | None] = {}
    for param in params:
        key, sep, value = param.partition("=")
        result[key.lower()] = value if sep else None
    return result


MAX_SIZE_DIGITS = 20


def size_param(value: str | None) -> int | None:
    """The number of a `SIZE=` parameter (RFC 1870: ASCII digits only), None when it is not one.

    `SIZE=²` or full-width digits are no number (Python's `isdigit`/`int` would take them);
    more than 20 digits is refused too (no real message is that big).
    """
    if not value or len(value) > MAX_SIZE_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)
