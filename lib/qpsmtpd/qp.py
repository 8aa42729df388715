"""The engine's core object: config, logging, plugins and the hook runner.

`Qpsmtpd` is what plugins reach as `self.qp`.  `run_hooks(hook, *args)`
calls each registered plugin in config order until one returns something
other than DECLINED, records the result in the transaction notes, runs the
`deny`/`ok` hooks, and hands the result to the `<hook>_respond` method of
the SMTP layer, which turns it into a reply.
"""

from __future__ import annotations

import os
import time

from . import __version__
from .address import Address
from .config import Config
from .connection import Connection
from .logline import line_prefix, write_stderr
from .constants import (DECLINED, DENY_CODES, LOGCRIT, LOGDEBUG, LOGERROR, LOGWARN, OK,
                        return_code)
from .plugin import Plugin, PluginError, PluginLoader, flatten as _flatten, normalize_result
from .transaction import Transaction

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any, Callable
    HookEntry = tuple[Plugin, Callable[..., Any]]
_ESCAPE_CONTROL = {code: "\\x%02x" % code for code in [*range(0x20), 0x7F]}

# Hooks whose failure must not silently let the command through: the client
# gets a 451 instead.  A failing plugin in any other hook is skipped.
FAULT_HOOKS = frozenset((
    "connect", "helo", "ehlo", "mail_pre", "mail", "rcpt_pre", "rcpt", "data",
    "data_headers_end", "data_post_headers", "data_post", "queue_pre", "queue",
    "vrfy", "noop", "help", "unrecognized_command", "auth", "auth_parse",
))


def sanitize_log_text(text: str) -> str:
    """No CR, LF or other control character from a client ever reaches a log line."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPE_CONTROL)


class PluginFault(Exception):
    """Raised by the hook runner when a plugin in a FAULT_HOOKS hook raised."""

    def __init__(self, hook: str, plugin_name: str) -> None:
        super().__init__(f"plugin {plugin_name} failed in hook {hook}")
        self.hook = hook
        self.plugin_name = plugin_name


class Qpsmtpd:
    """Config, logging, plugin registry and hook runner of one session."""

    version = __version__

    def __init__(self, install_dir: str) -> None:
        self.install_dir = install_dir
        self.conf = Config(install_dir, on_error=lambda message: self.log(LOGERROR, message))
        self.hooks: dict[str, list[HookEntry]] = {}
        self.plugins: list[Plugin] = []
        self.connection = Connection()
        self._transaction: Transaction | None = None
        self._trace_level = LOGWARN
        self._logging_loaded = False
        self._log_to_stderr = True
        self.log_sink: Callable[[str], None] | None = None  # tests capture log lines here
        self._spool_dir: str | None = None
        self._size_threshold: int | None = None
        self._temp_counter = 0
        self._plugin_loader: PluginLoader | None = None
        self.auth_result: int | None = None
        self.auth_user = ""
        self.auth_mechanism = ""

    # -- transaction ------------------------------------------------------
    @property
    def transaction(self) -> Transaction:
        if self._transaction is None:
            self._transaction = Transaction(self)
        return self._transaction

    def reset_transaction(self) -> Transaction:
        if self._transaction is not None:
            self.run_hooks("reset_transaction")
            self._transaction.close()
        self._transaction = Transaction(self)
        return self._transaction

    def authenticated(self) -> bool:
        return self.auth_result == OK

    # -- config -----------------------------------------------------------
    def config(self, name: str, kind: str | Address | None = None) -> Any:
        """Lines of config item `name` (a list); a cdb map for kind "map".

        The `user_config` hooks answer first when `kind` is an Address,
        then the `config` hooks, then the files.
        """
        if isinstance(kind, Address) and "user_config" in self.hooks:
            code, *values = self.run_hooks_no_respond("user_config", kind, name)
            if code == OK:
                return _flatten(values)
        if "config" in self.hooks:
            code, *values = self.run_hooks_no_respond("config", name)
            if code == OK:
                return _flatten(values)
        return self.conf.get(name, kind if isinstance(kind, str) else None)

    def config_value(self, name: str, default: Any = None) -> Any:
        """The first line of config item `name`, or `default`."""
        values = self.config(name)
        return values[0] if values else default

    def config_int(self, name: str, default: int = 0) -> int:
        value = self.config_value(name)
        try:
            return int(str(value).strip()) if value is not None else default
        except ValueError:
            self.log(LOGWARN, f"config {name}: not a number: {value}")
            return default

    # -- logging ----------------------------------------------------------
    def disable_stderr_log(self) -> None:
        self._log_to_stderr = False

    def stderr_logging_allowed(self) -> bool:
        """False when fd 2 is the client's socket (xinetd) and was silenced."""
        return self._log_to_stderr

    def trace_level(self) -> int:
        return self._trace_level

    def load_logging(self) -> None:
        """Load the plugins of `config/logging` and read `config/loglevel`."""
        if self._logging_loaded:
            return
        self._logging_loaded = True
        level = self.conf.from_file("loglevel")
        if level and level[0].strip().isdigit():
            self._trace_level = int(level[0])
        for line in self.conf.from_file("logging"):
            self.load_plugin(line)

    def log(self, level: int, *message: Any) -> None:
        self.varlog(level, None, None, " ".join(str(part) for part in message))

    def varlog(self, level: int, hook: str | None, plugin: str | None, message: str) -> None:
        has_loggers = "logging" in self.hooks
        if not has_loggers and (level > self._trace_level or not self._log_to_stderr):
            return
        message = sanitize_log_text(message)
        if has_loggers:
            code, *_ = self.run_hooks_no_respond("logging", level, hook, plugin, message)
            if code in (DECLINED, OK):
                return
        if level > self._trace_level or not self._log_to_stderr:
            return
        line = f"{os.getpid()}{line_prefix(hook, plugin)} {message}"
        if self.log_sink is not None:
            self.log_sink(line)
            return
        write_stderr(line)

    # -- plugins ----------------------------------------------------------
    @property
    def plugin_loader(self) -> PluginLoader:
        if self._plugin_loader is None:
            self._plugin_loader = PluginLoader(self, self.plugin_dirs())
        return self._plugin_loader

    def plugin_dirs(self) -> list[str]:
        dirs = self.conf.from_file("plugin_dirs")
        return dirs or [os.path.join(self.install_dir, "plugins")]

    def load_plugin(self, line: str) -> Plugin:
        plugin = self.plugin_loader.instantiate(line)
        self.plugins.append(plugin)
        return plugin

    def load_plugins(self) -> None:
        """Load every plugin of `config/plugins`; raises PluginError on the first failure."""
        self.load_logging()
        for line in self.config("plugins"):
            try:
                self.load_plugin(line)
            except PluginError as error:
                self.log(LOGCRIT, f"plugin failed to load: {line}: {error}")
                raise

    def register_hook(self, hook: str, plugin: Plugin, method: Callable[..., Any], unshift: bool = False) -> None:
        entries = self.hooks.setdefault(hook, [])
        if unshift:
            entries.insert(0, (plugin, method))
        else:
            entries.append((plugin, method))

    # -- hook runner ------------------------------------------------------
    def run_hooks(self, hook: str, *args: Any) -> Any:
        """Run `hook` and hand its result to `<hook>_respond` (if the layer has one)."""
        code, messages = self._run_chain(hook, args)
        responder = getattr(self, _responder_name(hook), None)
        if responder is not None:
            return responder(code, messages, args)
        return (code, *messages)

    def _run_chain(self, hook: str, args: tuple[Any, ...]) -> tuple[int, list[Any]]:
        code, messages = DECLINED, []
        for plugin, method in self.hooks.get(hook, ()):
            name = plugin.plugin_name
            self.varlog(LOGDEBUG, hook, None, name)
            transaction = self.transaction
            previous_hook, plugin._hook = plugin._hook, hook
            try:
                result = method(transaction, *args)
            except Exception as error:  # a plugin bug must not kill the session
                self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{name}]: {describe_exception(error)} (hook {hook})")
                if hook in FAULT_HOOKS:
                    raise PluginFault(hook, name) from error
                continue
            finally:
                plugin._hook = previous_hook
            code, messages = normalize_result(result, hook)
            if return_code(code) is None:
                self.log(LOGERROR, f"Plugin {name}, hook {hook} returned {code}")
                code, messages = DECLINED, []
                continue
            self._note_result(transaction, name, hook, code)
            text = messages[0] if messages and isinstance(messages[0], str) else ""
            self.log(LOGDEBUG, f"Plugin {name}, hook {hook} returned {return_code(code)}, {text}")
            follow_up = "deny" if code in DENY_CODES else "ok"
            if hook != follow_up and follow_up in self.hooks:
                self.run_hooks_no_respond(follow_up, name, code, text)
            if code != DECLINED:
                break
        return code, messages

    @staticmethod
    def _note_result(transaction: Transaction, name: str, hook: str, code: int) -> None:
        # As qpsmtpd: recorded only in a dict note the plugin keeps under its own
        # name, never created here (a note named like a plugin, e.g. `naughty`,
        # belongs to whoever set it).
        notes = transaction.notes.get(name)
        if isinstance(notes, dict):
            notes.setdefault("hook_" + hook, {})["return"] = code

    def run_hooks_no_respond(self, hook: str, *args: Any) -> list[Any]:
        """Run `hook` for its result only (logging, config, deny, ok ...); failures are skipped."""
        result: list[Any] = [DECLINED]
        for plugin, method in self.hooks.get(hook, ()):
            previous_hook, plugin._hook = plugin._hook, hook
            try:
                raw = method(self._transaction, *args)
            except Exception as error:
                if hook != "logging":
                    self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{plugin.plugin_name}]: {describe_exception(error)}")
                continue
            finally:
                plugin._hook = previous_hook
            code, values = normalize_result(raw, hook, split_lines=False)
            result = [code, *values]
            if code != DECLINED:
                break
        return result

    # -- spool ------------------------------------------------------------
    def spool_dir(self) -> str:
        if self._spool_dir is None:
            directory = self.config_value("spool_dir") or os.path.join(os.path.expanduser("~"), "tmp")
            directory = directory.rstrip("/") + "/"
            perms = int(self.config_value("spool_perms", "0700"), 8)
            if not os.path.isdir(directory):
                os.mkdir(directory, perms)
            if os.stat(directory).st_mode & 0o7777 != perms:
                self.log(LOGWARN, f"Permissions on spool_dir {directory} are not {perms:04o}")
            self._spool_dir = directory
        return self._spool_dir

    def temp_file(self) -> str:
        self._temp_counter += 1
        return f"{self.spool_dir()}{int(time.time())}:{os.getpid()}:{self._temp_counter}"

    def temp_dir(self, mode: int = 0o700) -> str:
        path = self.temp_file()
        os.mkdir(path, mode)
        return path

    def refresh_authentication_results(self) -> None:
        """Rewrite the Authentication-Results header once written (the SMTP layer writes it)."""

    def size_threshold(self) -> int:
        if self._size_threshold is None:
            self._size_threshold = self.config_int("size_threshold", 0)
        return self._size_threshold

    def address(self, text: str) -> Address | None:
        address = Address.parse(text)
        if address is not None:
            address.qp = self
        return address


def _responder_name(hook: str) -> str:
    return hook.replace("-", "_") + "_respond"


def describe_exception(error: BaseException) -> str:
    """One log line: the error and where it happened."""
    import traceback  # only when a plugin fails: keeps start-up lean

    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" at {last.filename}:{last.lineno} in {last.name}"
    return f"{type(error).__name__}: {error}{where}"
