"""# queue/lmtp — deliver each message over LMTP (RFC 2033), e.g. into Dovecot

Hands every accepted message to an LMTP server (Dovecot's `lmtp`, Cyrus
`lmtpd`, Postfix's `lmtp` clients' peers) over a unix socket or TCP, and
gets one reply per recipient.

## Arguments

    queue/lmtp /run/dovecot/lmtp          # a unix socket (a path starting with /)
    queue/lmtp 127.0.0.1:24               # host:port ([v6addr]:port); port 24 by default
    queue/lmtp 127.0.0.1:24 journal_days 7

* `journal_days N` — how long the record of recipients already delivered
  is kept (default 7, longer than a sending MTA's retry period).

## Config files

* `lmtp_timeout` — seconds for the connection and each reply (default 60;
  the replies after the final `.` may take five times as long).
* `lmtp_journal_dir` — where delivered recipients of a partly failed
  message are recorded (default `<spool_dir>/lmtp-delivered`, mode 0700).

## What it sends

`LHLO <me>`, `MAIL FROM:<sender>` (with `SIZE=` and `BODY=8BITMIME` when
the server offers them, `SMTPUTF8` when an address needs it, the client's
`RET`/`ENVID` when the server offers DSN), one `RCPT TO` per recipient (with
the client's `NOTIFY`/`ORCPT` when the server offers DSN; see `config/dsn`), `DATA`, the message with CRLF line ends and dot-stuffing
(streamed from the spool; a bare CR or LF becomes CRLF, so nothing can end
the DATA early on the LMTP side), `.`, then one reply per accepted
recipient, and `QUIT`.  An address with non-ASCII characters goes out only
to a server that offers SMTPUTF8; otherwise that recipient fails with
`553 5.6.7`.

## Replies, and what happens when some recipients fail

The SMTP client has one reply for the whole message, LMTP one per
recipient.  The rule:

| LMTP outcome | SMTP reply |
| --- | --- |
| every recipient delivered (now, or in an earlier attempt) | `250 2.0.0 Delivered to N recipient(s)` |
| at least one temporary failure (4xx at RCPT or after `.`, connection lost, time-out) | `451 4.x.x` naming the failures |
| only permanent failures (5xx) besides deliveries | `554 5.x.x` naming the refused recipients and how many got it |

Delivered recipients are never delivered twice: whenever the answer is not
250, each recipient that *was* delivered is recorded in the journal (a file
named by a SHA-256 of the sender, the recipient and a fingerprint of the
message: its body and its Message-ID, Date, From, To and Subject fields).
When the client retries the same message, those recipients are skipped
(logged `already delivered`), and the answer covers only the others — so a
451 followed by a successful retry is one copy per recipient.  After a 554
the client bounces the message; the text says which recipients refused it
and that the others got it.  Unknown recipients are best refused at RCPT
(e.g. with `qmail_deliverable` or `rcpt_map`) so that this case is rare.

A message with no recipients left to deliver is answered 250 without
connecting.  Failures are logged with the server's reply.
"""

from __future__ import annotations

import os
import time

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import LOGERROR, LOGINFO, LOGNOTICE
from qpsmtpd.plugin import Plugin
from qpsmtpd.replies import Reply
from qpsmtpd.smtpclient import SmtpClient, clean_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PORT = 24
DEFAULT_TIMEOUT = 60
BLOCK_SIZE = 65536
FINGERPRINT_FIELDS = ("Message-ID", "Date", "From", "To", "Subject")


class LmtpError(Exception):
    """The session with the server failed as a whole (connect, LHLO, MAIL, DATA, lost)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def connect(target: tuple[str, str], timeout: float) -> SmtpClient:
    """A client on the unix socket or host:port of `parse_target`."""
    kind, where = target
    if kind == "unix":
        return SmtpClient(where, None, timeout)
    host, port = where.rsplit(":", 1)
    return SmtpClient(host, int(port), timeout)


def parse_target(text: str) -> tuple[str, str]:
    """`/path` (unix socket), `host`, `host:port`, `[v6]:port` -> ("unix", path) or ("tcp", "host:port")."""
    if text.startswith("/"):
        return "unix", text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else str(DEFAULT_PORT)
        return "tcp", f"[{host}]:{_port(port)}"
    if text.count(":") == 1:
        host, port = text.split(":")
        return "tcp", f"{host}:{_port(port)}"
    return "tcp", f"{text}:{DEFAULT_PORT}"


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"bad LMTP port {text!r}")
    return int(text)


class Outcome:
    """Per-recipient results of one delivery attempt."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.already: list[str] = []
        self.failed: list[tuple[str, int, str]] = []  # (address, code, text)

    def fail(self, address: str, code: int, text: str) -> None:
        self.failed.append((address, code, clean_text(text)))


class Lmtp(Plugin):
    """Delivers over LMTP with per-recipient replies."""

    arguments = Arguments(
        Option("journal_days", kind="int", default=7, minimum=0,
               help="days a delivered recipient of a partly failed message is remembered"),
        positional=(Option("target", help="unix socket path, or host[:port]"),),
    )

    def init(self, qp: Any, *args: str) -> None:
        target = self.opts["target"]
        if not target:
            raise ValueError("queue/lmtp needs a unix socket path or host:port")
        self.target = parse_target(target)

    # -- the journal of recipients already delivered ----------------------------------
    def journal_dir(self) -> str:
        return self.qp.config_value("lmtp_journal_dir") or os.path.join(self.qp.spool_dir(), "lmtp-delivered")

    @staticmethod
    def fingerprint(transaction: Any) -> str:
        import hashlib

        digest = hashlib.sha256()
        header = transaction.header
        for name in FINGERPRINT_FIELDS:
            for value in (header.get_all(name) if header is not None else []) or []:
                digest.update(f"{name}:{value}\0".encode("utf-8", "surrogateescape"))
        transaction.body_resetpos()
        for block in iter(lambda: transaction.body_read(BLOCK_SIZE), b""):
            digest.update(block)
        return digest.hexdigest()

    @staticmethod
    def journal_key(fingerprint: str, sender: str, recipient: str) -> str:
        import hashlib

        text = f"{fingerprint}\0{sender}\0{recipient.lower()}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def already_delivered(self, key: str) -> bool:
        path = os.path.join(self.journal_dir(), key)
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError:
            return False
        return age < self.opts["journal_days"] * 86400

    def record(self, keys: list[str]) -> None:
        directory = self.journal_dir()
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for key in keys:
            fd = os.open(os.path.join(directory, key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
        self.expire(directory)

    def expire(self, directory: str) -> None:
        limit = time.time() - self.opts["journal_days"] * 86400
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_file() and entry.stat().st_mtime < limit:
                        os.unlink(entry.path)
        except OSError as error:
            self.log(LOGERROR, f"journal clean-up in {directory}: {error}")

    # -- the queue hook -------------------------------------------------------------------
    def hook_queue(self, transaction: Any) -> Any:
        sender = transaction.sender.format() if transaction.sender else "<>"
        recipients = [rcpt.format() for rcpt in transaction.recipients]
        fingerprint = self.fingerprint(transaction)
        keys = {rcpt: self.journal_key(fingerprint, sender, rcpt) for rcpt in recipients}
        outcome = Outcome()
        pending = []
        for rcpt in recipients:
            if self.already_delivered(keys[rcpt]):
                self.log(LOGNOTICE, f"{rcpt}: already delivered in an earlier attempt, skipped")
                outcome.already.append(rcpt)
            else:
                pending.append(rcpt)
        if pending:
            try:
                self.deliver(transaction, sender, pending, outcome)
            except LmtpError as error:
                done = set(outcome.delivered) | {address for address, _c, _t in outcome.failed}
                for rcpt in pending:
                    if rcpt not in done:
                        outcome.fail(rcpt, error.code, error.text)
        return self.answer(outcome, keys)

    def answer(self, outcome: Outcome, keys: dict[str, str]) -> Any:
        total = len(outcome.delivered) + len(outcome.already) + len(outcome.failed)
        got = len(outcome.delivered) + len(outcome.already)
        if not outcome.failed:
            self.log(LOGINFO, f"delivered to {got} recipient(s)")
            return Reply(250, f"Delivered to {got} recipient(s)", esc="2.0.0")
        if outcome.delivered:
            try:
                self.record([keys[rcpt] for rcpt in outcome.delivered])
            except OSError as error:
                # without the record a retry would deliver twice: say so loudly, still not 250
                self.log(LOGERROR, f"cannot record delivered recipients in {self.journal_dir()}: {error}")
        temporary = [failure for failure in outcome.failed if failure[1] < 500]
        shown = temporary or outcome.failed
        details = "; ".join(f"{address}: {code} {text}" for address, code, text in shown[:3])
        for address, code, text in outcome.failed:
            self.log(LOGNOTICE, f"{address}: {code} {text}")
        if temporary:
            return Reply(451, f"Delivered to {got} of {total} recipients; try again later ({details})"[:450],
                         esc="4.3.0")
        return Reply(554, f"Delivered to {got} of {total} recipients; refused: {details}"[:450], esc="5.3.0")

    def deliver(self, transaction: Any, sender: str, recipients: list[str], outcome: Outcome) -> None:
        timeout = float(self.qp.config_int("lmtp_timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
        try:
            client = connect(self.target, timeout)
        except (OSError, ValueError) as error:
            raise LmtpError(451, f"cannot connect to {self.target[1]}: {clean_text(str(error))}") from None
        try:
            self.session(client, transaction, sender, recipients, outcome, timeout)
        except OSError as error:
            raise LmtpError(451, f"LMTP connection failed: {clean_text(str(error))}") from None
        finally:
            client.close()

    @staticmethod
    def expect(step: str, reply: tuple[int, list[str]], wanted: int = 2) -> None:
        code, lines = reply
        if code // 100 != wanted:
            raise LmtpError(451 if code < 500 else 554, f"{step}: {code} {clean_text(' '.join(lines))}")

    def session(self, client: SmtpClient, transaction: Any, sender: str, recipients: list[str],
                outcome: Outcome, timeout: float) -> None:
        self.expect("greeting", client.reply())
        me = self.qp.config_value("me") or "localhost"
        code, lines = client.command(f"LHLO {me}")
        self.expect("LHLO", (code, lines))
        offered = {line.split()[0].upper() for line in lines[1:] if line.split()}
        utf8 = not (sender.isascii() and all(rcpt.isascii() for rcpt in recipients))
        mail = f"MAIL FROM:{sender}"
        if "SIZE" in offered:
            mail += f" SIZE={transaction.message_size()}"
        if "8BITMIME" in offered:
            mail += " BODY=8BITMIME"
        dsn = "DSN" in offered and bool(getattr(self.qp, "dsn_enabled", lambda: False)())
        if dsn:
            from qpsmtpd.dsnparams import mail_dsn_params

            mail += "".join(" " + word for word in mail_dsn_params(transaction.notes.get("mail_params") or {}))
        if utf8:
            if "SMTPUTF8" not in offered:
                if not sender.isascii():
                    raise LmtpError(553, "sender needs SMTPUTF8, which the LMTP server does not offer")
            else:
                mail += " SMTPUTF8"
        self.expect("MAIL", client.command(mail))
        accepted = []
        dsn_words: dict[str, list[str]] = {}  # per address, in RCPT order: a repeated address keeps its own
        if dsn:
            from qpsmtpd.dsnparams import rcpt_dsn_params

            for address in transaction.recipients:
                words = rcpt_dsn_params(address.notes.get("rcpt_params") or {})
                dsn_words.setdefault(address.format(), []).append("".join(" " + word for word in words))
        for rcpt in recipients:
            rcpt_params = dsn_words[rcpt].pop(0) if dsn_words.get(rcpt) else ""
            if not rcpt.isascii() and "SMTPUTF8" not in offered:
                outcome.fail(rcpt, 553, "5.6.7 recipient needs SMTPUTF8, which the LMTP server does not offer")
                continue
            if not rcpt.isprintable():
                outcome.fail(rcpt, 554, "address not deliverable")
                continue
            code, lines = client.command(f"RCPT TO:{rcpt}{rcpt_params}")
            if code // 100 == 2:
                accepted.append(rcpt)
            else:
                outcome.fail(rcpt, code, f"RCPT: {' '.join(lines)}")
        if not accepted:
            client.command("QUIT", 5)
            return
        self.expect("DATA", client.command("DATA"), 3)
        client.send_message(transaction.iter_message(BLOCK_SIZE))
        for rcpt in accepted:  # RFC 2033 4.2: one reply per accepted recipient, in order
            try:
                code, lines = client.reply(timeout * 5)
            except OSError as error:
                outcome.fail(rcpt, 451, f"no reply after DATA: {error}")
                continue
            if code // 100 == 2:
                outcome.delivered.append(rcpt)
                self.log(LOGINFO, f"{rcpt}: {code} {clean_text(' '.join(lines))}")
            else:
                outcome.fail(rcpt, code, f"after DATA: {' '.join(lines)}")
        try:
            client.command("QUIT", 5)
        except OSError:
            pass
