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
from .qp import HookResult, PluginFault, Qpsmtpd, describe_exception
from .replies import ACCEPT, FAULT, FAULT_AT_CONNECT, Reply, Rule, rule_for
from .reader import ConnectionLost, LineTooLong, SmtpIO, Timeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

COMMANDS = frozenset(("ehlo", "helo", "rset", "mail", "rcpt", "data", "bdat", "help", "vrfy", "noop", "quit"))
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
        self._esc_enabled: bool | None = None
        self._smtputf8_enabled: bool | None = None
        self._chunking_enabled: bool | None = None
        self._dsn_enabled: bool | None = None
        self.bdat_state: Any = None        # qpsmtpd.bdat.BdatState of the open transaction
        self.bdat_starting = False         # the data hook runs for a first BDAT chunk
        self.bdat_allowed = False
        self._deferred_data_verdict: HookResult | None = None
        self._replies_at_quit = -1

    # -- output -------------------------------------------------------------
    def respond(self, code: int, *messages: str, esc: str | None = None) -> bool:
        """Send a (multi-line) reply; False when the client is gone.

        `esc` is the enhanced status code (RFC 3463), sent only when
        ENHANCEDSTATUSCODES is on and the text does not start with one.  A reply
        given none gets the class's `X.0.0` ("other or undefined"), so every
        reply carries a correct code; `esc=""` sends none (the greeting, the
        HELO/EHLO replies and the 354/334 intermediate replies, as RFC 2034
        and Postfix do).
        """
        self.replies_sent += 1
        lines = [str(message) for message in messages if message is not None and message != ""] or [""]
        if esc is None and 200 <= code <= 599:
            esc = f"{code // 100}.0.0"
        if esc and self.enhanced_status_codes():
            lines = [line if _has_esc(line) else f"{esc} {line}" for line in lines]
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
        return self.respond(451, "Internal error - try again later - " + message, esc="4.3.0")

    def enhanced_status_codes(self) -> bool:
        """RFC 2034 codes on replies: opt-in with config/enhancedstatuscodes (default off)."""
        if self._esc_enabled is None:
            value = str(self.config_value("enhancedstatuscodes", "0") or "0").strip().lower()
            self._esc_enabled = value not in ("", "0", "no", "off", "false")
        return self._esc_enabled

    def smtputf8_enabled(self) -> bool:
        """RFC 6531 SMTPUTF8: on unless config/smtputf8 says 0/no/off."""
        if self._smtputf8_enabled is None:
            value = str(self.config_value("smtputf8", "1") or "1").strip().lower()
            self._smtputf8_enabled = value not in ("0", "no", "off", "false")
        return self._smtputf8_enabled

    def chunking_enabled(self) -> bool:
        """RFC 3030 CHUNKING (BDAT): on unless config/chunking says 0/no/off."""
        if self._chunking_enabled is None:
            value = str(self.config_value("chunking", "1") or "1").strip().lower()
            self._chunking_enabled = value not in ("0", "no", "off", "false")
        return self._chunking_enabled

    def dsn_enabled(self) -> bool:
        """RFC 3461 DSN parameters checked, kept and passed on: opt-in with config/dsn."""
        if self._dsn_enabled is None:
            value = str(self.config_value("dsn", "0") or "0").strip().lower()
            self._dsn_enabled = value not in ("", "0", "no", "off", "false")
        return self._dsn_enabled

    def parse_address(self, text: str, utf8: bool = False) -> Address | None:
        """`self.address(text)`, with RFC 6531 addresses allowed when `utf8`."""
        if not utf8:
            return self.address(text)
        address = Address.parse(text, utf8=True)
        if address is not None:
            address.qp = self
        return address

    # -- answers from the reply table -----------------------------------------
    def answer(self, hook: str, result: HookResult, **fill: str) -> Rule | None:
        """Answer `result` from the reply table (or the plugin's Reply); None when the table has no reply.

        Logs one decision line for refusals, resets the transaction and
        disconnects as the rule says (Disconnect is raised for the latter).
        """
        reply = result.reply
        if reply is not None:
            rule = self._rule_for_reply(hook, reply)
            lines = reply.lines or [_fill(rule.text, fill)]
            code, esc = reply.code, reply.esc or rule.esc
        else:
            rule = rule_for(hook, result.code)
            if rule is None or rule.code is None:
                return None
            lines = [str(line) for line in result.messages] or [_fill(rule.text, fill)]
            code, esc = rule.code, rule.esc
        if code < 400 and reply is not None and rule.code is None:
            return None  # an acceptance with the plugin's own text: the caller sends it
        if code >= 400:
            self.log_decision(hook, result.plugin, code, lines)
        self.respond(code, *lines, esc=esc)
        if rule.reset:
            self.reset_transaction()
        if rule.disconnect:
            self.disconnect()
        return rule

    @staticmethod
    def _rule_for_reply(hook: str, reply: Reply) -> Rule:
        """The table rule a plugin's explicit Reply follows (for default text, reset, disconnect)."""
        rule = rule_for(hook, reply.result_code()) or ACCEPT.get(hook) or Rule(None)
        disconnect = reply.disconnect
        if disconnect is None:
            disconnect = reply.code == 421 or (hook == "connect" and reply.code >= 400) or rule.disconnect
        if reply.code < 400:
            # mail and rcpt record the sender/recipient with their acceptance: their callers send
            # it; elsewhere (vrfy, noop, help, a command a plugin implements) the reply goes as given
            code = None if hook in ("mail", "rcpt") else reply.code
            return Rule(code, rule.text, rule.esc, disconnect=disconnect, reset=hook == "queue")
        reset = rule.reset or hook in MESSAGE_HOOKS
        return Rule(reply.code, rule.text, rule.esc, disconnect=disconnect, reset=reset and not disconnect)

    def log_decision(self, hook: str, plugin: str | None, code: int, lines: list[str]) -> None:
        """One line per refusal, deferral or fault: plugin, client IP and the reply (LOGNOTICE)."""
        verdict = "reject" if code >= 500 else "defer"
        text = lines[0] if lines else ""
        self.varlog(LOGNOTICE, hook, plugin or "qpsmtpd", f"{verdict} {self.connection.remote_ip}: {code} {text}")

    def accept_text(self, result: HookResult, default: str) -> list[str]:
        """The text of an accepting reply: the plugin's explicit 2xx Reply text, else the default."""
        if result.reply is not None and result.reply.lines:
            return result.reply.lines
        return [default]

    # -- session ------------------------------------------------------------
    def start(self) -> bool:
        """Load the plugins; a plugin that cannot load refuses the session with a 421."""
        try:
            self.load_plugins()
        except PluginError:
            self.respond(421, f"{self.config_value('me')} Service temporarily unavailable; try again later",
                         esc="4.3.0")
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
            self.respond(421, f"{self.config_value('me')} Timeout; I can't wait that long...", esc="4.4.2")
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
                self.respond(500, "Line too long", esc="5.5.2")
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
            if cmd == "auth":  # AUTH after HELO: SASL responses the client pipelined are no commands
                from .auth import discard_pipelined_responses

                discard_pipelined_responses(self, args[0].lower() if args else "", args[1] if args[1:] else None)
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
        """A plugin failed in a deciding hook: 451 (421 at connect), and nothing it guarded goes through."""
        rule = FAULT_AT_CONNECT if fault.hook == "connect" else FAULT
        self.varlog(LOGNOTICE, fault.hook, fault.plugin_name,
                    f"fault {self.connection.remote_ip}: {rule.code} {rule.text} ({fault.reason})")
        self.respond(rule.code, rule.text, esc=rule.esc)
        if rule.disconnect:
            self.disconnect()
        if fault.hook in MESSAGE_HOOKS:
            self.reset_transaction()

    # -- connect ------------------------------------------------------------
    def connect_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("connect", result):
            return
        self.respond(220, self.greeting(), esc="")

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
            self.respond(501, f"{kind} requires domain/address - see RFC-2821 4.1.1.1", esc="5.5.4")
            return
        if self.connection.hello:
            self.respond(503, "but you already said HELO ...", esc="5.5.1")
            return
        self.run_hooks(kind, host, *values[1:])

    def cmd_helo(self, line: str | None) -> None:
        self._hello("helo", line)

    def cmd_ehlo(self, line: str | None) -> None:
        self._hello("ehlo", line)

    def _hi_message(self) -> str:
        conn = self.connection
        return f"{self.config_value('me')} Hi {conn.remote_info} [{conn.remote_ip}]"

    def _accept_hello(self, kind: str, host: str) -> None:
        self.connection.hello = kind
        self.connection.hello_host = host
        self.transaction  # noqa: B018 - qpsmtpd starts the transaction here

    def helo_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("helo", result):
            return
        self._accept_hello("helo", args[0])
        self.respond(250, self._hi_message() + "; I am so happy to meet you.", esc="")

    def ehlo_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("ehlo", result):
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
        if self.smtputf8_enabled():
            lines.append("SMTPUTF8")
        if self.chunking_enabled():
            lines.append("CHUNKING")
        if self.dsn_enabled():
            lines.append("DSN")
        if size and size != "0":
            lines.append(f"SIZE {size}")
        if self.enhanced_status_codes():
            lines.append("ENHANCEDSTATUSCODES")
        self.respond(250, *lines, *capabilities, esc="")

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

    def auth_parse_respond(self, result: HookResult, args: tuple) -> None:
        from .auth import handle_auth  # SASL only costs an import when a client uses it
        handle_auth(self, result.messages, args[0])

    # -- MAIL -----------------------------------------------------------------
    def cmd_mail(self, line: str | None) -> None:
        self.reset_transaction()
        if not self.connection.hello:
            self.respond(503, "please say hello first ...", esc="5.5.1")
            return
        self.log(LOGDEBUG, f"full from_parameter: {line}")
        self.connection.notes["envelope_from"] = line
        self.run_hooks("mail_parse", line)

    def mail_parse_respond(self, result: HookResult, args: tuple) -> None:
        msg = result.messages
        custom = msg[0] if msg and callable(msg[0]) else None
        ok, *values = parse("mail", args[0], custom)
        if ok != OK:
            self.respond(501, (values[0] if values else None) or "Syntax error in command", esc="5.5.2")
            return
        sender = values[0] if values else "<>"
        params = params_to_dict(values[1:])
        self.run_hooks("mail_pre", sender, params)

    def mail_pre_respond(self, result: HookResult, args: tuple) -> None:
        sender_text, params = args
        if result.code == OK and result.messages:
            sender_text = result.messages[0]
        self.log(LOGDEBUG, f"from email address : [{sender_text}]")
        if not (isinstance(sender_text, str) and sender_text.startswith("<") and sender_text.endswith(">")):
            self.respond(501, "could not parse your mail from command", esc="5.1.7")
            return
        if "smtputf8" in params and not self._smtputf8_acceptable(params):
            return
        utf8 = "smtputf8" in params
        if sender_text == "<>" or "[undefined]" in sender_text or sender_text == "<#@[]>":
            sender = self.address("<>")
        else:
            sender = self.parse_address(sender_text, utf8)
        if sender is None:
            self.respond(501, "could not parse your mail from command", esc="5.1.7")
            return
        if not self._size_acceptable(params):
            return
        if str(params.get("body") or "").upper() == "BINARYMIME":
            self.respond(555, "BINARYMIME not supported", esc="5.5.4")
            return
        if self.dsn_enabled():
            from .dsnparams import mail_error
            error = mail_error(params)
            if error:
                self.respond(501, error, esc="5.5.4")
                return
        self.run_hooks("mail", sender, params)

    def _smtputf8_acceptable(self, params: dict[str, str | None]) -> bool:
        """RFC 6531 3.4: SMTPUTF8 takes no value, and only when offered (after EHLO)."""
        if params["smtputf8"] is not None:
            self.respond(501, "SMTPUTF8 takes no value", esc="5.5.4")
            return False
        if not self.smtputf8_enabled() or self.connection.hello != "ehlo":
            self.respond(555, "SMTPUTF8 not supported", esc="5.5.4")
            return False
        return True

    def _size_acceptable(self, params: dict[str, str | None]) -> bool:
        """RFC 1870: refuse at MAIL a message declared bigger than `databytes`."""
        declared = params.get("size")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            self.respond(501, "Syntax error in SIZE parameter", esc="5.5.4")
            return False
        limit = self.config_int("databytes", 0)
        if limit and declared and int(declared) > limit:
            self.respond(552, "Message size exceeds fixed maximum message size", esc="5.3.4")
            return False
        return True

    def mail_respond(self, result: HookResult, args: tuple) -> None:
        sender: Address = args[0]
        shown = sender.format()
        if result.code == DONE or self.answer("mail", result, sender=shown):
            return
        self.log(LOGDEBUG, f"getting mail from {shown}")
        self.respond(250, *self.accept_text(result, f"{shown}, sender OK - how exciting to get mail from you!"),
                     esc="2.1.0")
        self.transaction.sender = sender
        params = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        self.transaction.notes["mail_params"] = dict(params)
        if "smtputf8" in params:
            self.transaction.notes["smtputf8"] = True

    # -- RCPT -----------------------------------------------------------------
    def cmd_rcpt(self, line: str | None) -> None:
        self.connection.notes["envelope_rcpt"] = line
        self.run_hooks("rcpt_parse", line)

    def rcpt_parse_respond(self, result: HookResult, args: tuple) -> None:
        msg = result.messages
        custom = msg[0] if msg and callable(msg[0]) else None
        ok, *values = parse("rcpt", args[0], custom)
        if ok != OK:
            self.respond(501, (values[0] if values else None) or "Syntax error in command", esc="5.5.2")
            return
        if self.transaction.sender is None:
            self.respond(503, "Use MAIL before RCPT", esc="5.5.1")
            return
        max_rcpts = self.config_int("max_recipients", DEFAULT_MAX_RCPTS)
        if max_rcpts and len(self.transaction.recipients) >= max_rcpts:
            self.respond(452, "Too many recipients", esc="4.5.3")
            return
        self.run_hooks("rcpt_pre", values[0] if values else "", params_to_dict(values[1:]))

    def rcpt_pre_respond(self, result: HookResult, args: tuple) -> None:
        rcpt_text, params = args
        if result.code == OK and result.messages:
            rcpt_text = result.messages[0]
        self.log(LOGDEBUG, f"to email address : [{rcpt_text}]")
        if not (isinstance(rcpt_text, str) and rcpt_text.startswith("<") and rcpt_text.endswith(">")):
            self.respond(501, "could not parse recipient", esc="5.1.3")
            return
        rcpt = self.parse_address(rcpt_text, bool(self.transaction.notes.get("smtputf8")))
        if rcpt is None or rcpt.format() == "<>":
            self.respond(501, "could not parse recipient", esc="5.1.3")
            return
        if self.dsn_enabled() and params:
            from .dsnparams import rcpt_error
            error = rcpt_error(params)
            if error:
                self.respond(501, error, esc="5.5.4")
                return
        self.run_hooks("rcpt", rcpt, params)

    def rcpt_respond(self, result: HookResult, args: tuple) -> None:
        rcpt: Address = args[0]
        if result.code == DONE or self.answer("rcpt", result):
            return
        self.respond(250, *self.accept_text(result, f"{rcpt.format()}, recipient ok"), esc="2.1.5")
        params = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        if params:
            rcpt.notes["rcpt_params"] = dict(params)
        self.transaction.add_recipient(rcpt)

    # -- simple commands --------------------------------------------------------
    def cmd_help(self, line: str | None) -> None:
        self.run_hooks("help", *(line.split() if line else []))

    def help_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("help", result):
            return
        msg = [str(line) for line in result.messages]
        if not msg:
            version = "" if self.config_value("smtpgreeting") else self.version
            msg = [f"This is qpsmtpd {version}",
                   "A Python implementation of qpsmtpd; see docs/ in its installation",
                   "To report problems, contact the postmaster of this host."]
        self.respond(214, *msg, esc="2.0.0")

    def cmd_noop(self, line: str | None) -> None:
        self.run_hooks("noop", *(line.split() if line else []))

    def noop_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("noop", result):
            return
        self.respond(250, *self.accept_text(result, "OK"), esc="2.0.0")

    def cmd_vrfy(self, line: str | None) -> None:
        self.run_hooks("vrfy", *(line.split() if line else []))

    def vrfy_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("vrfy", result):
            return
        self.respond(252, "Just try sending a mail and we'll see how it turns out ...", esc="2.5.0")

    def cmd_proxy(self, line: str | None) -> None:
        """Only present when the PROXY protocol is on: a header after the greeting is refused."""
        from .proxy import refuse_command
        refuse_command(self)

    def cmd_rset(self, line: str | None) -> None:
        self.reset_transaction()
        self.respond(250, "OK", esc="2.0.0")

    def cmd_quit(self, line: str | None) -> None:
        self._replies_at_quit = self.replies_sent
        self.run_hooks("quit")

    def quit_respond(self, result: HookResult, args: tuple) -> None:
        # DONE means the plugin said goodbye; if it wrote nothing, the client still gets its 221
        if result.code != DONE or self.replies_sent == self._replies_at_quit:
            default = f"{self.config_value('me')} closing connection. Have a wonderful day."
            self.respond(221, *([str(line) for line in result.messages] or [default]), esc="2.0.0")
        self.disconnect()

    def unrecognized_command_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE:
            return
        if result.code in (DENY, DENY_DISCONNECT) or result.reply is not None:
            self.answer("unrecognized_command", result)
            return
        self.respond(500, "Unrecognized command", esc="5.5.1")

    # -- DATA -------------------------------------------------------------------
    def cmd_data(self, line: str | None) -> None:
        if (self.bdat_state is not None and self.bdat_state.active(self.transaction)
                and self.transaction.sender is not None):
            self.respond(503, "DATA after BDAT in the same transaction", esc="5.5.1")
            return
        self.run_hooks("data")

    def cmd_bdat(self, line: str | None) -> None:
        if not self.chunking_enabled() or self.connection.hello != "ehlo":
            self._run_command_hooks("unrecognized_command", "bdat", *(line.split() if line else []))
            return
        from .bdat import handle_bdat  # only for clients that use CHUNKING
        handle_bdat(self, line)

    def data_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("data", result):
            return
        if self.transaction.sender is None:
            self.respond(503, "MAIL first", esc="5.5.1")
            return
        if not self.transaction.recipients:
            self.respond(503, "RCPT first", esc="5.5.1")
            return
        if self.bdat_starting:  # BDAT: the chunk follows, no 354
            self.bdat_allowed = True
            return
        self.respond(354, "go ahead", esc="")
        self.receive_message()

    def receive_message(self) -> None:
        """Read the message after 354 and run everything up to the queue."""
        receiver = DataReceiver(self)
        self.finish_message(receiver, receiver.run())

    def finish_message(self, receiver: DataReceiver, outcome: str) -> None:
        """After the last octet of DATA or BDAT LAST: limits, then the hooks up to the queue."""
        if outcome == "incomplete":
            self.respond(451, "Incomplete DATA", esc="4.3.0")
            self.reset_transaction()
            return
        if outcome == "barelf":
            self.respond(421, "See http://smtpd.develooper.com/barelf.html", esc="4.5.0")
            self.disconnect()
        if outcome == "fault":
            self.respond(451, "Internal error - try again later", esc="4.3.0")
            self.reset_transaction()
            return
        max_size = receiver.max_size
        if receiver.too_big:
            self.log(LOGALERT, f"Message too big: size: {receiver.size} (max size: {max_size})")
            self.log_decision("data", "qpsmtpd", 552, ["Message too big!"])
            self.respond(552, "Message too big!", esc="5.3.4")
            self.reset_transaction()
            return
        if receiver.header_too_big:
            self.log(LOGALERT, f"Message header too big (max size: {receiver.max_header})")
            self.log_decision("data", "qpsmtpd", 552, ["Message header too big!"])
            self.respond(552, "Message header too big!", esc="5.3.4")
            self.reset_transaction()
            return
        deferred, self._deferred_data_verdict = self._deferred_data_verdict, None
        if deferred is not None:  # data_headers_end refused it: answered now that the client waits
            self.answer("data_headers_end", deferred)
            return
        replies_before = self.replies_sent
        self.run_hooks("data_post_headers")
        if self.replies_sent != replies_before:  # refused (the responder answered and reset)
            return
        self.clean_authentication_results()
        self.add_received_line()
        self.add_authentication_results()
        self.run_hooks("data_post")

    def clean_authentication_results(self) -> None:
        """Rename the client's Authentication-Results headers so ours can be trusted.

        All of them, except that a DKIM signature covering them (`h=`) keeps
        those of other hosts; one claiming our authserv-id never survives.
        """
        auth_id = self.config_value("me-auth-results")
        if auth_id == "none":
            return
        header = self.transaction.header
        existing = header.get_all("Authentication-Results")
        if not existing:
            return
        ours = (auth_id or self.config_value("me") or "").strip().lower()
        keep_others = self._dkim_covers_authentication_results()
        kept = [value for value in existing if keep_others and _authserv_id(value) != ours]
        header.delete("Authentication-Results")
        for value in existing:
            if value in kept:
                header.add("Authentication-Results", value)
            else:
                header.add("Original-Authentication-Results", value)
        self.log(LOGDEBUG, "Authentication-Results moved to Original-Authentication-Results")

    def _dkim_covers_authentication_results(self) -> bool:
        signature = self.transaction.header.get("DKIM-Signature")
        if not signature:
            return False
        import re  # only for DKIM-signed messages

        fields = dict(part.split("=", 1) for part in re.split(r";\s*", signature) if "=" in part)
        signed = {name.strip().lower() for name in re.split(r"[:\s]+", fields.get("h", "")) if name}
        return "authentication-results" in signed

    def add_received_line(self) -> None:
        conn = self.connection
        smtp = "ESMTP" if conn.hello == "ehlo" else "SMTP"
        esmtp = smtp.startswith("E")
        if esmtp and self.transaction.notes.get("smtputf8"):
            smtp = "UTF8SMTP"  # RFC 6531 4.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA
        auth_header = ""
        ssl_header = ""
        if conn.notes.get("tls_enabled"):
            if esmtp:
                smtp += "S"
            ssl_header = f"({conn.notes.get('tls_cipher') or 'TLS'} encrypted)"
        if self.authenticated():
            if esmtp:
                smtp += "A"
            auth_header = (f"(smtp-auth username {header_safe(self.auth_user)}, "
                           f"mechanism {header_safe(self.auth_mechanism)})\n")
        rc, *received = self.run_hooks("received_line", smtp, auth_header, ssl_header)
        if rc == OK and received:
            text = "\n".join(str(line) for line in received)
        else:
            date = time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime())
            text = (f"from {header_safe(conn.remote_info)} (HELO {header_safe(conn.hello_host)}) "
                    f"({header_safe(conn.remote_ip)})\n"
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
            auth_list.append(f"auth={verdict} ({header_safe(self.auth_mechanism)}) "
                             f"smtp.auth={authres_value(self.auth_user)}")
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

    def data_headers_end_respond(self, result: HookResult, args: tuple) -> None:
        """Mid-DATA: *_DISCONNECT answer and close now; DENY/DENYSOFT are answered after the final dot."""
        if result.code in (DENY_DISCONNECT, DENYSOFT_DISCONNECT) or (
                result.reply is not None and result.reply.code == 421):
            self.answer("data_headers_end", result)
        elif result.code in (DENY, DENYSOFT):
            self._deferred_data_verdict = result

    def data_post_headers_respond(self, result: HookResult, args: tuple) -> None:
        if result.code != DONE:
            self.answer("data_post_headers", result)

    def data_post_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("data_post", result):
            return
        self.run_hooks("queue_pre")

    def queue_pre_respond(self, result: HookResult, args: tuple) -> None:
        if result.code == DONE or self.answer("queue_pre", result):
            return
        self.run_hooks("queue")

    def queue_respond(self, result: HookResult, args: tuple) -> None:
        """Answer the queue's verdict, tell queue_post, then end the transaction."""
        if result.code == DONE:
            self._after_queue(result, queued=None)
            return
        queued = result.code == OK
        reply = result.reply
        if queued:
            code, lines = 250, [str(line) for line in result.messages] or ["Queued"]
            esc = reply.esc if reply is not None and reply.esc else "2.0.0"
            self.varlog(LOGNOTICE, "queue", result.plugin, f"accept {self.connection.remote_ip}: 250 {lines[0]}")
            self.respond(code, *lines, esc=esc)
        else:
            rule = self._rule_for_reply("queue", reply) if reply is not None else rule_for("queue", result.code)
            code = reply.code if reply is not None else rule.code
            lines = (reply.lines if reply is not None else [str(m) for m in result.messages]) or [rule.text]
            self.log_decision("queue", result.plugin or "qpsmtpd", code, lines)
            self.respond(code, *lines, esc=(reply.esc if reply is not None else None) or rule.esc)
        self._after_queue(result, queued=queued, code=code, text=lines[0] if lines else "")

    def _after_queue(self, result: HookResult, queued: bool | None, code: int = 0, text: str = "") -> None:
        """queue_post sees the outcome (transaction.notes["queue_result"]) before the reset."""
        self.transaction.notes["queue_result"] = {
            "queued": queued, "code": code, "text": text, "plugin": result.plugin,
        }
        try:
            self.run_hooks("queue_post")
        finally:
            self.reset_transaction()

    def queue_post_respond(self, result: HookResult, args: tuple) -> None:
        if result.code not in (OK, DECLINED) and result.messages:
            self.log(LOGERROR, " ".join(str(part) for part in result.messages))


MESSAGE_HOOKS = frozenset(("data", "data_headers_end", "data_post_headers", "data_post", "queue_pre", "queue"))


def _fill(text: str, values: dict[str, str]) -> str:
    """A default text with {sender}/{rcpt} filled in (no str.format: client text may hold braces)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _has_esc(line: str) -> bool:
    """True when a reply line already starts with an enhanced status code (`5.7.1 ...`)."""
    head = line.split(" ", 1)[0]
    parts = head.split(".")
    return len(parts) == 3 and all(part.isdigit() for part in parts)


def header_safe(text: str | None) -> str:
    """Client-given text for a header we write: control and other unprintable characters become `?`."""
    text = "" if text is None else str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else "?" for char in text)


def authres_value(text: str) -> str:
    """An Authentication-Results property value: no `;`, comment, quote or space can start a new entry."""
    return "".join("?" if (not char.isprintable() or char in ' ;()"\\') else char for char in str(text))


def _authserv_id(value: str) -> str:
    """The authserv-id of an Authentication-Results value (before the first `;`)."""
    first = value.split(";", 1)[0].strip()
    return first.split(None, 1)[0].lower() if first else ""
