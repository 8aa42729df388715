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
from .constants import (DECLINED, DENY_CODES, DONE, LOGCRIT, LOGDEBUG, LOGERROR, LOGWARN, OK,
                        return_code)
from .plugin import (Plugin, PluginError, PluginLoader, PluginTimeout, escape_plugin_name, flatten as _flatten,
                     normalize_result)
from .replies import DONE_OWNED, RESULTS, Reply, check_reply, describe_value
from .transaction import Transaction

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any, Callable, Iterator
    HookEntry = tuple[Plugin, Callable[..., Any]]
_ESCAPE_CONTROL = {code: "\\x%02x" % code for code in [*range(0x20), 0x7F]}

# Hooks whose failure must not silently let the command through: the client
# gets a 451 instead.  A failing plugin in any other hook is skipped.
FAULT_HOOKS = frozenset((
    "connect", "helo", "ehlo", "mail_parse", "mail_pre", "mail", "rcpt_parse", "rcpt_pre", "rcpt", "data",
    "data_headers_end", "data_post_headers", "data_post", "queue_pre", "queue",
    "vrfy", "noop", "help", "unrecognized_command", "auth", "auth_parse",
    "helo_parse", "ehlo_parse", "pre-connection",
))
NO_TRANSACTION_HOOKS = frozenset(("pre-connection", "post-fork"))


def sanitize_log_text(text: str) -> str:
    """No CR, LF or other control character from a client ever reaches a log line."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPE_CONTROL)


class PluginFault(Exception):
    """Raised by the hook runner when a plugin failed in a FAULT_HOOKS hook.

    `reason`: "exception", "timeout", "bad value" or "DONE without a reply".
    """

    def __init__(self, hook: str, plugin_name: str, reason: str = "exception") -> None:
        super().__init__(f"plugin {plugin_name} failed in hook {hook} ({reason})")
        self.hook = hook
        self.plugin_name = plugin_name
        self.reason = reason


class HookResult:
    """What a hook decided: the result code, the message lines, who decided.

    `reply` is the plugin's explicit Reply, if it gave one.  Unpacks like
    qpsmtpd's list (`code, *messages = qp.run_hooks(...)`).
    """

    __slots__ = ("code", "messages", "plugin", "reply")

    def __init__(self, code: int, messages: list[Any], plugin: str | None, reply: Reply | None) -> None:
        self.code = code
        self.messages = messages
        self.plugin = plugin
        self.reply = reply

    def __iter__(self) -> Iterator[Any]:
        yield self.code
        yield from self.messages

    def __repr__(self) -> str:
        return f"HookResult({return_code(self.code)}, {self.messages!r}, plugin={self.plugin!r})"


def _raise_timeout(signum: int, frame: Any) -> None:
    raise PluginTimeout()


_FAILED = object()  # a plugin raised where the hook runner may skip it
DEFAULT_PLUGIN_TIMEOUT = 30.0
DEFAULT_QUEUE_TIMEOUT = 600.0


class Qpsmtpd:
    """Config, logging, plugin registry and hook runner of one session."""

    version = __version__
    # True in `qpsmtpd.py --listen`: plugins were loaded once by a long-lived parent and each
    # session runs in a forked child (see docs/writing-plugins.md, "Long-lived parents")
    forkserver = False

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
        self.replies_sent = 0  # counted by the SMTP layer's respond(): DONE must have answered
        self._time_limits: dict[str, float] | None = None
        self._deadline_armed = False
        self._previous_alarm_handler: Any = None

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
    def run_hooks(self, hook: str, *args: Any, **kwargs: Any) -> HookResult:
        """Run `hook`'s plugins; hand the result to `<hook>_respond` (if the layer has one).

        Always returns a HookResult.  A plugin that raises, runs past its time
        limit, returns a value that is not a result, or returns DONE without
        having answered in a hook whose reply the engine owns, raises
        PluginFault here (in the hooks of FAULT_HOOKS); the SMTP layer answers it.
        """
        replies_before = self.replies_sent
        result = self._run_chain(hook, args, kwargs)
        if result.code == DONE and hook in DONE_OWNED and self.replies_sent == replies_before:
            self.log(LOGERROR, f"plugin {result.plugin} returned DONE from hook {hook} without a reply")
            raise PluginFault(hook, result.plugin or "?", "DONE without a reply")
        responder = getattr(self, _responder_name(hook), None)
        if responder is not None:
            responder(result, args)
        return result

    def _run_chain(self, hook: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> HookResult:
        last = HookResult(DECLINED, [], None, None)  # a DECLINED may carry a message (auth uses it)
        for plugin, method in self.hooks.get(hook, ()):
            name = plugin.plugin_name
            self.varlog(LOGDEBUG, hook, None, name)
            # pre-connection and post-fork run before any session: there is no transaction (qpsmtpd: undef)
            transaction = None if hook in NO_TRANSACTION_HOOKS else self.transaction
            raw = self._call_hook(hook, plugin, method, (transaction, *args), kwargs)
            if raw is _FAILED:
                continue
            result = self._check_result(hook, name, raw)
            if result is None:
                continue
            if transaction is not None:
                self._note_result(transaction, name, hook, result.code)
            text = result.messages[0] if result.messages and isinstance(result.messages[0], str) else ""
            self.log(LOGDEBUG, f"Plugin {name}, hook {hook} returned {return_code(result.code)}, {text}")
            follow_up = "deny" if result.code in DENY_CODES else "ok"
            if hook != follow_up and follow_up in self.hooks:
                self.run_hooks_no_respond(follow_up, name, result.code, text)
            if result.code != DECLINED:
                return result
            last = result
        return last

    def _call_hook(self, hook: str, plugin: Plugin, method: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any] | None = None) -> Any:
        """Call one plugin's hook under its time limit; _FAILED when it raised in a hook that may skip it."""
        name = plugin.plugin_name
        previous_hook, plugin._hook = plugin._hook, hook
        limit = self.time_limit(hook, plugin) if self._deadline_armed is False else 0
        try:
            if limit:
                self._arm_deadline(limit)
            try:
                return method(*args, **kwargs) if kwargs else method(*args)
            finally:
                if limit:
                    self._disarm_deadline()
        except PluginTimeout:
            self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{name}]: hook {hook} ran past its time limit of {limit:g}s")
            if hook in FAULT_HOOKS:
                raise PluginFault(hook, name, "timeout") from None
            return _FAILED
        except PluginFault:
            raise
        except Exception as error:  # a plugin bug must not kill the session
            self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{name}]: {describe_exception(error)} (hook {hook})")
            if hook in FAULT_HOOKS:
                raise PluginFault(hook, name, "exception") from error
            return _FAILED
        finally:
            plugin._hook = previous_hook

    def _check_result(self, hook: str, name: str, raw: Any) -> HookResult | None:
        """A plugin's return value as a HookResult; a bad value is a fault (None where it may be skipped)."""
        if isinstance(raw, Reply):
            problem = check_reply(hook, raw)
            if problem is None:
                return HookResult(raw.result_code(), list(raw.lines), name, raw)
        else:
            if raw is None or type(raw) is int or (isinstance(raw, (tuple, list)) and raw):
                code, messages = normalize_result(raw, hook)
                if type(code) is int and code in RESULTS:
                    return HookResult(code, messages, name, None)
            problem = f"returned {describe_value(raw)}, which is not a result"
        self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{name}]: hook {hook} {problem}")
        if hook in FAULT_HOOKS:
            raise PluginFault(hook, name, "bad value")
        return None

    # -- time limits --------------------------------------------------------
    def time_limit(self, hook: str, plugin: Plugin) -> float:
        """Seconds `plugin` may spend in `hook` (0: no limit): config/plugin_timeout, queue_timeout."""
        if self._time_limits is None:
            self._time_limits = self._read_time_limits()
        limits = self._time_limits
        for key in (plugin.plugin_name, plugin.config_name):
            if key in limits:
                return limits[key]
        if hook == "queue":
            return limits[":queue"]
        return limits[":default"]

    def _read_time_limits(self) -> dict[str, float]:
        limits = {":default": DEFAULT_PLUGIN_TIMEOUT, ":queue": DEFAULT_QUEUE_TIMEOUT}
        # read from the files only: the config hook is a hook too, and runs under these limits
        queue_lines = self.conf.get("queue_timeout")
        if queue_lines:
            limits[":queue"] = self._seconds("queue_timeout", queue_lines[0], DEFAULT_QUEUE_TIMEOUT)
        for line in self.conf.get("plugin_timeout"):
            words = line.split()
            if len(words) == 1:
                limits[":default"] = self._seconds("plugin_timeout", words[0], DEFAULT_PLUGIN_TIMEOUT)
            elif len(words) == 2:
                limits[words[0]] = self._seconds("plugin_timeout", words[1], DEFAULT_PLUGIN_TIMEOUT)
                limits[escape_plugin_name(words[0])] = limits[words[0]]
            else:
                self.log(LOGWARN, f"config plugin_timeout: ignoring line {line!r} (want SECONDS or PLUGIN SECONDS)")
        return limits

    def _seconds(self, item: str, text: str, default: float) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (0 <= value < 1e6):
            self.log(LOGWARN, f"config {item}: not a number of seconds: {text!r}; using {default:g}")
            return default
        return value

    def _arm_deadline(self, seconds: float) -> None:
        import _signal  # the C module: `signal` would import enum at start-up

        if self._previous_alarm_handler is None:
            self._previous_alarm_handler = _signal.signal(_signal.SIGALRM, _raise_timeout)
        self._deadline_armed = True
        _signal.setitimer(_signal.ITIMER_REAL, seconds)

    def _disarm_deadline(self) -> None:
        import _signal

        _signal.setitimer(_signal.ITIMER_REAL, 0)
        self._deadline_armed = False

    @staticmethod
    def _note_result(transaction: Transaction, name: str, hook: str, code: int) -> None:
        # As qpsmtpd: recorded only in a dict note the plugin keeps under its own
        # name, never created here (a note named like a plugin, e.g. `naughty`,
        # belongs to whoever set it).
        notes = transaction.notes.get(name)
        if isinstance(notes, dict):
            notes.setdefault("hook_" + hook, {})["return"] = code

    def run_hooks_no_respond(self, hook: str, *args: Any) -> HookResult:
        """Run `hook` for its result only (logging, config, deny, ok ...); failures are skipped."""
        for plugin, method in self.hooks.get(hook, ()):
            if hook == "logging":
                raw = self._call_logging(plugin, method, args)
            else:
                raw = self._call_hook(hook, plugin, method, (self._transaction, *args))
            if raw is _FAILED:
                continue
            if isinstance(raw, Reply):
                self.log(LOGERROR, f"plugin {plugin.plugin_name}: hook {hook} takes no SMTP reply; ignored")
                continue
            code, values = normalize_result(raw, hook, split_lines=False)
            if code not in RESULTS:
                if hook != "logging":
                    self.log(LOGERROR, f"plugin {plugin.plugin_name}: hook {hook} returned {describe_value(raw)}, "
                                       "which is not a result; ignored")
                continue
            if code != DECLINED:
                return HookResult(code, values, plugin.plugin_name, None)
        return HookResult(DECLINED, [], None, None)

    def _call_logging(self, plugin: Plugin, method: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        previous_hook, plugin._hook = plugin._hook, "logging"
        try:
            return method(self._transaction, *args)
        except Exception:  # a failing logger cannot log its own failure
            return _FAILED
        finally:
            plugin._hook = previous_hook

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
