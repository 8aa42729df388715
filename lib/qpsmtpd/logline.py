"""The pieces of a log line shared by the engine and the logging plugins.

qpsmtpd's line format is `<id> (<hook>) <plugin>: <message>`; `line_prefix`
builds the part between the id and the message, `parse_level` reads a
level given as a number or a name, `write_stderr` writes one whole line.
"""

from __future__ import annotations

import os

from .constants import log_level


def line_prefix(hook: str | None, plugin: str | None) -> str:
    """` (hook) plugin:`, ` plugin:`, ` (hook) running plugin:` or ''."""
    if plugin is not None and hook is not None:
        return f" ({hook}) {plugin}:"
    if plugin is not None:
        return f" {plugin}:"
    if hook is not None:
        return f" ({hook}) running plugin:"
    return ""


def parse_level(value: str) -> int:
    """A log level from `6`, `LOGINFO` or `INFO`; ValueError for anything else.

    Any number is accepted, as the Perl qpsmtpd does (its samples up to 0.84
    said `logging/warn 9`): a number above 7 logs everything, i.e. means 7.
    """
    if value.isascii() and value.isdigit():
        return min(int(value), 7)
    level = log_level(value)
    if not isinstance(level, int) or not 0 <= level <= 7:
        raise ValueError(f"unknown log level {value!r}")
    return level


def write_stderr(line: str) -> None:
    """Write one line to fd 2 in a single write (lines of parallel sessions never mix)."""
    try:
        os.write(2, (line + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass
