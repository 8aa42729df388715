"""The SMTP state machine: commands, the replies qpsmtpd gives, and DATA.

Each command runs its hooks; the `<hook>_respond` methods turn the winning
plugin's result into qpsmtpd's reply (codes and texts as the Perl server).
DATA is read by `qpsmtpd.data.DataReceiver`.
"""

from __future__ import annotations

import time

from .address import Address
from .command import params_to_dict, parse
from .constants import (DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, DONE,
                        LOGALERT, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, OK)
from .data import DataReceiver
from .header import Header, decode
from .plugin import PluginError
from .qp import PluginFault, Qpsmtpd, describe_exception
from .reader import ConnectionLost, LineTooLong, SmtpIO, Timeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

COMMANDS = frozenset(("ehlo", "helo", "rset", "mail", "rcpt", "data", "help", "vrfy", "noop", "quit"))
DEFAULT_LINE_LIMIT = 2048
DEFAULT_MAX_RCPTS = 1000


class Disconnect(Exception):
    """The session is over (QUIT, a *_DISCONNECT result, timeout or lost client)."""


class SMTP(Qpsmtpd):
    """One SMTP session over an SmtpIO."""

    def __init__(self, install_dir: str, io: SmtpIO) -> None:
        super().__init__(install_dir)
        self.io = io
        self.commands = set(COMMANDS)
        self.command_counter = 0
        self.line_limit = DEFAULT_LINE_LIMIT
        self._disconnected = False
        self._auth_mechanisms: dict[str, bool] | None = None

    # -- output -------------------------------------------------------------
    def respond(self, code: int, *messages: str) -> bool:
        """Send a (multi-line) reply; False when the client is gone."""
        lines = [str(message) for message in messages if message is not None and message != ""] or [""]
        out = []
        for index, message in enumerate(lines):
            separator = "-" if index < len(lines) - 1 else " "
            line = f"{code}{separator}{message}".replace("\r", " ").replace("\n", " ")
            self.log(LOGINFO, line)
            out.append(line + "\r\n")
        try:
            self.io.write("".join(out).encode("utf-8", "surrogateescape"))
        except ConnectionLost as error:
            self.log(LOGERROR, f"Lost connection to client, cannot send response: {error}")
            return False
        return True

    def fault(self, message: str = "program fault - command not performed") -> bool:
        return self.respond(451, "Internal error - try again later - " + message)

    # -- session ------------------------------------------------------------
    def start(self) -> bool:
        """Load the plugins; a plugin that cannot load refuses the session with a 421."""
        try:
            self.load_plugins()
        except PluginError:
            self.respond(421, f"{self.config_value('me')} Service temporarily unavailable; try again later")
            return False
        return True

    def run(self) -> None:
        """Greet, then read and dispatch commands until the session ends."""
        try:
            self._run_command_hooks("connect")
            if not self._disconnected:
                self._read_commands()
        except Disconnect:
            pass
        except Timeout:
            self.respond(421, f"{self.config_value('me')} Timeout; I can't wait that long...")
            self._end_session()
        except ConnectionLost:
            self._end_session()
        self.run_hooks("post-connection")
        self.connection.reset()

    def _read_commands(self) -> None:
        timeout = self.config_int("timeoutsmtpd", 0) or self.config_int("timeout", 1200)
        self.io.timeout = timeout
        self.line_limit = self.config_int("max_line_length", DEFAULT_LINE_LIMIT)
        while not self._disconnected:
            try:
                raw = self.io.readline(self.line_limit)
            except LineTooLong:
                self.log(LOGNOTICE, f"command line longer than {self.line_limit} octets discarded")
                self.respond(500, "Line too long")
                continue
            if raw is None:
                self._end_session()
                return
            line = decode(raw)
            self._log_command(line)
            self.connection.notes["original_string"] = line
            cmd, _sep, rest = line.partition(" ")
            self.dispatch(cmd, rest.lstrip(" ") if _sep else None)

    def _log_command(self, line: str) -> None:
        # credentials in an AUTH initial response never reach a log line
        words = line.split(None, 2)
        if len(words) == 3 and words[0].lower() == "auth":
            line = f"{words[0]} {words[1]} <hidden credentials>"
        self.log(LOGINFO, f"dispatching {line}")

    def _end_session(self) -> None:
        """End of input without QUIT: reset and run the disconnect hooks once."""
        if self._disconnected:
            return
        self.reset_transaction()
        self.run_hooks("disconnect")
        self.connection.notes["disconnected"] = 1
        self._disconnected = True

    def disconnect(self) -> None:
        """End the session after the current reply (QUIT or a *_DISCONNECT result)."""
        self.log(LOGINFO, "click, disconnecting")
        self.run_hooks("disconnect")
        self.connection.notes["disconnected"] = 1
        if self._transaction is not None:
            self.run_hooks("reset_transaction")
            self._transaction.close()
            self._transaction = None
        self._disconnected = True
        raise Disconnect()

    def dispatch(self, cmd: str, line: str | None) -> None:
        if not cmd:
            self._run_command_hooks("unrecognized_command", "")
            return
        cmd = cmd.lower()
        self.command_counter += 1
        if cmd not in self.commands:  # only plain words are in the table
            args = line.split() if line else []
            self._run_command_hooks("unrecognized_command", cmd, *args)
            return
        handler = getattr(self, "cmd_" + cmd)
        try:
            handler(line)
        except (Disconnect, Timeout, ConnectionLost):
            raise
        except PluginFault as fault:
            self.plugin_fault(fault)
        except Exception as error:  # an engine bug: answer 451 and keep the session
            self.log(LOGERROR, f"XX: command {cmd} failed: {describe_exception(error)}")
            self.fault(f"command '{cmd}' failed unexpectedly")

    def _run_command_hooks(self, hook: str, *args: Any) -> None:
        try:
            self.run_hooks(hook, *args)
        except PluginFault as fault:
            self.plugin_fault(fault)

    def plugin_fault(self, fault: PluginFault) -> None:
        """A plugin raised in a deciding hook: 451, and nothing it guarded goes through."""
        self.respond(451, "Internal error - try again later")
        if fault.hook == "connect":
            self.disconnect()
        if fault.hook in ("data", "data_headers_end", "data_post_headers", "data_post", "queue_pre", "queue"):
            self.reset_transaction()

    # -- connect ------------------------------------------------------------
    def connect_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc in (DENY, DENY_DISCONNECT):
            self.respond(550, *(msg or ["Connection from you denied, bye bye."]))
            self.disconnect()
        elif rc in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond(450, *(msg or ["Connection from you temporarily denied, bye bye."]))
            self.disconnect()
        elif rc != DONE:
            self.respond(220, self.greeting())

    def greeting(self) -> str:
        greet = self.config_value("smtpgreeting")
        if greet:
            import re  # only for a configured greeting

            if not re.search(r"(^|\W)ESMTP(\W|$)", greet):
                greet += " ESMTP"
            return greet
        return f"{self.config_value('me')} ESMTP qpsmtpd {self.version} ready; send us your mail, but not your spam."

    # -- HELO / EHLO ----------------------------------------------------------
    def _hello(self, kind: str, line: str | None) -> None:
        _rc, *parse_msg = self.run_hooks(kind + "_parse")
        custom = parse_msg[0] if parse_msg and callable(parse_msg[0]) else None
        _ok, *values = parse(kind, line, custom)
        host = values[0] if values else None
        if not host:
            self.respond(501, f"{kind} requires domain/address - see RFC-2821 4.1.1.1")
            return
        if self.connection.hello:
            self.respond(503, "but you already said HELO ...")
            return
        self.run_hooks(kind, host, *values[1:])

    def cmd_helo(self, line: str | None) -> None:
        self._hello("helo", line)

    def cmd_ehlo(self, line: str | None) -> None:
        self._hello("ehlo", line)

    def _deny_response(self, rc: int, msg: list[str]) -> bool:
        if rc in (DENY, DENY_DISCONNECT):
            self.respond(550, *msg)
        elif rc in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond(450, *msg)
        else:
            return False
        if rc in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            self.disconnect()
        return True

    def _hi_message(self) -> str:
        conn = self.connection
        return f"{self.config_value('me')} Hi {conn.remote_info} [{conn.remote_ip}]"

    def _accept_hello(self, kind: str, host: str) -> None:
        self.connection.hello = kind
        self.connection.hello_host = host
        self.transaction  # noqa: B018 - qpsmtpd starts the transaction here

    def helo_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE or self._deny_response(rc, msg):
            return
        self._accept_hello("helo", args[0])
        self.respond(250, self._hi_message() + "; I am so happy to meet you.")

    def ehlo_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE or self._deny_response(rc, msg):
            return
        self._accept_hello("ehlo", args[0])
        capabilities = list(self.transaction.notes.get("capabilities") or [])
        mechanisms = self.auth_mechanisms()
        if mechanisms:
            self.commands.add("auth")  # also when not offered: AUTH then gets its 503, not 500
            if self.auth_offered():
                capabilities.append("AUTH " + " ".join(mechanisms))
        size = self.config_value("databytes")
        lines = [self._hi_message(), "PIPELINING", "8BITMIME"]
        if size and size != "0":
            lines.append(f"SIZE {size}")
        self.respond(250, *lines, *capabilities)

    # -- AUTH (dispatch only; the SASL exchange lives in qpsmtpd.auth) --------
    def auth_mechanisms(self) -> list[str]:
        """Mechanisms offered: one per `auth-<mech>` hook, all three for a bare `auth` hook."""
        if self._auth_mechanisms is None:
            found: dict[str, bool] = {}
            for hook in self.hooks:
                if hook == "auth":
                    found = {"PLAIN": True, "CRAM-MD5": True, "LOGIN": True}
                    break
                if hook.startswith("auth-"):
                    found[hook[5:].upper()] = True
            self._auth_mechanisms = found
        return list(self._auth_mechanisms)

    def auth_offered(self) -> bool:
        """AUTH is offered unless `tls_before_auth` is set and TLS is not active."""
        if self.connection.notes.get("tls_enabled"):
            return True
        value = str(self.config_value("tls_before_auth", "") or "").strip()
        return value in ("", "0")

    def cmd_auth(self, line: str | None) -> None:
        if line and " " in line.strip():  # an initial response: keep it out of the notes
            self.connection.notes["original_string"] = "AUTH " + line.split()[0] + " <hidden credentials>"
        self.run_hooks("auth_parse", line)

    def auth_parse_respond(self, rc: int, msg: list[Any], args: tuple) -> None:
        from .auth import handle_auth  # SASL only costs an import when a client uses it
        handle_auth(self, msg, args[0])

    # -- MAIL -----------------------------------------------------------------
    def cmd_mail(self, line: str | None) -> None:
        self.reset_transaction()
        if not self.connection.hello:
            self.respond(503, "please say hello first ...")
            return
        self.log(LOGDEBUG, f"full from_parameter: {line}")
        self.connection.notes["envelope_from"] = line
        self.run_hooks("mail_parse", line)

    def mail_parse_respond(self, rc: int, msg: list[Any], args: tuple) -> None:
        custom = msg[0] if msg and callable(msg[0]) else None
        ok, *values = parse("mail", args[0], custom)
        if ok != OK:
            self.respond(501, (values[0] if values else None) or "Syntax error in command")
            return
        sender = values[0] if values else "<>"
        params = params_to_dict(values[1:])
        self.run_hooks("mail_pre", sender, params)

    def mail_pre_respond(self, rc: int, msg: list[Any], args: tuple) -> None:
        sender_text, params = args
        if rc == OK and msg:
            sender_text = msg[0]
        self.log(LOGDEBUG, f"from email address : [{sender_text}]")
        if not (isinstance(sender_text, str) and sender_text.startswith("<") and sender_text.endswith(">")):
            self.respond(501, "could not parse your mail from command")
            return
        if sender_text == "<>" or "[undefined]" in sender_text or sender_text == "<#@[]>":
            sender = self.address("<>")
        else:
            sender = self.address(sender_text)
        if sender is None:
            self.respond(501, "could not parse your mail from command")
            return
        if not self._size_acceptable(params):
            return
        self.run_hooks("mail", sender, params)

    def _size_acceptable(self, params: dict[str, str | None]) -> bool:
        """RFC 1870: refuse at MAIL a message declared bigger than `databytes`."""
        declared = params.get("size")
        limit = self.config_int("databytes", 0)
        if limit and declared and declared.isdigit() and int(declared) > limit:
            self.respond(552, "Message size exceeds fixed maximum message size")
            return False
        return True

    def mail_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        sender: Address = args[0]
        shown = sender.format()
        if rc == DONE:
            return
        if rc in (DENY, DENY_DISCONNECT):
            msg = msg or [f"{shown}, denied"]
            self.log(LOGINFO, f"deny mail from {shown} ({' '.join(msg)})")
            self.respond(550, *msg)
        elif rc == DENYSOFT:
            msg = msg or [f"{shown}, temporarily denied"]
            self.log(LOGINFO, f"denysoft mail from {shown} ({' '.join(msg)})")
            self.respond(450, *msg)
        elif rc == DENYSOFT_DISCONNECT:
            msg = msg or [f"{shown}, temporarily denied"]
            self.log(LOGINFO, f"denysoft mail from {shown} ({' '.join(msg)})")
            self.respond(421, *msg)
        else:
            self.log(LOGDEBUG, f"getting mail from {shown}")
            self.respond(250, f"{shown}, sender OK - how exciting to get mail from you!")
            self.transaction.sender = sender
            return
        if rc in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            self.disconnect()

    # -- RCPT -----------------------------------------------------------------
    def cmd_rcpt(self, line: str | None) -> None:
        self.connection.notes["envelope_rcpt"] = line
        self.run_hooks("rcpt_parse", line)

    def rcpt_parse_respond(self, rc: int, msg: list[Any], args: tuple) -> None:
        custom = msg[0] if msg and callable(msg[0]) else None
        ok, *values = parse("rcpt", args[0], custom)
        if ok != OK:
            self.respond(501, (values[0] if values else None) or "Syntax error in command")
            return
        if self.transaction.sender is None:
            self.respond(503, "Use MAIL before RCPT")
            return
        max_rcpts = self.config_int("max_recipients", DEFAULT_MAX_RCPTS)
        if max_rcpts and len(self.transaction.recipients) >= max_rcpts:
            self.respond(452, "Too many recipients")
            return
        self.run_hooks("rcpt_pre", values[0] if values else "", params_to_dict(values[1:]))

    def rcpt_pre_respond(self, rc: int, msg: list[Any], args: tuple) -> None:
        rcpt_text, params = args
        if rc == OK and msg:
            rcpt_text = msg[0]
        self.log(LOGDEBUG, f"to email address : [{rcpt_text}]")
        if not (isinstance(rcpt_text, str) and rcpt_text.startswith("<") and rcpt_text.endswith(">")):
            self.respond(501, "could not parse recipient")
            return
        rcpt = self.address(rcpt_text)
        if rcpt is None or rcpt.format() == "<>":
            self.respond(501, "could not parse recipient")
            return
        self.run_hooks("rcpt", rcpt, params)

    def rcpt_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        rcpt: Address = args[0]
        if rc == DONE:
            return
        if rc == DENY:
            self.respond(550, *(msg or ["relaying denied"]))
        elif rc == DENYSOFT:
            self.respond(450, *(msg or ["relaying denied"]))
        elif rc == DENY_DISCONNECT:
            msg = msg or ["delivery denied"]
            self.log(LOGDEBUG, f"delivery denied ({' '.join(msg)})")
            self.respond(550, *msg)
            self.disconnect()
        elif rc == DENYSOFT_DISCONNECT:
            msg = msg or ["relaying denied"]
            self.log(LOGDEBUG, f"delivery denied ({' '.join(msg)})")
            self.respond(421, *msg)
            self.disconnect()
        elif rc == OK:
            self.respond(250, f"{rcpt.format()}, recipient ok")
            self.transaction.add_recipient(rcpt)
        else:
            self.respond(450, "No plugin decided if relaying is allowed")

    # -- simple commands --------------------------------------------------------
    def cmd_help(self, line: str | None) -> None:
        self.run_hooks("help", *(line.split() if line else []))

    def help_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE:
            return
        if rc == DENY:
            self.respond(500, *(msg or ["Syntax error, command not recognized"]))
            return
        if not msg:
            version = "" if self.config_value("smtpgreeting") else self.version
            msg = [f"This is qpsmtpd {version}",
                   "A Python implementation of qpsmtpd; see docs/ in its installation",
                   "To report problems, contact the postmaster of this host."]
        self.respond(214, *msg)

    def cmd_noop(self, line: str | None) -> None:
        self.run_hooks("noop", *(line.split() if line else []))

    def noop_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE:
            return
        if rc in (DENY, DENY_DISCONNECT):
            self.respond(500, *(msg or ["Stop wasting my time."]))
            if rc == DENY_DISCONNECT:
                self.disconnect()
            return
        self.respond(250, "OK")

    def cmd_vrfy(self, line: str | None) -> None:
        self.run_hooks("vrfy", *(line.split() if line else []))

    def vrfy_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE:
            return
        if rc == DENY:
            self.respond(554, *(msg or ["Access Denied"]))
            self.reset_transaction()
        elif rc == OK:
            self.respond(250, *(msg or ["User OK"]))
        else:
            self.respond(252, "Just try sending a mail and we'll see how it turns out ...")

    def cmd_rset(self, line: str | None) -> None:
        self.reset_transaction()
        self.respond(250, "OK")

    def cmd_quit(self, line: str | None) -> None:
        self.run_hooks("quit")

    def quit_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc != DONE:
            self.respond(221, *(msg or [f"{self.config_value('me')} closing connection. Have a wonderful day."]))
        self.disconnect()

    def unrecognized_command_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DENY_DISCONNECT:
            self.respond(521, *(msg or ["Unrecognized command"]))
            self.disconnect()
        elif rc == DENY:
            self.respond(500, *(msg or ["Unrecognized command"]))
        elif rc != DONE:
            self.respond(500, "Unrecognized command")

    # -- DATA -------------------------------------------------------------------
    def cmd_data(self, line: str | None) -> None:
        self.run_hooks("data")

    def data_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE:
            return
        if rc in (DENY, DENY_DISCONNECT):
            self.respond(554, *(msg or ["Message denied"]))
        elif rc in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond(451, *(msg or ["Message denied temporarily"]))
        if rc in (DENY, DENYSOFT):
            self.reset_transaction()
            return
        if rc in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            self.disconnect()
        if self.transaction.sender is None:
            self.respond(503, "MAIL first")
            return
        if not self.transaction.recipients:
            self.respond(503, "RCPT first")
            return
        self.respond(354, "go ahead")
        self.receive_message()

    def receive_message(self) -> None:
        """Read the message after 354 and run everything up to the queue."""
        receiver = DataReceiver(self)
        outcome = receiver.run()
        if outcome == "incomplete":
            self.respond(451, "Incomplete DATA")
            self.reset_transaction()
            return
        if outcome == "barelf":
            self.respond(421, "See http://smtpd.develooper.com/barelf.html")
            self.disconnect()
        if outcome == "fault":
            self.respond(451, "Internal error - try again later")
            self.reset_transaction()
            return
        max_size = receiver.max_size
        if receiver.too_big:
            self.log(LOGALERT, f"Message too big: size: {receiver.size} (max size: {max_size})")
            self.respond(552, "Message too big!")
            self.reset_transaction()
            return
        if receiver.header_too_big:
            self.log(LOGALERT, f"Message header too big (max size: {receiver.max_header})")
            self.respond(552, "Message header too big!")
            self.reset_transaction()
            return
        self.run_hooks("data_post_headers")
        self.clean_authentication_results()
        self.add_received_line()
        self.add_authentication_results()
        self.run_hooks("data_post")

    def clean_authentication_results(self) -> None:
        """Rename the client's Authentication-Results headers so ours can be trusted."""
        auth_id = self.config_value("me-auth-results")
        if auth_id == "none":
            return
        header = self.transaction.header
        signature = header.get("DKIM-Signature")
        if signature:
            import re  # only for DKIM-signed messages

            fields = dict(part.split("=", 1) for part in re.split(r";\s+", signature) if "=" in part)
            if "authentication-results" in fields.get("h", "").lower():
                return
        existing = header.get_all("Authentication-Results")
        if not existing:
            return
        header.delete("Authentication-Results")
        for value in existing:
            header.add("Original-Authentication-Results", value)
        self.log(LOGDEBUG, "Authentication-Results moved to Original-Authentication-Results")

    def add_received_line(self) -> None:
        conn = self.connection
        smtp = "ESMTP" if conn.hello == "ehlo" else "SMTP"
        esmtp = smtp.startswith("E")
        auth_header = ""
        ssl_header = ""
        if conn.notes.get("tls_enabled"):
            if esmtp:
                smtp += "S"
            ssl_header = f"({conn.notes.get('tls_cipher') or 'TLS'} encrypted)"
        if self.authenticated():
            if esmtp:
                smtp += "A"
            auth_header = f"(smtp-auth username {self.auth_user}, mechanism {self.auth_mechanism})\n"
        rc, *received = self.run_hooks("received_line", smtp, auth_header, ssl_header)
        if rc == OK and received:
            text = "\n".join(str(line) for line in received)
        else:
            date = time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime())
            text = (f"from {conn.remote_info} (HELO {conn.hello_host}) ({conn.remote_ip})\n"
                    f" by {self.config_value('me')} (qpsmtpd/{self.version}) with {smtp} {ssl_header}; {date}")
        self.transaction.header.add("Received", text, 0)

    def _authentication_results_value(self) -> str | None:
        auth_list = list(self.config("me-auth-results") or [])
        if not auth_list or not auth_list[0]:
            auth_list = [self.config_value("me")]
        elif auth_list[0] == "none":
            return None
        auth_list = auth_list[:1]
        if self.auth_result is None:
            auth_list.append("auth=none")
        else:
            verdict = "pass" if self.auth_result == OK else "fail"
            auth_list.append(f"auth={verdict} ({self.auth_mechanism}) smtp.auth={self.auth_user}")
        for notes in (self.connection.notes, self.transaction.notes):
            extra = notes.get("authentication_results")
            if extra:
                auth_list.append(extra)
        return "; ".join(auth_list)

    def add_authentication_results(self) -> None:
        value = self._authentication_results_value()
        if value is None:
            return
        header = self.transaction.header
        header.add("Authentication-Results", value, 0)
        self.transaction.authentication_results_field = header.fields[0]

    def refresh_authentication_results(self) -> None:
        """Rewrite our Authentication-Results header after a data_post plugin (DKIM, DMARC) added a result."""
        field = getattr(self.transaction, "authentication_results_field", None)
        value = self._authentication_results_value()
        if field is not None and value is not None:
            field.raw = Header.fold_value(value)

    def data_post_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE:
            return
        if rc in (DENY, DENY_DISCONNECT):
            self.respond(552, *(msg or ["Message denied"]))
        elif rc in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond(452, *(msg or ["Message denied temporarily"]))
        else:
            self.run_hooks("queue_pre")
            return
        if rc in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            self.disconnect()
        self.reset_transaction()

    def queue_pre_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc == DONE:
            return
        if rc not in (OK, DECLINED):
            self.log(LOGERROR, "pre plugin returned illegal value")
            return
        self.run_hooks("queue")

    def queue_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        self.reset_transaction()
        if rc == DONE:
            return
        if rc == OK:
            self.respond(250, *(msg or ["Queued"]))
        elif rc == DENY:
            self.respond(552, *(msg or ["Message denied"]))
        elif rc == DENYSOFT:
            self.respond(452, *(msg or ["Message denied temporarily"]))
        else:
            self.respond(451, *(msg or ["Queuing declined or disabled; try again later"]))
        self.run_hooks("queue_post")

    def queue_post_respond(self, rc: int, msg: list[str], args: tuple) -> None:
        if rc not in (OK, DECLINED) and msg:
            self.log(LOGERROR, " ".join(str(part) for part in msg))
