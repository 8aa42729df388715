"""# rspamd — scan each message with rspamd and act on its verdict

Sends the message to rspamd's normal worker over its HTTP protocol
(`POST /checkv2`, over TCP or a unix socket) at the end of DATA, with the
connection facts as request headers (`IP`, `Helo`, `Hostname`, `From`, one
`Rcpt` per recipient, `Queue-Id`, `MTA-Name`, `User` after AUTH,
`Settings-ID`, `TLS-Cipher`/`TLS-Version` with TLS).  The message is streamed
from the spool, never held in memory whole.

## Arguments

    rspamd [host HOST] [port PORT] [socket PATH] [key value ...]

| option | default | what |
| --- | --- | --- |
| `host`, `port` | 127.0.0.1, 11333 | the normal worker (the keys of Haraka's rspamd plugin) |
| `socket` | — | a unix socket of the normal worker instead of host/port |
| `timeout` | 15 | seconds for the whole request (connect, send, answer) |
| `connect_timeout` | 3 | seconds to connect |
| `default_action` | `tempfail` | when rspamd is down, too slow or answers garbage: `accept` (queue it, header `X-Spam-Action: unscanned`), `tempfail` (451 4.7.1), `reject` (554 5.7.1) |
| `reject` | 1 | act on rspamd's `reject` (0: only mark the message) |
| `soft_reject` | 1 | act on `soft reject` (0: only mark the message) |
| `rewrite_subject` | 1 | act on `rewrite subject` (0: only mark the message) |
| `spam_header` | `X-Spam` | the header `add header` (and `rewrite subject`) adds, with the value `Yes` |
| `score_headers` | 1 | add `X-Spam-Action`, `X-Spam-Score` and `X-Spam-Symbols` (0: none) |
| `milter_headers` | 1 | apply rspamd's header changes (`milter.add_headers`, `milter.remove_headers`) and a `dkim-signature` it made |
| `size_limit` | 50000000 | bytes; bigger messages are not scanned (logged, `X-Spam-Action: unscanned`) |
| `relay_clients` | `scan` | `scan` or `skip` relay clients (authenticated users, `relayclient`) |
| `settings_id` | — | rspamd settings id (`Settings-ID`) for every message |
| `settings_id_relay` | — | settings id for relay clients and authenticated users instead |

Authenticated users are sent as `User`, so rspamd applies its
authenticated-user rules (it skips SPF/greylisting/... for them).

## What rspamd's action does

As rspamd's own milter (its proxy worker) does it:

| action | here |
| --- | --- |
| `reject` | 554 5.7.1 and rspamd's `smtp_message` (default "Spam message rejected") |
| `soft reject` | 451 4.7.1 and rspamd's `smtp_message` (default "Try again later") |
| `rewrite subject` | the Subject becomes rspamd's `subject` (default `***SPAM*** ` before it), and the `spam_header` is added |
| `add header` | the `spam_header` (`X-Spam: Yes`) is added |
| `greylist`, `no action` | accepted (rspamd's greylist module answers `soft reject` when it greylists) |
| `discard` | 250, the message is not queued |
| `quarantine` | queued with the transaction note `quarantine` for the queue plugin |

Headers the client sent under the names this plugin writes are removed first.

## Notes

`transaction.notes["rspamd"]`: `{"action", "score", "required_score",
"symbols": {name: score}, "options": {name: [options]}, "message",
"is_skipped"}`; other plugins (e.g. a
queue that files spam elsewhere) read it.  `transaction.notes["spam"]` is
True for reject, soft reject, rewrite subject and add header.

## Example

    rspamd socket /run/rspamd/normal.sock relay_clients scan settings_id_relay outbound

## Log

`rspamd: reject from 192.0.2.1 (score 1000.00/15.00): 554 5.7.1 Gtube pattern`;
`rspamd: 127.0.0.1:11333 failed: timed out; default_action tempfail` (LOGERROR).
"""

from __future__ import annotations

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DONE, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd.header import HeaderField
from qpsmtpd.plugin import Plugin
from qpsmtpd.replies import Reply
from qpsmtpd.rspamd import RspamdClient, RspamdError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from qpsmtpd.transaction import Transaction

SCORE_HEADERS = ("X-Spam-Action", "X-Spam-Score", "X-Spam-Symbols")
SPAM_ACTIONS = frozenset(("reject", "soft reject", "rewrite subject", "add header"))


class Rspamd(Plugin):
    arguments = Arguments(
        Option("host", default="127.0.0.1"),
        Option("port", kind="int", default=11333, minimum=1, maximum=65535, strict=True),
        Option("socket", aliases=("unix_socket",)),
        Option("timeout", kind="float", default=15.0, minimum=0.01),
        Option("connect_timeout", kind="float", default=3.0, minimum=0.01),
        Option("default_action", default="tempfail", choices=("accept", "tempfail", "reject"), strict=True),
        Option("reject", kind="bool", default=True),
        Option("soft_reject", kind="bool", default=True),
        Option("rewrite_subject", kind="bool", default=True),
        Option("spam_header", default="X-Spam"),
        Option("score_headers", kind="bool", default=True),
        Option("milter_headers", kind="bool", default=True),
        Option("size_limit", kind="int", default=50_000_000, minimum=1),
        Option("relay_clients", default="scan", choices=("scan", "skip"), strict=True),
        Option("settings_id"),
        Option("settings_id_relay"),
    )

    def init(self, qp: Any, *args: str) -> None:
        self.client = RspamdClient(self.opts["host"], self.opts["port"], self.opts["socket"],
                                   self.opts["timeout"], self.opts["connect_timeout"])

    def hook_data_post(self, transaction: Transaction) -> Any:
        relay = self.is_relay_client()
        if relay and self.opts["relay_clients"] == "skip":
            self.log(LOGINFO, "skip: relay client")
            return DECLINED
        size = transaction.message_size()
        if size > self.opts["size_limit"]:
            self.log(LOGINFO, f"skip: message of {size} bytes is over size_limit {self.opts['size_limit']}")
            self._mark_unscanned(transaction)
            return DECLINED
        try:
            result = self.client.check(self._request_headers(transaction, relay), transaction.iter_message(), size)
            action = str(result.get("action", ""))
            if not action:
                raise RspamdError(f"garbage from {self.client.address}: no action in the answer")
        except RspamdError as error:
            return self._failed(transaction, error)
        return self._act(transaction, result, action)

    # -- request ------------------------------------------------------------
    def _request_headers(self, transaction: Transaction, relay: bool) -> dict[str, Any]:
        conn = self.connection
        headers: dict[str, Any] = {"IP": conn.remote_ip}
        if conn.hello_host:
            headers["Helo"] = conn.hello_host
        if conn.remote_host and not conn.remote_host.startswith("[") and conn.remote_host != conn.remote_ip:
            headers["Hostname"] = conn.remote_host
        if transaction.sender is not None:
            headers["From"] = transaction.sender.address or "<>"
        headers["Rcpt"] = [rcpt.address for rcpt in transaction.recipients]
        headers["Queue-Id"] = transaction.notes.get("transaction_id") or conn.id
        headers["MTA-Name"] = self.qp.config_value("me") or "localhost"
        if self.qp.authenticated() and self.auth_user:
            headers["User"] = self.auth_user
        settings = self.opts["settings_id_relay"] if relay and self.opts["settings_id_relay"] else self.opts["settings_id"]
        if settings:
            headers["Settings-ID"] = settings
        if conn.notes.get("tls_enabled"):
            headers["TLS-Cipher"] = conn.notes.get("tls_cipher") or "unknown"
            headers["TLS-Version"] = conn.notes.get("tls_version") or "unknown"
        return headers

    # -- answer ---------------------------------------------------------------
    def _act(self, transaction: Transaction, result: dict[str, Any], action: str) -> Any:
        score, required = _number(result.get("score")), _number(result.get("required_score"))
        symbols = _symbols(result.get("symbols"))
        messages = result.get("messages") if isinstance(result.get("messages"), dict) else {}
        smtp_message = _one_line(str(messages.get("smtp_message") or ""))
        transaction.notes["rspamd"] = {"action": action, "score": score, "required_score": required,
                                       "symbols": symbols, "options": _options(result.get("symbols")),
                                       "message": smtp_message, "is_skipped": bool(result.get("is_skipped"))}
        transaction.notes["spam"] = action in SPAM_ACTIONS
        summary = f"{action} from {self.connection.remote_ip} (score {score:.2f}/{required:.2f})"
        if action == "reject" and self.opts["reject"]:
            return self._refuse(summary, Reply(554, smtp_message or "Spam message rejected", esc="5.7.1"))
        if action == "soft reject" and self.opts["soft_reject"]:
            return self._refuse(summary, Reply(451, smtp_message or "Try again later", esc="4.7.1"))
        if action == "discard":
            self.log(LOGINFO, f"{summary}: discarded")
            transaction.notes["discarded"] = "rspamd"
            self.qp.respond(250, "Ok, discarded", esc="2.7.0")
            return DONE
        self._rewrite(transaction, result, action, score, required, symbols)
        self.log(LOGINFO, summary)
        return DECLINED

    def _refuse(self, summary: str, reply: Reply) -> Reply:
        self.log(LOGINFO, f"{summary}: {reply.code} {reply.esc} {reply.lines[0]}")
        return reply

    def _rewrite(self, transaction: Transaction, result: dict[str, Any], action: str, score: float,
                 required: float, symbols: dict[str, float]) -> None:
        header = transaction.header
        if header is None:
            return
        spam_header = self.opts["spam_header"]
        for name in (*SCORE_HEADERS, spam_header) if self.opts["score_headers"] else (spam_header,):
            header.delete(name)
        if self.opts["milter_headers"]:
            self._milter_headers(transaction, result)
        if action == "rewrite subject" and self.opts["rewrite_subject"]:
            subject = header.get("Subject") or ""
            new_subject = result.get("subject") if isinstance(result.get("subject"), str) else None
            header.replace("Subject", _one_line(new_subject or f"***SPAM*** {subject}".rstrip()))
        if action in ("add header", "rewrite subject"):
            header.add(spam_header, "Yes")
        if action == "quarantine":
            transaction.notes["quarantine"] = "rspamd"
            self.log(LOGWARN, "quarantine requested")
        if self.opts["score_headers"]:
            header.add("X-Spam-Action", action)
            header.add("X-Spam-Score", f"{score:.2f} / {required:.2f}")
            listed = ",\n ".join(f"{name}({value:.2f})" for name, value in sorted(symbols.items()))
            if listed:
                header.add("X-Spam-Symbols", listed)

    def _milter_headers(self, transaction: Transaction, result: dict[str, Any]) -> None:
        """rspamd's `milter` section (remove_headers, add_headers) and a DKIM signature it made."""
        header = transaction.header
        assert header is not None
        milter = result.get("milter") if isinstance(result.get("milter"), dict) else {}
        removals = milter.get("remove_headers") if isinstance(milter.get("remove_headers"), dict) else {}
        for name, which in removals.items():
            if not _is_field_name(name):
                continue
            position = int(which) if isinstance(which, (int, float)) and not isinstance(which, bool) else 0
            count = header.count(name)
            if position == 0:
                header.delete(name)
            elif position < 0 and -position <= count:
                header.delete(name, count + position)
            elif 0 < position <= count:
                header.delete(name, position - 1)
        additions = milter.get("add_headers") if isinstance(milter.get("add_headers"), dict) else {}
        for name, spec in additions.items():
            if not _is_field_name(name):
                continue
            for value, order in _header_values(spec):
                if order is None:
                    header.add(name, value)
                else:
                    header.add(name, value, min(max(order, 0), len(header)))
        signatures = result.get("dkim-signature")
        for signature in signatures if isinstance(signatures, list) else [signatures] if signatures else []:
            if isinstance(signature, str):
                header.fields.insert(0, HeaderField("DKIM-Signature", _raw_signature(signature)))

    def _mark_unscanned(self, transaction: Transaction) -> None:
        if transaction.header is not None and self.opts["score_headers"]:
            for name in SCORE_HEADERS:
                transaction.header.delete(name)
            transaction.header.add("X-Spam-Action", "unscanned")

    def _failed(self, transaction: Transaction, error: RspamdError) -> Any:
        action = self.opts["default_action"]
        self.log(LOGERROR, f"{self.client.address} failed for {self.connection.remote_ip}: {error}; "
                           f"default_action {action}")
        transaction.notes["rspamd"] = {"action": "unscanned", "error": str(error)}
        if action == "accept":
            self._mark_unscanned(transaction)
            return DECLINED
        if action == "reject":
            return Reply(554, "Message could not be scanned", esc="5.7.1")
        return Reply(451, "Message could not be scanned - try again later", esc="4.7.1")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _symbols(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    found = {}
    for name, symbol in value.items():
        if isinstance(name, str) and _is_field_name(name):
            found[name] = _number(symbol.get("score") if isinstance(symbol, dict) else symbol)
    return found


def _options(value: Any) -> dict[str, list[str]]:
    """The options rspamd gave each symbol (e.g. the domain a rule matched)."""
    if not isinstance(value, dict):
        return {}
    return {name: [str(option) for option in symbol["options"]] for name, symbol in value.items()
            if isinstance(symbol, dict) and isinstance(symbol.get("options"), list)}


def _header_values(spec: Any) -> list[tuple[str, int | None]]:
    """add_headers values: "text", {"value": "text", "order": N}, or a list of those."""
    values: list[tuple[str, int | None]] = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            values.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("value"), str):
            order = item.get("order")
            values.append((item["value"], int(order) if isinstance(order, int) and not isinstance(order, bool) else None))
    return values


def _raw_signature(signature: str) -> str:
    """A DKIM-Signature value from rspamd as stored after "Name:" (folds kept, CRLF made LF)."""
    lines = [line for line in signature.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]
    text = "\n".join([lines[0] if lines else ""] + [line if line[:1] in (" ", "\t") else "\t" + line
                                                    for line in lines[1:]])
    return (text if text.startswith((" ", "\t")) else " " + text) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def _is_field_name(name: str) -> bool:
    return bool(name) and all(33 <= ord(char) <= 126 and char != ":" for char in name)
