"""DSN parameters (RFC 3461): RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT.

When `config/dsn` is on, EHLO advertises `DSN` and these parameters are
checked (a bad one is `501 5.5.4`); they stay in the transaction
(`transaction.notes["mail_params"]`, `rcpt.notes["rcpt_params"]`) and the
queue plugins that talk to a next hop (`queue/smtp-forward`, `queue/lmtp`)
pass them on to a server that offers DSN.  This server writes no delivery
status notifications itself (qpsmtpd never did): it is off by default, so a
client is not promised notices that only a next hop can give.
"""

from __future__ import annotations

_XCHAR = frozenset(chr(code) for code in range(0x21, 0x7F)) - {"+", "="}
_HEX = frozenset("0123456789ABCDEF")
_ADDR_TYPE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
NOTIFY_WORDS = frozenset(("SUCCESS", "FAILURE", "DELAY"))
MAX_ENVID = 100
MAX_ORCPT = 500


def is_xtext(text: str) -> bool:
    """RFC 3461 4: printable ASCII but `+` and `=`, and `+XX` (upper-case hex) escapes."""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "+":
            if not _HEX.issuperset(text[index + 1:index + 3]) or len(text[index + 1:index + 3]) != 2:
                return False
            index += 3
            continue
        if char not in _XCHAR:
            return False
        index += 1
    return True


def mail_error(params: dict[str, str | None]) -> str | None:
    """What is wrong with MAIL's RET/ENVID, or None."""
    if "ret" in params:
        if str(params["ret"] or "").upper() not in ("FULL", "HDRS"):
            return "RET must be FULL or HDRS"
    if "envid" in params:
        value = params["envid"] or ""
        if not value or len(value) > MAX_ENVID or not is_xtext(value):
            return "ENVID must be xtext of at most 100 characters"
    for name in ("notify", "orcpt"):
        if name in params:
            return f"{name.upper()} belongs on RCPT"
    return None


def rcpt_error(params: dict[str, str | None]) -> str | None:
    """What is wrong with RCPT's NOTIFY/ORCPT, or None."""
    if "notify" in params:
        words = [word.upper() for word in str(params["notify"] or "").split(",")]
        if words != ["NEVER"] and (not words or not NOTIFY_WORDS.issuperset(words) or len(set(words)) != len(words)):
            return "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"
    if "orcpt" in params:
        value = params["orcpt"] or ""
        kind, semicolon, address = value.partition(";")
        if (not semicolon or not kind or not _ADDR_TYPE.issuperset(kind) or not address
                or len(value) > MAX_ORCPT or not is_xtext(address)):
            return "ORCPT must be addr-type;xtext"
    for name in ("ret", "envid"):
        if name in params:
            return f"{name.upper()} belongs on MAIL"
    return None


def mail_dsn_params(params: dict[str, str | None]) -> list[str]:
    """`RET=`/`ENVID=` words to pass on (as the client gave them, already checked)."""
    return [f"{name.upper()}={params[name]}" for name in ("ret", "envid") if params.get(name)]


def rcpt_dsn_params(params: dict[str, str | None]) -> list[str]:
    return [f"{name.upper()}={params[name]}" for name in ("notify", "orcpt") if params.get(name)]
