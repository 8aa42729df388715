"""Return codes and log levels shared by the engine and every plugin.

The numbers are qpsmtpd's, so a plugin ported from Perl keeps its meaning
and log parsers that know the names keep working.
"""

from __future__ import annotations

OK = 900
DENY = 901
DENYSOFT = 902
DENY_DISCONNECT = 903
DENYHARD = 903  # deprecated alias kept for old plugins
DENYSOFT_DISCONNECT = 904
DECLINED = 909
DONE = 910

LOGDEBUG = 7
LOGINFO = 6
LOGNOTICE = 5
LOGWARN = 4
LOGERROR = 3
LOGCRIT = 2
LOGALERT = 1
LOGEMERG = 0
LOGRADAR = 0

RETURN_CODES: dict[str, int] = {
    "OK": OK,
    "DENY": DENY,
    "DENYSOFT": DENYSOFT,
    "DENY_DISCONNECT": DENY_DISCONNECT,
    "DENYSOFT_DISCONNECT": DENYSOFT_DISCONNECT,
    "DECLINED": DECLINED,
    "DONE": DONE,
}
LOG_LEVELS: dict[str, int] = {
    "LOGDEBUG": LOGDEBUG,
    "LOGINFO": LOGINFO,
    "LOGNOTICE": LOGNOTICE,
    "LOGWARN": LOGWARN,
    "LOGERROR": LOGERROR,
    "LOGCRIT": LOGCRIT,
    "LOGALERT": LOGALERT,
    "LOGEMERG": LOGEMERG,
}
_CODE_NAMES = {value: name for name, value in RETURN_CODES.items()}
_LEVEL_NAMES = {value: name for name, value in LOG_LEVELS.items()}

DENY_CODES = frozenset((DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT))


def return_code(value: int | str) -> int | str | None:
    """Name of a numeric return code, or the number of a name."""
    if isinstance(value, int):
        return _CODE_NAMES.get(value)
    if str(value).isdigit():
        return _CODE_NAMES.get(int(value))
    return RETURN_CODES.get(str(value))


def log_level(value: int | str) -> int | str | None:
    """Name of a numeric log level, or the number of a name (`LOGWARN` or `WARN`)."""
    if isinstance(value, int):
        return _LEVEL_NAMES.get(value)
    text = str(value).strip()
    if text.isdigit():
        return _LEVEL_NAMES.get(int(text))
    text = text.upper()
    if not text.startswith("LOG"):
        text = "LOG" + text
    return LOG_LEVELS.get(text)


__all__ = [
    "OK", "DENY", "DENYSOFT", "DENY_DISCONNECT", "DENYHARD", "DENYSOFT_DISCONNECT",
    "DECLINED", "DONE", "LOGDEBUG", "LOGINFO", "LOGNOTICE", "LOGWARN", "LOGERROR",
    "LOGCRIT", "LOGALERT", "LOGEMERG", "LOGRADAR", "return_code", "log_level",
]
