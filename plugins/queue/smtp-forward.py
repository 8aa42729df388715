"""# queue/smtp-forward

Relays each accepted message over SMTP to another server (a smarthost, a
content filter, the real mail store) instead of queueing it locally.

## Arguments

    queue/smtp-forward host [port] [xclient]

`host` is a host name or IP address, `port` defaults to 25.  The flag
`xclient` passes the client's details (`NAME`, `ADDR`, `PORT`, `HELO`,
`PROTO`, as far as the server offers them) with Postfix's XCLIENT extension
before the mail transaction, so the next hop sees the original client; the
server must allow it (`smtpd_authorized_xclient_hosts` in Postfix).  A
server that does not advertise XCLIENT makes every message fail with 451.

## Config files

* `smtp_forward_timeout` — seconds to wait for the connection and for each
  reply (default 60, qpsmtpd's value); the reply to the final `.` may take
  five times as long.

## ESMTP parameters passed on

When the next hop offers the extension: `SIZE=<message size>` (so a
server that takes nothing that big refuses at MAIL, before the message is
sent), the client's `BODY=7BIT|8BITMIME`, `SMTPUTF8` for a transaction the
client started with it, and with `config/dsn` on the client's `RET`/`ENVID`
on MAIL and `NOTIFY`/`ORCPT` on each RCPT.  A SMTPUTF8 transaction with
non-ASCII addresses to a next hop without SMTPUTF8 is refused
`553 Unable to queue message (Non-ASCII addresses not permitted ...)`,
enhanced code 5.6.7 (RFC 6531 3.2), one with only a UTF-8 header `554`
(5.6.9); an all-ASCII one goes on without the
parameter.

## What it sends

`EHLO <me>` (`HELO` if EHLO is refused), `MAIL FROM:<sender>`, one `RCPT TO`
per recipient (every address in its RFC 5321 form: a local part that is not
a dot-atom is quoted, so `"x> RET=FULL"@example.com` stays one address and
adds no parameter; an address with a control or non-ASCII character is not
forwarded at all, 554, unless SMTPUTF8 is passed on), `DATA`, the message, `.`, `QUIT`.  The message goes out with
CRLF line ends and dot-stuffing, streamed from the spool in blocks.  Every
CR, LF or CR LF in the stored message becomes one CRLF, so a bare CR or LF
can never end a line (or the DATA) differently on the next hop than here:
no SMTP smuggling onwards.

## Replies

Every recipient must be accepted, or the whole message is refused (as
qpsmtpd does); nothing is sent after a refused step.

| next hop | reply |
| --- | --- |
| 2xx to the final `.` | `250 queued as <last word of the server's reply>` |
| 4xx at any step (EHLO/HELO, XCLIENT, MAIL, any RCPT, DATA, `.`) | `451 Unable to queue message (<step>: <server reply>)` |
| 5xx at any step (and no 4xx from another recipient) | `554 Unable to queue message (<step>: <server reply>)` |
| connection refused, timeout, lost connection | `451 Unable to queue message (...)` |

When some recipients get 4xx and others 5xx the answer is 451: the client
retries, and nothing is bounced that might still be deliverable.  Failures
are answered by the plugin itself (it returns `DONE`).
"""

from __future__ import annotations

import re

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DONE, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd.plugin import Plugin
from qpsmtpd.smtpclient import SmtpClient, clean_text, extensions

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

DEFAULT_TIMEOUT = 60
BLOCK_SIZE = 65536
_HOST = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")
XCLIENT_SAFE = re.compile(rb"[^\x21-\x7e]|[+=]")


class SmtpFailure(Exception):
    """A step failed: `code` is the reply class we answer with (451 or 554)."""

    def __init__(self, code: int, text: str, esc: str | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.esc = esc


def xtext(value: str) -> str:
    """RFC 3461 xtext, as XCLIENT attribute values are encoded."""
    raw = value.encode("utf-8", "surrogateescape")
    return XCLIENT_SAFE.sub(lambda m: b"+%02X" % m.group(0)[0], raw).decode("ascii")


def smtp_path(formatted: str, utf8: bool = False) -> str:
    """An address as the next hop gets it: `Address.format()` (RFC 5321 quoting), and
    nothing a next hop could read as a line end or a parameter separator outside quotes.
    Non-ASCII only with `utf8` (SMTPUTF8 passed on)."""
    if not (formatted.isascii() or utf8) or not formatted.isprintable():
        raise SmtpFailure(554, f"address not forwardable: {formatted.encode('ascii', 'backslashreplace').decode()!r}")
    return formatted


class SmtpForward(Plugin):
    """Relays the message over SMTP."""

    arguments = Arguments(
        Option("xclient", kind="flag", help="pass the client's details with XCLIENT"),
        positional=(Option("host", help="host name or IP address of the next hop"),
                    Option("port", help="default 25")),
        free=True,
    )

    def init(self, qp: Any, *args: str) -> None:
        host, port = self.opts["host"], self.opts["port"]
        if not host:
            raise ValueError("No SMTP server specified in smtp-forward config")
        if not _HOST.match(host):
            raise ValueError(f"Bad data in smtp server: {host}")
        self.server = host.strip("[]")
        self.port = int(port) if port and port.isascii() and port.isdigit() else 25
        self.flags: set[str] = {"xclient"} if self.opts["xclient"] else set()
        for flag in args[1:]:
            if flag in (port, "xclient"):
                continue
            if not re.fullmatch(r"\w+", flag):
                self.log(LOGWARN, "WARNING: Rejecting invalid flag")
            elif flag.lower() == "xclient":
                self.flags.add("xclient")
            else:
                self.log(LOGWARN, f"WARNING: Unknown flag {flag.lower()}")

    def fail(self, code: int, text: str, esc: str | None = None) -> int:
        self.log(LOGERROR, f"{code} {text}")
        self.qp.respond(code, text, esc=esc or ("4.3.0" if code < 500 else "5.3.0"))
        return DONE

    def hook_queue(self, transaction: Any) -> Any:
        timeout = float(self.qp.config_int("smtp_forward_timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
        self.log(LOGINFO, f"forwarding to {self.server}:{self.port}")
        try:
            client = SmtpClient(self.server, self.port, timeout)
        except OSError as error:
            return self.fail(451, f"Unable to queue message (cannot connect: {clean_text(str(error))})")
        try:
            queue_id = self.relay(client, transaction, timeout)
        except SmtpFailure as failure:
            self.quit(client)
            return self.fail(failure.code, f"Unable to queue message ({failure.text})", failure.esc)
        except OSError as error:
            return self.fail(451, f"Unable to queue message (connection failed: {clean_text(str(error))})")
        finally:
            client.close()
        self.log(LOGINFO, "finished queueing")
        return OK, f"queued as {queue_id}"

    @staticmethod
    def quit(client: SmtpClient) -> None:
        try:
            client.command("QUIT", 5)
        except OSError:
            pass

    @staticmethod
    def check(step: str, reply: tuple[int, list[str]], wanted: int = 2) -> None:
        code, lines = reply
        if code // 100 != wanted:
            permanent = code // 100 == 5
            raise SmtpFailure(554 if permanent else 451, f"{step}: {code} {clean_text(' '.join(lines))}")

    def relay(self, client: SmtpClient, transaction: Any, timeout: float) -> str:
        self.check("greeting", client.reply())
        me = self.qp.config_value("me") or "localhost"
        ehlo = self.hello(client, me)
        if "xclient" in self.flags:
            self.xclient(client, ehlo)
        offered = extensions(ehlo)
        sender = transaction.sender.format() if transaction.sender else "<>"
        utf8 = self.smtputf8_needed(transaction, offered)
        parameters = self.mail_parameters(transaction, offered, utf8, self.dsn_on())
        self.check("MAIL", client.command(f"MAIL FROM:{smtp_path(sender, utf8)}{parameters}"))
        self.recipients(client, transaction, utf8, "DSN" in offered and self.dsn_on())
        self.check("DATA", client.command("DATA"), 3)
        client.send_message(transaction.iter_message(BLOCK_SIZE))
        code, lines = client.reply(timeout * 5)
        self.check("end of data", (code, lines))
        self.quit(client)
        words = " ".join(lines).split()
        return clean_text(words[-1]) if words else ""

    def hello(self, client: SmtpClient, me: str) -> list[str] | None:
        """EHLO (its reply lines), or HELO when the server refuses EHLO (None)."""
        code, lines = client.command(f"EHLO {me}")
        if code // 100 == 2:
            return lines
        if code // 100 == 5:
            self.check("HELO", client.command(f"HELO {me}"))
            return None
        self.check("EHLO", (code, lines))
        return None

    def smtputf8_needed(self, transaction: Any, offered: set[str]) -> bool:
        """True when SMTPUTF8 goes on to the next hop; SmtpFailure (RFC 6531 3.2) when it
        would be needed and the next hop does not offer it."""
        if not transaction.notes.get("smtputf8"):
            return False
        if "SMTPUTF8" in offered:
            return True
        addresses = [transaction.sender, *transaction.recipients]
        if any(address is not None and not address.address.isascii() for address in addresses):
            raise SmtpFailure(553, "Non-ASCII addresses not permitted: the next hop does not offer SMTPUTF8",
                              esc="5.6.7")
        header = transaction.header.as_bytes() if transaction.header is not None else b""
        if not header.isascii():
            raise SmtpFailure(554, "UTF-8 header message cannot be transferred: "
                                   "the next hop does not offer SMTPUTF8", esc="5.6.9")
        return False

    def dsn_on(self) -> bool:
        """DSN parameters go on only when they were offered and checked here (config/dsn)."""
        return bool(getattr(self.qp, "dsn_enabled", lambda: False)())

    @staticmethod
    def mail_parameters(transaction: Any, offered: set[str], utf8: bool, dsn: bool = False) -> str:
        """SIZE, BODY, SMTPUTF8 and the DSN parameters the next hop offers (RFC 1870, 6152, 6531, 3461)."""
        params = transaction.notes.get("mail_params") or {}
        words = []
        if "SIZE" in offered:
            words.append(f"SIZE={transaction.message_size()}")
        body = str(params.get("body") or "").upper()
        if "8BITMIME" in offered and body in ("7BIT", "8BITMIME"):
            words.append(f"BODY={body}")
        if utf8:
            words.append("SMTPUTF8")
        if "DSN" in offered and dsn:
            from qpsmtpd.dsnparams import mail_dsn_params

            words += mail_dsn_params(params)
        return "".join(" " + word for word in words)

    def recipients(self, client: SmtpClient, transaction: Any, utf8: bool = False, dsn: bool = False) -> None:
        """Every recipient must be accepted; a temporary refusal outranks a permanent one."""
        from qpsmtpd.dsnparams import rcpt_dsn_params

        failures = []
        for rcpt in transaction.recipients:
            try:
                path = smtp_path(rcpt.format(), utf8)
                if dsn:
                    path += "".join(" " + word for word in rcpt_dsn_params(rcpt.notes.get("rcpt_params") or {}))
                self.check(f"RCPT {rcpt.address}", client.command(f"RCPT TO:{path}"))
            except SmtpFailure as failure:
                failures.append(failure)
        if failures:
            raise min(failures, key=lambda failure: failure.code)

    def xclient(self, client: SmtpClient, ehlo: list[str] | None) -> None:
        offered = None
        for line in ehlo or []:
            words = line.split()
            if words and words[0].upper() == "XCLIENT":
                offered = {word.upper() for word in words[1:]}
        if offered is None:
            raise SmtpFailure(451, "Server does not advertise XCLIENT support")
        conn = self.qp.connection
        host = conn.remote_host or ""
        if not host or host.startswith("[") or host == "Unknown":
            host = "[UNAVAILABLE]"
        hello = conn.hello_host or "[UNAVAILABLE]"
        wanted = [("NAME", host), ("ADDR", conn.remote_ip), ("PORT", conn.remote_port), ("HELO", hello),
                  ("PROTO", "ESMTP" if conn.hello == "ehlo" else "SMTP")]
        parts = [f"{name}={xtext(value)}" for name, value in wanted if name in offered and value]
        while parts:
            batch: list[str] = []
            while parts and sum(len(p) + 1 for p in batch) + len(parts[0]) <= 500:
                batch.append(parts.pop(0))
            if not batch:
                batch.append(parts.pop(0))
            self.check("XCLIENT", client.command("XCLIENT " + " ".join(batch)))
        self.check("EHLO after XCLIENT", client.command(f"EHLO {hello}"))
