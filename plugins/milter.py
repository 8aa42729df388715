"""# milter — run sendmail milters (OpenDKIM, clamav-milter, rspamd, ...) as a plugin

A client of the sendmail milter protocol, version 6: every step of the SMTP
session is shown to the milter (connect, HELO, MAIL, RCPT, DATA, each header,
end of headers, the body in chunks, end of message), its answer becomes the
SMTP reply of that step, and the changes it asks for at end of message are
made to the message before it is queued.

## Arguments

    milter NAME [HOST:]PORT [key value ...]
    milter NAME unix:/path/to/socket [key value ...]

`NAME` names the milter in log lines and notes.  The address is `PORT`
(on 127.0.0.1), `HOST:PORT`, `[IPv6]:PORT`, Postfix/sendmail style
`inet:PORT@HOST` / `inet6:PORT@HOST`, or a unix socket as `unix:/path`,
`local:/path` or `/path`.  Options:

| option | default | what |
| --- | --- | --- |
| `default_action` | `tempfail` | what the client gets when the milter is down, too slow, drops the connection or talks garbage: `accept` (go on without it for the rest of the session), `tempfail` (451 4.7.1), `reject` (550/554 5.7.1) — like Postfix's `milter_default_action` |
| `connect_timeout` | 5 | seconds to connect and negotiate |
| `command_timeout` | 10 | seconds for the milter's answer to each of connect, HELO, MAIL, RCPT, DATA, each header and end of headers |
| `body_timeout` | 20 | seconds for the answer to each body chunk (64 KB) |
| `eom_timeout` | 20 | seconds for the answer at end of message (a "progress" packet restarts every time-out) |

Several milters run in a row, each on its own line; each one sees the
message as the milters listed before it left it:

    milter opendkim 127.0.0.1:8891
    milter clamav unix:/run/clamav/clamav-milter.ctl default_action accept
    milter rspamd 127.0.0.1:11332 eom_timeout 25
    rcpt_ok

List the milters **before** `rcpt_ok` (or whatever accepts recipients): a
plugin that accepts a recipient ends the RCPT step, so a milter listed after
it is shown that recipient only at DATA (it still sees MAIL, every recipient
and DATA in order, but cannot refuse the one recipient at RCPT any more).  A milter never accepts a recipient by itself (no open relay): its
"accept" means "no more filtering of this message".  The whole end-of-data
conversation runs in one hook, under `config/plugin_timeout` (30 s by
default): for big messages through slow milters raise it for this plugin
(`milter 120` in `config/plugin_timeout`).

## What the milter's answers do

| answer | at connect | at HELO, MAIL, RCPT, DATA | at headers/body/end of message |
| --- | --- | --- | --- |
| continue | go on | go on | go on |
| accept | no more filtering this session | no more filtering of this message (at HELO: of the session) | the message goes on to the queue |
| reject | 554 5.7.1, disconnect | 550 5.7.1 Command rejected (at RCPT: that recipient only) | 550 5.7.1 Message content rejected |
| tempfail | 421 4.7.1, disconnect | 451 4.7.1 Service unavailable - try again later | 451 4.7.1 |
| reply code | the milter's own code, enhanced code and lines (several lines allowed) | the same | the same |
| discard | every message of the session is discarded | the message is accepted (250) and thrown away | the same |

After a message-level reject or tempfail the milter is told to abort the
message; RSET, a rejection by another plugin and the end of the session
abort it too.  Steps the milter asked to leave out are not sent, and steps
it promised not to answer are not waited for.

Changes at end of message, made in the order the milter sent them, before
the next plugin runs: add, insert and change (or delete) a header, change
the envelope sender, add and delete recipients, replace the body (spooled to
disk as it arrives, never held in memory) and quarantine (the reason is
stored in the transaction note `quarantine` for the queue plugin and logged;
the message is queued).  A change the milter did not announce when it
negotiated is ignored and logged.

Macros sent: at connect `j _ v {daemon_name} {daemon_addr} {daemon_port}
{if_name} {if_addr} {client_addr} {client_port} {client_name}`; at HELO
`{tls_version} {cipher}` (with TLS); at MAIL `i {mail_addr} {mail_host}
{mail_mailer} {auth_type} {auth_authen}` (after AUTH); at RCPT `{rcpt_addr}
{rcpt_host} {rcpt_mailer}`; `i` at DATA, end of headers and end of message.
A milter that asks for a list of macros gets only those.

## Notes

`transaction.notes["milter"][NAME]` holds the step and answer that decided
(`{"step": "eom", "action": "reject", "reply": "550 ..."}`) and the changes
made (`"changes": [...]`).

## Log

One line per decision: `milter NAME: reject at rcpt from 192.0.2.1: 550 5.7.1 ...`;
a failing milter: `milter NAME (127.0.0.1:8891) failed at mail: connection refused;
default_action tempfail` (LOGERROR).
"""

from __future__ import annotations

import os

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DONE, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd.header import HeaderField
from qpsmtpd.milter import (
    BODY_CHUNK,
    CONTINUE,
    HDR_LEADSPC,
    MilterClient,
    MilterError,
    Modification,
    Timeouts,
    Verdict,
    parse_address,
)
from qpsmtpd.plugin import Plugin, PluginError
from qpsmtpd.replies import Reply, valid_esc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from qpsmtpd.transaction import Transaction

READ_BLOCK = BODY_CHUNK // 2  # LF -> CRLF at most doubles a block
CONNECTION_STEPS = ("connect", "helo")
DEFAULT_TEXT = {
    "reject": ("5.7.1", "Command rejected"),
    "reject_content": ("5.7.1", "Message content rejected"),
    "tempfail": ("4.7.1", "Service unavailable - try again later"),
}


class Milter(Plugin):
    arguments = Arguments(
        Option("default_action", default="tempfail", choices=("accept", "tempfail", "reject"), strict=True,
               help="what the client gets when the milter cannot be used"),
        Option("connect_timeout", kind="float", default=5.0, minimum=0.01),
        Option("command_timeout", kind="float", default=10.0, minimum=0.01),
        Option("body_timeout", kind="float", default=20.0, minimum=0.01),
        Option("eom_timeout", kind="float", default=20.0, minimum=0.01),
        positional=(Option("name"), Option("address")),
    )

    def init(self, qp: Any, *args: str) -> None:
        name, address = self.opts.get("name"), self.opts.get("address")
        if not name or not address:
            raise PluginError(f"{self.plugin_name}: usage: milter NAME [HOST:]PORT|unix:/path [options]")
        try:
            parse_address(address)
        except ValueError as error:
            raise PluginError(f"{self.plugin_name}: {error}") from None
        self.milter_name = name
        self.address = address
        self.timeouts = Timeouts(self.opts["connect_timeout"], self.opts["command_timeout"],
                                 self.opts["body_timeout"], self.opts["eom_timeout"])
        self.client: MilterClient | None = None
        self.session_done = False     # the milter accepted the session (or default_action accept)
        self.discard_all = False      # the milter discarded at connect/HELO: every message goes
        self._reset_message()
        self._message_count = 0

    def _reset_message(self) -> None:
        self.in_message = False       # MAIL sent, message not ended (abort owed)
        self.sent_rcpts: set[str] = set()  # recipients the milter was shown
        self.data_sent = False
        self.message_done = False     # accepted or discarded: nothing more to send for this message
        self.discard = False
        self.failed: str | None = None  # the default action owed for the rest of this message

    # -- hooks ----------------------------------------------------------------
    def hook_connect(self, transaction: Transaction) -> Any:
        try:
            verdict = self._open()
        except MilterError as error:
            self._log_failure("connect", error)
            return DECLINED  # retried at MAIL; the default action applies there
        except BaseException:
            self._drop()  # the plugin's time limit: start afresh at MAIL
            raise
        return self._answer("connect", verdict)

    def hook_helo(self, transaction: Transaction, host: str, *args: Any) -> Any:
        if self.session_done or self.client is None:
            return DECLINED
        try:
            verdict = self.client.helo(host, self._helo_macros())
        except MilterError as error:
            self._log_failure("helo", error)
            self._drop()
            return DECLINED
        except BaseException:
            self._drop()
            raise
        return self._answer("helo", verdict)

    hook_ehlo = hook_helo

    def hook_mail(self, transaction: Transaction, sender: Any, params: dict[str, Any] | None = None) -> Any:
        if self.in_message:
            self._abort()
        self._reset_message()
        if self.session_done:
            return DECLINED
        self._message_count += 1
        return self._message_step("mail", lambda client: self._send_mail(client, sender, _esmtp_args(params)))

    def hook_rcpt(self, transaction: Transaction, recipient: Any, params: dict[str, Any] | None = None) -> Any:
        return self._message_step("rcpt", lambda client: self._send_rcpt(client, recipient, _esmtp_args(params)))

    def hook_data(self, transaction: Transaction) -> Any:
        return self._message_step("data", self._send_data)

    def hook_data_post(self, transaction: Transaction) -> Any:
        if self.discard_all or self.discard:
            return self._discard(transaction)
        if self.session_done or self.message_done:
            return DECLINED
        if self.failed:
            return self._default_reply("eom")
        body_path: str | None = None
        try:
            verdict = self._prepare("eom")
            if verdict.action != "continue":
                return self._answer("eom", verdict)
            client = self.client
            assert client is not None
            verdict = self._send_header(client, transaction)
            if verdict.action in ("continue", "skip"):
                body_path = self.temp_file()
                sink = _BodySpool(body_path)
                try:
                    end = client.eom(sink.write, {"i": self._queue_id()})
                finally:
                    sink.close()
                self.in_message = False
                if end.refused:
                    self.log(LOGWARN, f"milter {self.milter_name}: ignored changes it had not announced: "
                                      f"{', '.join(end.refused)}")
                verdict = end.verdict
                if verdict.action in ("continue", "accept"):
                    self._apply(transaction, end.modifications, body_path if end.body_replaced else None)
        except MilterError as error:
            self._log_failure("eom", error)
            self._drop()
            return self._default_reply("eom")
        except BaseException:
            self._drop()  # a time-out in the middle of the conversation: the stream is out of step
            raise
        if verdict.action == "discard":
            self.in_message = False
            return self._discard(transaction)
        return self._answer("eom", verdict)

    def hook_reset_transaction(self, transaction: Transaction) -> Any:
        if self.in_message:
            self._abort()
        self._reset_message()
        return DECLINED

    def hook_disconnect(self, transaction: Transaction) -> Any:
        if self.client is not None:
            if self.in_message:
                self._abort()
            if self.client is not None:
                self.client.quit()
            self.client = None
        return DECLINED

    # -- steps ----------------------------------------------------------------
    def _open(self) -> Verdict:
        """Connect, negotiate, and show the milter the connection (and HELO, when it was already given)."""
        client = MilterClient(self.address, self.timeouts)
        client.open()
        self.client = client
        try:
            verdict = client.connect(self._client_name(), self.connection.remote_ip or "",
                                     _int(self.connection.remote_port), self._connect_macros())
            if verdict.action == "continue" and self.connection.hello_host:
                verdict = client.helo(self.connection.hello_host, self._helo_macros())
        except MilterError:
            self._drop()
            raise
        return verdict

    def _message_step(self, step: str, send: Any) -> Any:
        if self.session_done or self.message_done or self.discard_all:
            return DECLINED
        if self.failed:
            return self._default_reply(step)
        try:
            verdict = self._prepare(step)
            if verdict.action == "continue":
                assert self.client is not None
                verdict = send(self.client)
        except MilterError as error:
            self._log_failure(step, error)
            self._drop()
            return self._default_reply(step)
        except BaseException:
            self._drop()
            raise
        return self._answer(step, verdict)

    def _prepare(self, step: str) -> Verdict:
        """Connect if needed, then show the milter what it missed before `step`.

        A plugin listed before this one may end a step (`rcpt_ok` returns OK
        at RCPT, a whitelist at MAIL), and a reconnect starts from nothing:
        the milter still gets MAIL, every recipient and DATA in order.
        """
        if self.client is None:
            verdict = self._open()
            if verdict.action != "continue":
                return verdict
        client = self.client
        assert client is not None
        transaction = self.transaction
        if step == "mail" or transaction.sender is None:
            return CONTINUE
        if not self.in_message:
            verdict = self._send_mail(client, transaction.sender, [])
            if verdict.action != "continue":
                return verdict
        if step == "rcpt":
            return CONTINUE
        for recipient in list(transaction.recipients):
            if recipient.address not in self.sent_rcpts:
                verdict = self._send_rcpt(client, recipient, [])
                if verdict.action != "continue":
                    return verdict
        if step == "eom" and not self.data_sent:
            return self._send_data(client)
        return CONTINUE

    def _send_mail(self, client: MilterClient, sender: Any, args: list[str]) -> Verdict:
        self.in_message = True
        return client.mail(sender.format(), args, self._mail_macros(sender))

    def _send_rcpt(self, client: MilterClient, recipient: Any, args: list[str]) -> Verdict:
        self.sent_rcpts.add(recipient.address)
        macros = {"{rcpt_addr}": recipient.address, "{rcpt_host}": recipient.host, "{rcpt_mailer}": "smtp"}
        return client.rcpt(recipient.format(), args, macros)

    def _send_data(self, client: MilterClient) -> Verdict:
        self.data_sent = True
        return client.data({"i": self._queue_id()})

    def _send_header(self, client: MilterClient, transaction: Transaction) -> Verdict:
        """Each header field, end of headers, then the body chunks; the first answer that is not continue."""
        leading_space = bool(client.protocol & HDR_LEADSPC)
        if transaction.header is not None and client.wants("header"):
            for field in transaction.header.fields:
                value = field.raw.removesuffix("\n")
                if not leading_space:
                    value = value.lstrip(" \t")
                verdict = client.header(field.name, value)
                if verdict.action != "continue":
                    return verdict
        verdict = client.eoh({"i": self._queue_id()})
        if verdict.action != "continue" or not client.wants("body"):
            return verdict
        transaction.body_resetpos()
        first = True
        while True:
            block = transaction.body_read(READ_BLOCK)
            if not block:
                return CONTINUE
            if first and block.startswith(b"\n"):
                block = block[1:]  # the blank line between header and body is not body
            first = False
            if not block:
                continue
            verdict = client.body(block.replace(b"\n", b"\r\n"))
            if verdict.action != "continue":
                return verdict

    def _abort(self) -> None:
        self.in_message = False
        if self.client is None:
            return
        try:
            self.client.abort()
        except MilterError as error:
            self._log_failure("abort", error)
            self._drop()

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self.in_message = False

    # -- answers ----------------------------------------------------------------
    def _answer(self, step: str, verdict: Verdict) -> Any:
        action = verdict.action
        if action == "continue":
            return DECLINED
        if action == "accept":
            if step in CONNECTION_STEPS:
                self.session_done = True
            else:
                self.message_done = True
            self._note(step, verdict, "")
            self.log(LOGINFO, f"milter {self.milter_name}: accept at {step} from {self.connection.remote_ip}")
            return DECLINED
        if action == "discard":
            if step in CONNECTION_STEPS:
                self.discard_all = True
            else:
                self.discard = True
                self.message_done = True
            self._note(step, verdict, "")
            self.log(LOGINFO, f"milter {self.milter_name}: discard at {step} from {self.connection.remote_ip}")
            return DECLINED
        reply = self._reply(step, verdict)
        if step not in CONNECTION_STEPS and step != "rcpt":
            self._abort()
            self.message_done = True
        text = f"{reply.code} {reply.esc + ' ' if reply.esc else ''}{' / '.join(reply.lines)}"
        self._note(step, verdict, text)
        self.log(LOGINFO, f"milter {self.milter_name}: {action} at {step} from {self.connection.remote_ip}: {text}")
        return reply

    def _reply(self, step: str, verdict: Verdict) -> Reply:
        at_connect = step == "connect"
        if verdict.action == "replycode":
            code = verdict.code
            if at_connect and code // 100 == 4:
                code = 421
            esc = verdict.esc if verdict.esc and valid_esc(verdict.esc, code) else None
            return Reply(code, *(verdict.lines or [""]), esc=esc)
        if verdict.action == "tempfail":
            esc, text = DEFAULT_TEXT["tempfail"]
            return Reply(421 if at_connect else 451, text, esc=esc)
        esc, text = DEFAULT_TEXT["reject_content" if step == "eom" else "reject"]
        return Reply(554 if at_connect or step == "data" else 550, text, esc=esc)

    def _default_reply(self, step: str) -> Any:
        action = self.opts["default_action"]
        if action == "accept":
            self.session_done = True
            return DECLINED
        if step not in CONNECTION_STEPS:
            self.failed = action
        return self._reply(step, Verdict("tempfail" if action == "tempfail" else "reject"))

    def _discard(self, transaction: Transaction) -> Any:
        """Answer 250 and drop the message (the milter asked for it); nothing is queued."""
        self.log(LOGINFO, f"milter {self.milter_name}: message from {self.connection.remote_ip} discarded")
        transaction.notes["discarded"] = self.milter_name
        self.qp.respond(250, "Ok, discarded", esc="2.7.0")
        return DONE

    def _note(self, step: str, verdict: Verdict, reply: str) -> None:
        notes = self.transaction.notes.setdefault("milter", {})
        notes.setdefault(self.milter_name, {}).update(step=step, action=verdict.action, reply=reply)

    def _log_failure(self, step: str, error: MilterError) -> None:
        self.log(LOGERROR, f"milter {self.milter_name} ({self.address}) failed at {step}: {error}; "
                           f"default_action {self.opts['default_action']}")

    # -- changes at end of message ------------------------------------------------
    def _apply(self, transaction: Transaction, changes: list[Modification], body_path: str | None) -> None:
        leading_space = bool(self.client and self.client.protocol & HDR_LEADSPC)
        done: list[str] = []
        for change in changes:
            done.append(self._apply_one(transaction, change, leading_space))
        if body_path is not None:
            with open(body_path, "rb") as body:
                transaction.body_replace(body)
            done.append("replace_body")
        if done:
            notes = transaction.notes.setdefault("milter", {}).setdefault(self.milter_name, {})
            notes.setdefault("changes", []).extend(done)
            self.log(LOGINFO, f"milter {self.milter_name}: changes: {', '.join(done)}")

    def _apply_one(self, transaction: Transaction, change: Modification, leading_space: bool) -> str:
        kind = change.kind
        header = transaction.header
        if kind in ("add_header", "insert_header", "change_header"):
            if header is None or not _is_field_name(change.name):
                raise MilterError(f"bad header name from milter: {change.name!r}")
            field = HeaderField(change.name, _raw_value(change.value, leading_space))
            if kind == "add_header":
                header.fields.append(field)
            elif kind == "insert_header":
                header.fields.insert(min(change.index, len(header.fields)), field)
            else:
                _change_header(header, change, field)
            return f"{kind} {change.name}"
        if kind == "quarantine":
            transaction.notes["quarantine"] = change.reason
            self.log(LOGWARN, f"milter {self.milter_name}: quarantine requested: {change.reason}")
            return "quarantine"
        address = self.qp.address(change.address if change.address.startswith("<") else f"<{change.address}>")
        if address is None:
            raise MilterError(f"bad address from milter in {kind}: {change.address!r}")
        if kind == "change_from":
            transaction.sender = address
        elif kind == "add_rcpt":
            if all(rcpt.address.lower() != address.address.lower() for rcpt in transaction.recipients):
                transaction.add_recipient(address)
        else:
            transaction.recipients = [rcpt for rcpt in transaction.recipients
                                      if rcpt.address.lower() != address.address.lower()]
        return f"{kind} {address.format()}"

    # -- macros -----------------------------------------------------------------
    def _client_name(self) -> str:
        conn = self.connection
        host = conn.remote_host
        if host and not host.startswith("[") and host != conn.remote_ip:
            return host
        return f"[{conn.remote_ip}]" if conn.remote_ip else "localhost"

    def _connect_macros(self) -> dict[str, str]:
        conn = self.connection
        me = self.qp.config_value("me") or "localhost"
        return {"j": me, "_": f"{self._client_name()} [{conn.remote_ip}]", "v": f"qpsmtpd {self.qp.version}",
                "{daemon_name}": "qpsmtpd", "{daemon_addr}": conn.local_ip, "{daemon_port}": conn.local_port,
                "{if_name}": me, "{if_addr}": conn.local_ip, "{client_addr}": conn.remote_ip,
                "{client_port}": conn.remote_port, "{client_name}": self._client_name()}

    def _helo_macros(self) -> dict[str, str]:
        notes = self.connection.notes
        if not notes.get("tls_enabled"):
            return {}
        return {"{tls_version}": notes.get("tls_version") or "TLS", "{cipher}": notes.get("tls_cipher") or ""}

    def _mail_macros(self, sender: Any) -> dict[str, str]:
        macros = {"i": self._queue_id(), "{mail_addr}": sender.address, "{mail_host}": sender.host or "",
                  "{mail_mailer}": "esmtp" if self.connection.hello == "ehlo" else "smtp"}
        if self.qp.authenticated():
            macros.update({"{auth_type}": (self.auth_mechanism or "").upper(), "{auth_authen}": self.auth_user})
        return macros

    def _queue_id(self) -> str:
        return self.transaction.notes.get("transaction_id") or f"{self.connection.id}.{self._message_count}"


class _BodySpool:
    """A replaced body as the milter sends it (CRLF), written to a 0600 file with LF line ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.handle: Any = None
        self.carry = b""

    def write(self, chunk: bytes) -> None:
        if self.handle is None:
            self.handle = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        data = self.carry + chunk
        self.carry = b"\r" if data.endswith(b"\r") else b""
        if self.carry:
            data = data[:-1]
        self.handle.write(data.replace(b"\r\n", b"\n"))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.write(self.carry)
            self.handle.close()
            self.handle = None


def _raw_value(value: str, leading_space: bool) -> str:
    """The stored text after "Name:" for a value from the milter: its folds kept, no new field smuggled in."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = [lines[0]] + [line if line[:1] in (" ", "\t") else "\t" + line for line in lines[1:] if line.strip()]
    text = "\n".join(kept)
    if not leading_space and not text.startswith((" ", "\t")):
        text = " " + text
    return text + "\n"


def _change_header(header: Any, change: Modification, field: HeaderField) -> None:
    """SMFIR_CHGHEADER: the index-th field of that name (1-based) replaced, or deleted for an empty value."""
    wanted = change.name.lower()
    matches = [existing for existing in header.fields if existing.name.lower() == wanted]
    position = max(change.index, 1) - 1
    if position >= len(matches):
        if change.value:
            header.fields.append(field)
        return
    target = matches[position]
    if not change.value:
        header.fields = [existing for existing in header.fields if existing is not target]
    else:
        target.raw = field.raw


def _is_field_name(name: str) -> bool:
    return bool(name) and all(33 <= ord(char) <= 126 and char != ":" for char in name)


def _esmtp_args(params: dict[str, Any] | None) -> list[str]:
    """MAIL/RCPT parameters as the milter gets them: `SIZE=100`, `SMTPUTF8`."""
    return [key.upper() if value is None else f"{key.upper()}={value}" for key, value in (params or {}).items()]


def _int(text: str) -> int:
    return int(text) if text and text.isdigit() and int(text) < 65536 else 0
