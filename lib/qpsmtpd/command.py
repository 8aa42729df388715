"""Parsing the arguments of SMTP commands, as `Qpsmtpd::Command` does.

`parse(cmd, line, custom)` returns `(code, values...)`: `OK` and the parsed
pieces, or `DENY` and the error text for the client.  MAIL and RCPT follow
RFC 1869 (address, then `KEY[=VALUE]` parameters, parsed from the right);
other commands split on spaces.  A `*_parse` hook may supply `custom`, a
callable `(cmd, line) -> (code, values...)` used instead.
"""

from __future__ import annotations

import re

from .constants import DENY, OK

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any, Callable
    ParseResult = tuple[Any, ...]
_PARAM_AT_END = re.compile(r"\s+([A-Za-z0-9][A-Za-z0-9\-]*(?:=[^= \x00-\x1f]+)?)$")
_AT_THEN_SPACE = re.compile(r"@.*\s")
_BARE_SPECIAL = re.compile(r"^(postmaster|abuse)$", re.I)


def parse(cmd: str, line: str | None, custom: Callable[..., ParseResult] | None = None) -> ParseResult:
    if line is None:
        return (OK,)
    cmd = cmd.lower()
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


def _mail_params(cmd: str, line: str) -> ParseResult:
    line = line.rstrip()
    params: list[str] = []
    while True:
        match = _PARAM_AT_END.search(line)
        if not match:
            break
        params.append(match.group(1))
        line = line[:match.start()]
    params.reverse()
    if line:
        if _AT_THEN_SPACE.search(line):
            return (DENY, "Syntax error in parameters")
        return (OK, line, *params)
    address = params.pop(0) if params else ""
    if cmd == "mail":
        if not address:
            return (OK, "<>")
        return (OK, address, *params)
    if "@" in address:
        return (OK, address, *params)
    if _BARE_SPECIAL.match(address):
        return (OK, address, *params)
    return (DENY, "Syntax error in address")


def params_to_dict(params: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """`['SIZE=100', 'BODY=8BITMIME']` -> `{'size': '100', 'body': '8BITMIME'}`."""
    result: dict[str, str | None] = {}
    for param in params:
        key, sep, value = param.partition("=")
        result[key.lower()] = value if sep else None
    return result
