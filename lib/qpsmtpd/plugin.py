"""Plugins: the base class every plugin gets, and the loader for plugin files.

A plugin file is Python.  The simplest one is a module with one function:

    def hook_connect(self, transaction):
        return DENYSOFT, "Sorry, server is temporarily unavailable."

Module-level functions become methods of a `Plugin` subclass made for the
file (hooks, `init`, `register` and functions whose first parameter is
`self`; other functions stay plain helpers), and a module-level
`arguments = Arguments(...)` becomes the class's argument spec; a file may
instead define its own `class ...(Plugin)`.  Shipped plugins import what
they use (`from qpsmtpd.constants import DENY`); for admins' own short
plugins every constant of `qpsmtpd.constants` and the name `Plugin` are
already in the file's namespace.  `init(self, qp, *args)` runs first, then every
`hook_<name>` method is registered (hook names translated with `s/\\W/_/g`,
so `auth-cram-md5` is `hook_auth_cram_md5`), then `register(self, qp,
*args)`.  `isa_plugin("rcpt_ok")` in `init` makes the plugin inherit from
another plugin; its hooks are then reachable as `super().hook_rcpt(...)` in a
class (`self.SUPER.hook_rcpt(...)`, the Perl spelling, is in `qpsmtpd.compat`).
"""

from __future__ import annotations

import os
import sys
import types

from . import constants
from .args import Arguments
from .compat import PerlPluginNames
from .constants import DECLINED, LOGCRIT, LOGDEBUG, LOGERROR, LOGNOTICE, LOGWARN
from .policy import PolicyMixin

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Any, Callable
    from .connection import Connection
    from .qp import Qpsmtpd
    from .transaction import Transaction

# Every hook a plugin may register, in roughly the order they fire.
HOOKS = (
    "logging", "config", "user_config", "post-fork", "pre-connection", "connect",
    "ehlo_parse", "ehlo", "helo_parse", "helo", "auth_parse", "auth", "auth-plain",
    "auth-login", "auth-cram-md5", "rcpt_parse", "rcpt_pre", "rcpt", "mail_parse",
    "mail", "mail_pre", "data", "data_headers_end", "data_post_headers", "data_post",
    "queue_pre", "queue", "queue_post", "vrfy", "noop", "quit", "reset_transaction",
    "disconnect", "post-connection", "unrecognized_command", "deny", "ok",
    "received_line", "help",
)
_HOOK_SET = frozenset(HOOKS)


class PluginError(Exception):
    """A plugin could not be found, compiled or initialised."""


class PluginTimeout(BaseException):
    """Raised inside a hook that ran past its time limit (`config/plugin_timeout`).

    A BaseException, so that a plugin's `except Exception:` does not swallow
    it: catch it by name (or use `finally`) to clean up, then let it go.
    Whatever the hook returns after its limit, the engine answers 451.
    """


def to_identifier(text: str) -> str:
    """Every non-word character turned into `_` (Perl's `s/\\W/_/g`)."""
    return "".join(char if char.isalnum() or char == "_" else "_" for char in text)


def hook_method_name(hook: str) -> str:
    return "hook_" + to_identifier(hook)


def is_valid_hook(hook: str) -> bool:
    return hook in _HOOK_SET or hook.startswith("auth-")


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS = frozenset("0123456789")


def escape_plugin_name(name: str) -> str:
    """qpsmtpd's plugin_name: `queue/qmail-queue` -> `queue::qmail_2dqueue`.

    Other characters become `_` and their hex code; each run of slashes
    becomes `::`, and a digit right after it is escaped too.
    """
    out: list[str] = []
    index = 0
    while index < len(name):
        char = name[index]
        if char == "/":
            while index < len(name) and name[index] == "/":
                index += 1
            out.append("::")
            if index < len(name) and name[index] in _DIGITS:
                out.append("_%2x" % ord(name[index]))
                index += 1
            continue
        out.append(char if char in _NAME_CHARS else "_%2x" % ord(char))
        index += 1
    return "".join(out)


def strip_instance(name: str) -> str:
    """`rcpt_ok:0` -> `rcpt_ok` (the file behind a numbered instance)."""
    base, colon, number = name.rpartition(":")
    return base if colon and number and _DIGITS.issuperset(number) else name


def parse_args(args: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`['reject', '0', 'loglevel', '-1']` -> `{'reject': '0', 'loglevel': '-1'}` (even lists only)."""
    if len(args) % 2:
        return {}
    return {args[i]: args[i + 1] for i in range(0, len(args), 2)}


class Plugin(PolicyMixin, PerlPluginNames):
    """Base class of every plugin: context accessors, logging, temp files, hooks."""

    def __init__(self) -> None:
        self._qp: Qpsmtpd | None = None
        self._hook: str | None = None
        self._name = type(self).__name__
        self._isa_child: type | None = None
        self.args: list[str] = []
        self.opts: dict[str, Any] = {}
        self.argument_warnings: list[str] = []

    # -- context ----------------------------------------------------------
    @property
    def plugin_name(self) -> str:
        return self._name

    @property
    def config_name(self) -> str:
        """The name as written in config/plugins (`virus/clamdscan`, `rcpt_ok:1`)."""
        return getattr(self, "_config_name", None) or self._name

    @property
    def hook_name(self) -> str | None:
        return self._hook

    @property
    def qp(self) -> Qpsmtpd:
        assert self._qp is not None
        return self._qp

    @property
    def connection(self) -> Connection:
        return self.qp.connection

    @property
    def transaction(self) -> Transaction:
        return self.qp.transaction

    @property
    def auth_user(self) -> str:
        return self.qp.auth_user

    @property
    def auth_mechanism(self) -> str:
        return self.qp.auth_mechanism

    @property
    def spool_dir(self) -> str:
        return self.qp.spool_dir()

    # -- services ---------------------------------------------------------
    def log(self, level: int, *message: Any) -> None:
        """Log through the `logging` hook / stderr, tagged with this plugin and hook."""
        if self._hook == "logging":
            return
        self.qp.varlog(self.adjust_log_level(level), self._hook, self.plugin_name,
                       " ".join(str(part) for part in message))

    def adjust_log_level(self, level: int) -> int:
        """Apply the plugin's `loglevel` argument: a raw level 0-7, or `+N`/`-N`."""
        adjust = self.opts.get("loglevel")
        if not adjust:
            return level
        if len(adjust) == 1 and adjust in "01234567":
            return int(adjust)
        if len(adjust) != 2 or adjust[0] not in "+-" or adjust[1] not in _DIGITS:
            del self.opts["loglevel"]
            self.log(LOGERROR, f"invalid {self.plugin_name} loglevel setting ({adjust})")
            return level
        shift = int(adjust[1]) * (1 if adjust[0] == "+" else -1)
        return max(0, min(7, level + shift))

    def temp_file(self) -> str:
        """A unique file name in the spool dir, removed when the transaction ends."""
        path = self.qp.temp_file()
        self.qp.transaction.track_temp_file(path)
        return path

    def temp_dir(self, mode: int = 0o700) -> str:
        """A new directory in the spool dir (0700), removed when the transaction ends."""
        path = self.qp.temp_dir(mode)
        self.qp.transaction.track_temp_dir(path)
        return path

    def register_hook(self, hook: str, method: str | Callable[..., Any], unshift: bool = False) -> None:
        if not is_valid_hook(hook):
            raise PluginError(f"{self.plugin_name}: Invalid hook: {hook}")
        if isinstance(method, str):
            method = getattr(self, method)
        if hook != "logging":
            self.qp.log(LOGDEBUG, f"{self.plugin_name} hooking {hook}")
        self.qp.register_hook(hook, self, method, unshift)

    # -- inheritance --------------------------------------------------------
    def isa_plugin(self, parent: str) -> None:
        """Inherit every method of plugin `parent` (found in the plugin dirs)."""
        parent_class = self.qp.plugin_loader.load_class(parent)
        child_class = type(self)
        if issubclass(child_class, parent_class):
            return
        self._isa_child = child_class
        self.__class__ = type(child_class.__name__, (child_class, parent_class), {})

    # -- registration ---------------------------------------------------------
    def _register(self, qp: Qpsmtpd, args: list[str]) -> None:
        self._qp = qp
        self.args = list(args)
        spec = getattr(type(self), "arguments", None)
        if isinstance(spec, Arguments):
            parsed = spec.parse(args)
            if parsed.errors:
                raise PluginError(f"{self.plugin_name}: bad arguments: {'; '.join(parsed.errors)}")
            self.opts = parsed.values
            self.argument_warnings = parsed.warnings
            for warning in parsed.warnings:
                qp.log(LOGWARN, f"plugin {self.plugin_name}: {warning}")
        else:
            self.opts = parse_args(args)
        init = getattr(self, "init", None)
        if callable(init):
            init(qp, *args)
        for hook, method_name in _HOOK_METHODS:
            if callable(getattr(self, method_name, None)):
                self.register_hook(hook, method_name)
        for attribute in _own_auth_methods(type(self)):
            self.register_hook("auth-" + attribute[len("hook_auth_"):].replace("_", "-"), attribute)
        register = getattr(self, "register", None)
        if callable(register):
            register(qp, *args)


def flatten(values: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for value in values:
        if isinstance(value, (list, tuple)):
            flat.extend(value)
        elif value is not None:
            flat.append(value)
    return flat


def normalize_result(result: Any, hook: str, split_lines: bool = True) -> tuple[int, list[Any]]:
    """A plugin's return value as (code, messages): None means DECLINED; lists are flattened
    and, for replies, multi-line strings become several lines."""
    if result is None:
        return DECLINED, []
    if isinstance(result, int):
        return result, []
    if not isinstance(result, (tuple, list)) or not result:
        return DECLINED, []
    code, *rest = result
    if rest and callable(rest[0]):  # a *_parse hook hands back a parser
        return code, rest
    values = flatten(rest)
    if split_lines:
        lines: list[Any] = []
        for value in values:
            if isinstance(value, str):
                lines.extend(value.split("\n"))
            else:
                lines.append(value)
        values = lines
    return code, values


def split_result(result: Any) -> tuple[int, list[Any]]:
    """(code, messages) of any hook result: lets a child plugin inspect `super().hook_x(...)`."""
    return normalize_result(result, "")


_HOOK_METHODS = tuple((hook, hook_method_name(hook)) for hook in HOOKS)
_STANDARD_METHODS = frozenset(method for _hook, method in _HOOK_METHODS)


def _own_auth_methods(plugin_class: type) -> list[str]:
    """`hook_auth_<mech>` methods for mechanisms beyond the standard ones (cached per class)."""
    found = plugin_class.__dict__.get("_qp_auth_methods")
    if found is None:
        found = [name for name in dir(plugin_class)
                 if name.startswith("hook_auth_") and name not in _STANDARD_METHODS]
        plugin_class._qp_auth_methods = found  # type: ignore[attr-defined]
    return found
_CONSTANT_NAMESPACE: dict[str, Any] = {name: getattr(constants, name) for name in constants.__all__}
_CONSTANT_NAMESPACE["split_result"] = split_result


class PluginLoader:
    """Finds plugin files in the plugin dirs, compiles them once, makes instances.

    The dirs of `config/plugin_dirs` are searched first, then the install's
    `plugins/`.  A file that is Perl (a plugin dir copied from a Perl
    install) is never compiled: the search goes on for a Python plugin of
    the same name, then for an old name in `qpsmtpd.aliases`; a Perl plugin
    with no Python counterpart is a load error that says so.  A plugin
    whose optional library is missing does not load (`qpsmtpd.optional`).
    Every load failure is logged, even when no logging plugin could load.
    """

    def __init__(self, qp: Qpsmtpd, plugin_dirs: list[str]) -> None:
        self.qp = qp
        builtin = os.path.join(qp.install_dir, "plugins")
        self.plugin_dirs = list(plugin_dirs)
        if builtin not in self.plugin_dirs:
            self.plugin_dirs.append(builtin)
        self._classes: dict[str, type[Plugin]] = {}
        self._perl_files: dict[str, str] = {}
        self._found: dict[str, str | None] = {}
        self.notices: list[str] = []      # old names used (also logged once at LOGNOTICE)
        self.report_failures = True       # --check-config reports failures itself

    def find(self, name: str) -> str | None:
        """The Python file of plugin `name`; Perl files met on the way are remembered."""
        if name in self._found:
            return self._found[name]
        found = self._search(name)
        self._found[name] = found
        return found

    def _search(self, name: str) -> str | None:
        for directory in self.plugin_dirs:
            for candidate in (os.path.join(directory, name), os.path.join(directory, name + ".py")):
                if not os.path.isfile(candidate):
                    continue
                if not candidate.endswith(".py") and is_perl_file(candidate):
                    self._perl_files.setdefault(name, candidate)
                    continue
                return candidate
        return None

    def load_class(self, name: str) -> type[Plugin]:
        """The plugin class for file `name` (a path below a plugin dir, no `:N`)."""
        if "." in name and "/" not in name and not self.find(name):
            return self._load_module_class(name)
        path = self.find(name)
        if path is None:
            from .aliases import lookup

            alias = lookup(name)
            if alias is not None:
                return self.load_class(alias.target)
            raise self._not_found(name)
        cached = self._classes.get(path)
        if cached is None:
            cached = self._compile(name, path)
            self._classes[path] = cached
        return cached

    def _not_found(self, name: str) -> PluginError:
        perl_file = self._perl_files.get(name)
        if perl_file is None:
            return PluginError(f"Plugin {name} not found in our plugin dirs ({', '.join(self.plugin_dirs)})")
        from .aliases import NOT_PORTED

        reason = NOT_PORTED.get(name)
        detail = f" (not ported: {reason})" if reason else ""
        return PluginError(f"Perl plugin {name} ({perl_file}): port it, see docs/migration.md{detail}")

    def _compile(self, name: str, path: str) -> type[Plugin]:
        module_name = "qpsmtpd_plugins." + to_identifier(name)
        module = types.ModuleType(module_name)
        module.__file__ = path
        module.__dict__.update(_CONSTANT_NAMESPACE)
        module.__dict__["Plugin"] = Plugin
        try:
            code = _SourceFileLoader(module_name, path).get_code(module_name)
            exec(code, module.__dict__)  # noqa: S102 - loading the admin's configured plugin
        except Exception as error:
            raise PluginError(f"could not compile plugin {name} ({path}): {type(error).__name__}: {error}") from error
        return _class_from_module(module, name)

    def _load_module_class(self, dotted: str) -> type[Plugin]:
        cached = self._classes.get(dotted)
        if cached is None:
            try:
                __import__(dotted)
                module = sys.modules[dotted]
            except Exception as error:
                raise PluginError(f"Failed loading {dotted}: {type(error).__name__}: {error}") from error
            cached = _class_from_module(module, dotted)
            self._classes[dotted] = cached
        return cached

    def instantiate(self, line: str) -> Plugin:
        """A registered plugin instance for one `config/plugins` line; failures are logged."""
        try:
            return self._instantiate(line)
        except PluginError as error:
            self.report_failure(line, error)
            raise

    def _instantiate(self, line: str) -> Plugin:
        if not line.isascii() or not line.isprintable():
            raise PluginError(f"unsafe characters in config line: {line!r}")
        name, *args = line.split()
        is_module = "." in name and "/" not in name and not self.find(name.split(":")[0])
        file_name = name if is_module else strip_instance(name)
        instance_name = name
        if not is_module and self.find(file_name) is None:
            file_name, instance_name, args = self._resolve_alias(name, file_name, args)
        plugin_class = self.load_class(file_name)
        self._check_libraries(file_name, plugin_class, args)
        plugin = plugin_class()
        plugin._name = instance_name if is_module else escape_plugin_name(instance_name)
        plugin._config_name = name
        try:
            plugin._register(self.qp, args)
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(f"plugin {name} failed to initialise: {type(error).__name__}: {error}") from error
        return plugin

    def _resolve_alias(self, name: str, file_name: str, args: list[str]) -> tuple[str, str, list[str]]:
        """An old plugin name: the current plugin's file, instance name and arguments."""
        from .aliases import lookup

        alias = lookup(file_name)
        if alias is None:
            raise self._not_found(file_name)
        if self.find(alias.target) is None:
            raise PluginError(f"plugin {file_name} is the old name of {alias.target}, "
                              f"which is not installed ({', '.join(self.plugin_dirs)})")
        new_args = alias.arguments(args, self.qp.conf.from_file)
        notice = alias.notice(args, new_args)
        if notice not in self.notices:
            self.notices.append(notice)
            self.qp.log(LOGNOTICE, notice)
        return alias.target, alias.target + name[len(file_name):], new_args

    @staticmethod
    def _check_libraries(file_name: str, plugin_class: type[Plugin], args: list[str]) -> None:
        from .optional import missing

        problems = missing(file_name, plugin_class, args)
        if problems:
            raise PluginError(f"plugin {file_name} cannot run: {'; '.join(problems)}")

    def report_failure(self, line: str, error: Exception) -> None:
        """Log a load failure where an admin will see it, whatever else failed.

        A failure of a `config/plugins` line is logged by the engine when a
        logging plugin or stderr can take it; a failure of a `config/logging`
        line, or one with nowhere to go, is written here: to stderr, or to
        syslog (mail.crit) when stderr is the client's socket.
        """
        if not self.report_failures:
            return
        qp = self.qp
        is_logging_line = line.strip() in qp.conf.from_file("logging")
        if not is_logging_line and ("logging" in qp.hooks
                                    or (qp.stderr_logging_allowed() and LOGCRIT <= qp.trace_level())):
            return
        text = f"plugin failed to load: {line}: {error}"
        if qp.stderr_logging_allowed():
            line_text = f"{os.getpid()} {text}"
            if qp.log_sink is not None:
                qp.log_sink(line_text)
            else:
                from .logline import write_stderr

                write_stderr(line_text)
            return
        send_syslog(LOGCRIT, text)


def send_syslog(level: int, text: str) -> None:
    """One mail-facility datagram to the local syslog socket (`QPSMTPD_SYSLOG_SOCKET`, else /dev/log)."""
    import socket

    path = os.environ.get("QPSMTPD_SYSLOG_SOCKET") or "/dev/log"
    clean = "".join(char if char.isprintable() else "?" for char in text)
    datagram = f"<{2 * 8 + level}>qpsmtpd[{os.getpid()}]: {clean}".encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.send(datagram)
    except OSError:
        pass


_PERL_MARKERS = ("use strict", "use warnings", "use Qpsmtpd", "sub ", "my $", "my (", "my @", "my %",
                 "=head", "=pod", "=cut", "__END__", "package ", "1;")


def is_perl_file(path: str) -> bool:
    """True for a Perl plugin: a perl #! line, or a line only Perl starts that way."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16384).decode("utf-8", "replace")
    except OSError:
        return False
    lines = head.splitlines()
    if lines and lines[0].startswith("#!") and "perl" in lines[0]:
        return True
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(_PERL_MARKERS) and not line[:1].isspace() and _looks_perl(stripped):
            return True
    return False


def _looks_perl(line: str) -> bool:
    if line.startswith("sub "):
        rest = line[4:].strip()
        return rest.endswith("{") or rest.replace("_", "").isalnum()
    if line.startswith("1;"):
        return line == "1;"
    if line.startswith(("package ", "use ")):
        return line.endswith(";")
    return True


# The loader importlib.machinery re-exports: the interpreter's own, already loaded at start-up
# (importing `importlib` for it costs a per-connection process about 0.3-0.8 ms).
_SourceFileLoader = sys.modules["_frozen_importlib_external"].SourceFileLoader


def _is_method(name: str, function: types.FunctionType) -> bool:
    """Hooks, init, register and functions whose first parameter is `self` become methods."""
    if name.startswith("hook_") or name in ("init", "register"):
        return True
    code = function.__code__
    return code.co_argcount > 0 and code.co_varnames[0] == "self"


def _class_from_module(module: types.ModuleType, name: str) -> type[Plugin]:
    """The module's own Plugin subclass, or a subclass made from its functions."""
    namespace = vars(module)
    own_classes = [value for value in namespace.values()
                   if isinstance(value, type) and issubclass(value, Plugin) and value is not Plugin
                   and value.__module__ == module.__name__]
    if own_classes:
        return own_classes[-1]
    methods: dict[str, Any] = {key: value for key, value in namespace.items()
                               if isinstance(value, types.FunctionType) and value.__module__ == module.__name__
                               and _is_method(key, value)}
    spec = namespace.get("arguments")
    if isinstance(spec, Arguments):  # a module-level `arguments = Arguments(...)`
        methods["arguments"] = spec
    class_name = to_identifier(name)
    return type(class_name, (Plugin,), methods)
