"""SMTP AUTH (RFC 4954): the SASL exchange for PLAIN, LOGIN and CRAM-MD5.

`handle_auth` is called by `SMTP.auth_parse_respond` once the `auth_parse`
hooks have run.  It checks the session state (503/504 replies as qpsmtpd
gives them), runs the exchange (334 challenges, `*` cancels, base64
checks), asks the `auth-<mechanism>` hooks and then the `auth` hooks, and
answers 235 or 535.  Continuation lines are read straight from the client
and never logged.  After `max_auth_failures` failed attempts (default 3,
0 for no limit) the client is told 421 and disconnected.

`validate_password` is the helper the password-file plugins use, as
qpsmtpd's `Qpsmtpd::Auth::validate_password`.
"""

from __future__ import annotations

import binascii
import hmac
import re
from typing import TYPE_CHECKING, Any

from .command import parse
from .constants import DECLINED, DENY, LOGINFO, LOGNOTICE, OK
from .reader import ConnectionLost, LineTooLong

if TYPE_CHECKING:
    from .plugin import Plugin
    from .smtp import SMTP

SASL_LINE_LIMIT = 12288
DEFAULT_MAX_FAILURES = 3
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class _Failed(Exception):
    """The exchange ended with a reply already sent; `counts` if it is a failed attempt."""

    def __init__(self, counts: bool = True) -> None:
        super().__init__()
        self.counts = counts


def tls_required(smtp: SMTP) -> bool:
    """True when `tls_before_auth` is set and the connection is not encrypted yet."""
    return not smtp.auth_offered()


def handle_auth(smtp: SMTP, msg: list[Any], line: str | None) -> int | None:
    """Answer one AUTH command; returns the auth result (OK/DENY) or None."""
    custom = msg[0] if msg and callable(msg[0]) else None
    ok, *values = parse("auth", line, custom)
    if ok != OK:
        smtp.respond(501, (values[0] if values else None) or "Syntax error in command", esc="5.5.2")
        return None
    mechanism = str(values[0]).lower() if values else ""
    initial = values[1] if len(values) > 1 else None
    refusal = _refusal(smtp, mechanism)
    if refusal is not None:
        smtp.respond(*refusal, esc="5.5.4" if refusal[0] == 504 else "5.5.1")
        discard_pipelined_responses(smtp, mechanism, initial)
        return None
    return _exchange(smtp, mechanism, initial)


def _refusal(smtp: SMTP, mechanism: str) -> tuple[int, str] | None:
    """The 503/504 reply for an AUTH that cannot start now, or None."""
    if smtp.auth_result == OK:
        return 503, "but you already said AUTH ..."
    if smtp.connection.hello == "helo":
        return 503, "AUTH not defined for HELO"
    if smtp.transaction.sender is not None:
        return 503, "5.5.1 AUTH not permitted during a mail transaction"
    if tls_required(smtp):
        return 503, "SSL/TLS required before AUTH"
    if mechanism.upper() not in smtp.auth_mechanisms():
        return 504, f"Unimplemented authentication mechanism: {_shown(mechanism)}"
    return None


_RESPONSES_EXPECTED = {"login": 2, "plain": 1, "cram-md5": 1}
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}|\*")


def discard_pipelined_responses(smtp: SMTP, mechanism: str, initial: str | None) -> None:
    """A client that pipelined its SASL responses behind a refused AUTH: those lines are
    credentials, not commands.  Each one already sent (never waited for) that looks like
    a SASL response and is not a command word is read, answered 501 and never logged."""
    expected = _RESPONSES_EXPECTED.get(mechanism, 0) - (1 if initial else 0)
    io = smtp.io
    for _ in range(max(0, expected)):
        newline = io.buffer.find(b"\n")
        if newline < 0:
            return
        line = bytes(io.buffer[:newline]).rstrip(b"\r").decode("ascii", "replace")
        if not _BASE64.fullmatch(line) or line.lower() in smtp.commands:
            return
        del io.buffer[:newline + 1]
        smtp.log(LOGNOTICE, "discarded a pipelined AUTH response after the refusal (not logged)")
        smtp.respond(501, "5.5.2 AUTH was refused: line discarded")


def _exchange(smtp: SMTP, mechanism: str, initial: str | None) -> int | None:
    try:
        if mechanism == "plain":
            user, password, digest, ticket = *_plain(smtp, initial), None, None
        elif mechanism == "login":
            user, password, digest, ticket = *_login(smtp, initial), None, None
        elif mechanism == "cram-md5":
            ticket, user, digest = _cram_md5(smtp)
            password = None
        else:
            smtp.respond(504, f"Unimplemented authentication mechanism: {_shown(mechanism)}", esc="5.5.4")
            return None
    except _Failed as failed:
        if not failed.counts:
            return None
        smtp.auth_result = DENY
        smtp.auth_mechanism = mechanism
        _count_failure(smtp)
        return DENY
    return _decide(smtp, mechanism, user, password, digest, ticket)


def _decide(smtp: SMTP, mechanism: str, user: str, password: str | None, digest: str | None,
            ticket: str | None) -> int:
    args = (mechanism, user, password, digest, ticket)
    result = smtp.run_hooks("auth-" + mechanism, *args)
    if result.code == DECLINED:
        result = smtp.run_hooks("auth", *args)
    rc, messages = result.code, result.messages
    detail = _shown(str(messages[0])) if messages and messages[0] not in (None, "") else ""
    suffix = f" - {detail}" if detail else ""
    if rc == OK:
        return _succeed(smtp, mechanism, user, suffix)
    smtp.auth_result = DENY
    smtp.auth_mechanism = mechanism
    text = f"{mechanism.upper()} authentication failed for {_shown(user)} from {smtp.connection.remote_ip}{suffix}"
    smtp.log_decision("auth", result.plugin, 535, [text])
    if not _count_failure(smtp, text):
        smtp.respond(535, "5.7.8 " + text)
    return DENY


def _succeed(smtp: SMTP, mechanism: str, user: str, suffix: str) -> int:
    clean_user = re.sub(r"[\r\n].*", "", user, flags=re.DOTALL)
    smtp.respond(235, f"2.7.0 {mechanism.upper()} authentication successful for {_shown(clean_user)}{suffix}")
    conn = smtp.connection
    conn.notes["relay_client_before_auth"] = conn.relay_client
    conn.relay_client = 1
    if conn.notes.get("naughty"):
        smtp.log(LOGINFO, "auth success cleared naughty")
        conn.notes["naughty"] = 0
    smtp.auth_result = OK
    smtp.auth_user = clean_user
    smtp.auth_mechanism = mechanism
    return OK


def _count_failure(smtp: SMTP, text: str | None = None) -> bool:
    """Count a failed attempt; True when the limit is reached (421 sent, session ends)."""
    conn = smtp.connection
    failures = int(conn.notes.get("auth_failures") or 0) + 1
    conn.notes["auth_failures"] = failures
    limit = smtp.config_int("max_auth_failures", DEFAULT_MAX_FAILURES)
    if limit <= 0 or failures < limit:
        return False
    if text is not None:
        smtp.log(LOGINFO, text)
    smtp.log(LOGNOTICE, f"{failures} failed AUTH attempts, disconnecting")
    smtp.respond(421, f"4.7.0 {smtp.config_value('me')} Too many failed authentication attempts; closing connection")
    smtp.disconnect()
    return True


def reset_auth(smtp: SMTP) -> None:
    """Forget a previous AUTH (after STARTTLS): state, and the relaying it granted."""
    conn = smtp.connection
    if smtp.auth_result == OK and "relay_client_before_auth" in conn.notes:
        conn.relay_client = conn.notes.pop("relay_client_before_auth")
    smtp.auth_result = None
    smtp.auth_user = ""
    smtp.auth_mechanism = ""


# -- reading the client's responses ---------------------------------------------
def _read_response(smtp: SMTP) -> str:
    """One continuation line (never logged); `*` cancels, EOF ends the session."""
    try:
        raw = smtp.io.readline(max(smtp.line_limit, SASL_LINE_LIMIT))
    except LineTooLong:
        smtp.respond(500, "5.5.6 Authentication exchange line too long")
        raise _Failed() from None
    if raw is None:
        raise ConnectionLost("client closed the connection during AUTH")
    text = raw.decode("ascii", "replace").strip()
    if text == "*":
        smtp.respond(501, "5.7.0 Authentication canceled")
        raise _Failed(counts=False)
    return text


def _decode(smtp: SMTP, text: str) -> str:
    """Strict base64 (`=` is the empty string); 501 on anything else."""
    if text == "=":
        return ""
    try:
        raw = binascii.a2b_base64(text.encode("ascii", "replace"), strict_mode=True) if text else b""
    except (binascii.Error, ValueError):
        smtp.respond(501, "5.5.2 Cannot decode response")
        raise _Failed() from None
    return raw.decode("utf-8", "surrogateescape")


def _challenge(smtp: SMTP, question: str) -> str:
    import base64
    smtp.respond(334, base64.b64encode(question.encode()).decode("ascii") if question else "", esc="")
    return _decode(smtp, _read_response(smtp))


def _invalid(smtp: SMTP, text: str = "Authentication invalid") -> _Failed:
    smtp.respond(535, "5.7.8 " + text)
    return _Failed()


def _plain(smtp: SMTP, initial: str | None) -> tuple[str, str]:
    if initial:
        decoded = _decode(smtp, initial)
    else:
        decoded = _challenge(smtp, "")
    parts = decoded.split("\0")
    if len(parts) != 3:
        raise _invalid(smtp)
    authzid, user, password = parts
    if not user:
        raise _invalid(smtp, f"Authentication invalid ({_shown(authzid)})" if authzid else "Authentication invalid")
    if authzid and authzid != user:
        raise _invalid(smtp, f"Authentication invalid for {_shown(user)}")
    if not password:
        raise _invalid(smtp)
    return user, password


def _login(smtp: SMTP, initial: str | None) -> tuple[str, str]:
    user = _decode(smtp, initial) if initial else _challenge(smtp, "Username:")
    if not user:
        raise _invalid(smtp)
    password = _challenge(smtp, "Password:")
    if not password:
        raise _invalid(smtp)
    return user, password


def _cram_md5(smtp: SMTP) -> tuple[str, str, str]:
    import secrets
    import time
    ticket = f"<{secrets.randbelow(1 << 40):x}.{int(time.time()):x}@{smtp.config_value('me')}>"
    answer = _challenge(smtp, ticket)
    user, _sep, digest = answer.partition(" ")
    if not user or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
        smtp.respond(504, "5.5.2 Invalid authentication string")
        raise _Failed()
    return ticket, user, digest.lower()


def _shown(text: str) -> str:
    """Client-supplied text as it may appear in a reply or a log line."""
    return _UNPRINTABLE.sub("?", text.encode("utf-8", "replace").decode("utf-8"))


# -- for password-checking plugins ------------------------------------------------
def validate_password(plugin: Plugin, *, src_clear: str | None = None, src_crypt: str | None = None,
                      attempt_clear: str | None = None, attempt_hash: str | None = None,
                      method: str = "", ticket: str | None = None, deny: int = DENY) -> tuple[int, str]:
    """Check an attempt against a stored clear-text or crypt() password.

    Returns `(OK, name)`, `(deny, "name - wrong password")`, `(deny,
    "name - no such user")` or `(DECLINED, name)` when CRAM-MD5 cannot be
    checked (no clear-text password, no ticket).  Comparisons take constant
    time.
    """
    name = plugin.plugin_name.split("::")[-1]
    if not src_crypt and not src_clear:
        plugin.log(LOGINFO, "fail: missing password")
        return deny, f"{name} - no such user"
    if not src_clear and method.lower() == "cram-md5":
        plugin.log(LOGINFO, "skip: cram-md5 not supported w/o clear pass")
        return DECLINED, name
    if attempt_clear is not None:
        if src_clear and _same(src_clear, attempt_clear):
            plugin.log(LOGINFO, "pass: clear match")
            return OK, name
        if src_crypt and _crypt_matches(src_crypt, attempt_clear):
            plugin.log(LOGINFO, "pass: crypt match")
            return OK, name
    if attempt_hash is not None and src_clear:
        if not ticket:
            plugin.log(LOGNOTICE, "skip: missing ticket")
            return DECLINED, name
        if _same(cram_md5_digest(ticket, src_clear), attempt_hash.lower()):
            plugin.log(LOGINFO, "pass: hash match")
            return OK, name
    plugin.log(LOGINFO, "fail: wrong password")
    return deny, f"{name} - wrong password"


def cram_md5_digest(ticket: str, secret: str) -> str:
    """The hex HMAC-MD5 of the challenge keyed with the password (RFC 2195)."""
    return hmac.new(secret.encode("utf-8", "surrogateescape"), ticket.encode("utf-8", "surrogateescape"),
                    "md5").hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8", "surrogateescape"), given.encode("utf-8", "surrogateescape"))


def _crypt_matches(stored: str, attempt: str) -> bool:
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        return False
    try:
        hashed = crypt.crypt(attempt, stored)
    except (OSError, ValueError):
        return False
    return bool(hashed) and _same(stored, hashed)


__all__ = ["cram_md5_digest", "handle_auth", "reset_auth", "tls_required", "validate_password"]
