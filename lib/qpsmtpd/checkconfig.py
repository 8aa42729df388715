"""`qpsmtpd.py --check-config [DIR] [--user NAME]`: load the configuration the way a session
would, and say what would go wrong at run time.

With DIR the files there win (exactly as with `QPSMTPD_CONFIG=DIR` at run
time).  With `--user NAME` (as root) the check switches to that user
first, so that every permission is checked for the user the server runs
as; `setuidgid NAME qpsmtpd.py --check-config` does the same.

What is checked, each problem on a line of its own naming the file (and
line) or the config line of the plugin:

* the directories read, in lookup order, and whether each exists;
* every plugin of `config/logging` and `config/plugins` loads (init and
  register run, no hook is called, nothing is logged): missing plugins,
  Perl plugins, missing optional libraries, unknown arguments and bad
  values (the plugin's `arguments` spec), old names (a note);
* every config file in the config dirs is readable, and the files whose
  format is known are well-formed: `dns_servers`, `*_zones`,
  `relayclients`, `norelayclients`, `rcpthosts`, the regular expressions
  of `badmailfrom`, `badrcptto`, `badhelo`, ..., networks, numbers;
* the `tls` plugin's certificate and key: present, readable, matching,
  not expired (and `tls_before_auth` without them);
* the spool dir, the maildirs of `queue/maildir`, the qmail-queue and
  Exim programs, Postfix's cleanup socket, the directories of
  `logging/file`: present and writable (or executable); the servers of
  `queue/smtp-forward` and `queue/qmqp-forward` accept a connection (a
  warning: a backend may be down for a moment);
* a queue plugin is configured (a warning when none is).

A plugin may add its own checks: a method `check_config(self)` returning a
list of problem texts is called after it loaded.

Exit status: 0 when nothing is wrong (warnings and notes allowed), 1 for
problems, 2 when the check cannot run (DIR not a directory, unknown user,
not allowed to switch to it).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, TextIO

from .plugin import Plugin, PluginError
from .qp import Qpsmtpd

ADDRESS_REGEXP_CHARS = frozenset("/^$*+!%?\\")  # badmailfrom, badrcptto: a line with one is a regexp
HELO_REGEXP_CHARS = frozenset("{}[]()^$|*+?\\!")  # badhelo (the helo plugin's rule)


class Checker:
    """Collects problems while loading one configuration."""

    def __init__(self, install_dir: str, config_dir: str | None, out: TextIO) -> None:
        self.install_dir = install_dir
        self.config_dir = config_dir
        self.out = out
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.qp = Qpsmtpd(install_dir)
        self.qp.disable_stderr_log()
        self.qp.conf._on_error = self.problem
        self.loaded: list[tuple[str, str, Plugin]] = []  # (item, line, plugin)

    # -- output -------------------------------------------------------------
    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.out.write(f"ERROR  {text}\n")

    def warning(self, text: str) -> None:
        self.warnings.append(text)
        self.out.write(f"WARN   {text}\n")

    def note(self, text: str) -> None:
        self.out.write(f"note   {text}\n")

    def ok(self, text: str) -> None:
        self.out.write(f"ok     {text}\n")

    # -- directories ----------------------------------------------------------
    def banner(self) -> None:
        user = _user_name(os.geteuid())
        self.out.write(f"qpsmtpd.py --check-config as user {user} (uid {os.geteuid()}, gid {os.getegid()})\n")
        self.out.write("config dirs, in lookup order (per file, the first dir that has it wins):\n")
        for label, directory in self.qp.conf.search_dirs():
            state = "exists" if os.path.isdir(directory) else "missing"
            self.out.write(f"  {label:<16} {directory} ({state})\n")
        self.out.write("plugin dirs, in search order:\n")
        for directory in self.qp.plugin_loader.plugin_dirs:
            state = "exists" if os.path.isdir(directory) else "missing"
            self.out.write(f"  {directory} ({state})\n")

    def searched_dirs(self) -> list[str]:
        """The config dirs whose every file is checked (qmail's control dir only for known files)."""
        dirs = [directory for label, directory in self.qp.conf.search_dirs() if not label.endswith("control")]
        return [directory for directory in dirs if os.path.isdir(directory)]

    # -- plugins --------------------------------------------------------------
    def check_plugins(self, item: str) -> int:
        lines = self.qp.conf.from_file(item)
        loader = self.qp.plugin_loader
        loader.report_failures = False
        for line in lines:
            notices_before = len(loader.notices)
            try:
                plugin = self.qp.load_plugin(line)
            except PluginError as error:
                self.problem(f"{item}: {line}: {error}")
            except Exception as error:  # a plugin's init may raise anything
                self.problem(f"{item}: {line}: {type(error).__name__}: {error}")
            else:
                self.loaded.append((item, line, plugin))
                for notice in loader.notices[notices_before:]:
                    self.note(f"{item}: {line}: {notice}")
                warnings = list(getattr(plugin, "argument_warnings", []) or [])
                for warning in warnings:
                    self.problem(f"{item}: {line}: {warning}")
                if not warnings:
                    self.ok(f"{item}: {line}")
            self.qp.hooks.pop("logging", None)  # the check itself must not write to real logs
        return len(lines)

    def check_plugin_hooks(self) -> None:
        """Each loaded plugin's own `check_config()`, then the checks known for shipped plugins."""
        for item, line, plugin in self.loaded:
            own = getattr(plugin, "check_config", None)
            if callable(own):
                try:
                    for text in own() or []:
                        self.problem(f"{item}: {line}: {text}")
                except Exception as error:
                    self.problem(f"{item}: {line}: check_config failed: {type(error).__name__}: {error}")
            check = PLUGIN_CHECKS.get(_base_name(plugin))
            if check is not None:
                for text in check(self, plugin):
                    self.problem(f"{item}: {line}: {text}")

    def check_queue_present(self) -> None:
        if not self.qp.hooks.get("queue"):
            self.warning("no queue plugin in config/plugins: every message will be refused with "
                         "451 at the end of DATA (add queue/qmail-queue, queue/smtp-forward, ... see docs/queue.md)")

    # -- files ----------------------------------------------------------------
    def check_files(self) -> int:
        count = 0
        for directory in self.searched_dirs():
            for root, _dirs, files in os.walk(directory):
                for name in sorted(files):
                    count += 1
                    self.check_readable(os.path.join(root, name))
        return count

    def check_readable(self, path: str) -> bool:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            self.problem(f"{path}: cannot read: {error.strerror}")
            return False
        return True

    def check_formats(self) -> None:
        """Every config file of a known format, wherever the lookup finds it."""
        names = set(FORMATS)
        for directory in self.searched_dirs():
            names.update(name for name in os.listdir(directory) if name.endswith("_zones"))
        for name in sorted(names):
            path = self.qp.conf.path(name)
            if not os.path.isfile(path):
                continue
            if not os.access(path, os.R_OK):
                if not any(path.startswith(d + os.sep) for d in self.searched_dirs()):
                    self.problem(f"{path}: cannot read: Permission denied")
                continue
            validate = FORMATS.get(name) or _check_first_word_zone
            for number, line in _numbered_lines(path):
                error = validate(line)
                if error:
                    self.problem(f"{name} ({path} line {number}): {error}: {line!r}")

    def check_loglevel(self) -> None:
        lines = self.qp.conf.from_file("loglevel")
        if not lines:
            return
        if not lines[0].isdigit():
            self.problem(f"{self.qp.conf.path('loglevel')}: not a log level 0-7: {lines[0]!r}")
        elif int(lines[0]) > 7:
            self.note(f"{self.qp.conf.path('loglevel')}: {lines[0]} is above 7: everything is logged")

    def check_spool(self) -> None:
        configured = self.qp.conf.from_file("spool_dir")
        directory = configured[0] if configured else os.path.join(os.path.expanduser("~"), "tmp")
        problem = _writable_dir_problem(directory, may_create=True)
        if problem:
            self.problem(f"spool_dir {directory}: {problem}")

    # -- run ------------------------------------------------------------------
    def run(self) -> int:
        self.banner()
        self.check_loglevel()
        files = self.check_files()
        plugins = self.check_plugins("logging") + self.check_plugins("plugins")
        if not plugins:
            self.problem("no plugins configured (config/plugins is missing or empty)")
        self.check_formats()
        self.check_plugin_hooks()
        self.check_spool()
        if plugins:
            self.check_queue_present()
        summary = f"{plugins} plugin line(s), {files} config file(s): "
        if self.warnings:
            summary = summary + f"{len(self.warnings)} warning(s), "
        if self.problems:
            self.out.write(summary + f"{len(self.problems)} problem(s)\n")
            return 1
        self.out.write(summary + "no problems\n")
        return 0


# -- helpers --------------------------------------------------------------------

def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _base_name(plugin: Plugin) -> str:
    name = plugin.config_name.split()[0] if plugin.config_name else plugin.plugin_name
    base, colon, number = name.rpartition(":")
    return base if colon and number.isdigit() else name


def _numbered_lines(path: str) -> list[tuple[int, str]]:
    found = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle.read().decode("utf-8", "surrogateescape").splitlines(), 1):
            line = raw.strip()
            if line and not line.startswith("#") and not line.startswith("$include"):
                found.append((number, line))
    return found


def _writable_dir_problem(directory: str, may_create: bool = False) -> str | None:
    if os.path.isdir(directory):
        if not os.access(directory, os.W_OK | os.X_OK):
            return "not writable by this user"
        return None
    if os.path.exists(directory):
        return "not a directory"
    if may_create:
        parent = os.path.dirname(directory.rstrip("/")) or "."
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            return None
        return f"missing, and {parent} does not let this user create it"
    return "missing"


# -- line formats -----------------------------------------------------------------

def _is_hostname(text: str) -> bool:
    text = text.rstrip(".")
    if not text or len(text) > 253:
        return False
    for label in text.split("."):
        if not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label) or not label.isascii():
            return False
    return True


def _check_first_word_zone(line: str) -> str | None:
    """rhsbl_zones, whitelist_zones, ...: a zone, then optional words (the message)."""
    return None if _is_hostname(line.split()[0]) else "not a DNS zone"


def _check_zone_line(line: str) -> str | None:
    """dnsbl_zones: `zone` or `zone:message` (the Perl dnsbl splits at the first colon)."""
    zone = line.partition(":")[0].strip()
    if " " in zone or "\t" in zone:
        return "a zone, or zone:message, expected (a space is not allowed before the ':')"
    if not _is_hostname(zone):
        return "not a DNS zone"
    return None


def _check_uribl_line(line: str) -> str | None:
    words = line.split()
    if not _is_hostname(words[0]):
        return "not a DNS zone"
    for word in words[1:]:
        if word in ("deny", "denysoft", "add-header", "log"):
            continue
        for part in word.split(","):
            try:
                int(part, 0)
            except ValueError:
                return f"{word!r} is neither a mask nor an action (deny, denysoft, add-header, log)"
    return None


def _check_dns_server(line: str) -> str | None:
    from .dns import parse_server

    return None if parse_server(line) else "not an address, address:port or [v6address]:port"


def _check_network(line: str) -> str | None:
    import ipaddress

    text = line.split()[0]
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return "not an IP network (CIDR)"
    return None


def _check_client(line: str) -> str | None:
    """relayclients: an IP, a prefix of one (`192.168.`, `192.0`, `2001:0DB8`), or a CIDR block."""
    import ipaddress

    text = line.split()[0]
    if "/" in text:
        return _check_network(text)
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    if _is_ipv4_prefix(text) or _is_ipv6_prefix(text):
        return None
    return "not an IP address, prefix or CIDR block"


def _is_ipv4_prefix(text: str) -> bool:
    groups = text.split(".")
    if not 1 <= len(groups) <= 4 or (len(groups) == 4 and groups[-1]):
        return False
    if groups[-1] == "":
        groups = groups[:-1]
    return bool(groups) and all(g.isdigit() and len(g) <= 3 and int(g) < 256 for g in groups)


def _is_ipv6_prefix(text: str) -> bool:
    """Expanded IPv6 up to any nibble (`2001:0DB8`, `2001:db8:`), as the relay plugin matches them."""
    if ":" not in text:
        return False
    groups = text.split(":")
    if groups[-1] == "":
        groups = groups[:-1]
    hex_digits = "0123456789abcdefABCDEF"
    return 1 <= len(groups) <= 8 and all(0 < len(g) <= 4 and all(c in hex_digits for c in g) for g in groups)


def _check_rcpthost(line: str) -> str | None:
    if len(line.split()) != 1:
        return "one domain per line"
    text = line
    if text.startswith("[") and text.endswith("]"):
        return None if _check_client(text[1:-1]) is None else "not an address literal"
    return None if _is_hostname(text.lstrip(".")) else "not a domain (example.com or .example.com)"


def _regexp_list(chars: frozenset[str]) -> Callable[[str], str | None]:
    """badmailfrom-style files: an address, @host, or (a line with one of `chars`) a regexp."""
    def check(line: str) -> str | None:
        word = line.split()[0]
        return None if chars.isdisjoint(word) else _compile_problem(word)
    return check


def _check_rcpt_regexp(line: str) -> str | None:
    """rcpt_regexp: `/regexp/` or an address, then a code and a text."""
    word = line.split()[0]
    if len(word) > 1 and word.startswith("/") and word.endswith("/"):
        return _compile_problem(word[1:-1])
    return None


def _check_pattern(line: str) -> str | None:
    return _compile_problem(line.split()[0])


def _compile_problem(pattern: str) -> str | None:
    import re

    try:
        re.compile(pattern)
    except re.error as error:
        return f"not a valid regular expression ({error})"
    return None


def _check_number(line: str) -> str | None:
    return None if line.split()[0].isdigit() else "not a whole number"


def _check_seconds(line: str) -> str | None:
    try:
        return None if float(line.split()[0]) >= 0 else "not a number of seconds"
    except ValueError:
        return "not a number of seconds"


FORMATS: dict[str, Callable[[str], str | None]] = {
    "dns_servers": _check_dns_server,
    "relayclients": _check_client,
    "norelayclients": _check_client,
    "rcpthosts": _check_rcpthost,
    "invalid_resolvable_fromhost": _check_network,
    "badmailfrom": _regexp_list(ADDRESS_REGEXP_CHARS),
    "badrcptto": _regexp_list(ADDRESS_REGEXP_CHARS),
    "badhelo": _regexp_list(HELO_REGEXP_CHARS),
    "badmailfrom_patterns": _check_pattern,
    "badrcptto_patterns": _check_pattern,
    "rcpt_regexp": _check_rcpt_regexp,
    "databytes": _check_number,
    "size_threshold": _check_number,
    "max_line_length": _check_number,
    "max_header_size": _check_number,
    "max_recipients": _check_number,
    "timeout": _check_number,
    "timeoutsmtpd": _check_number,
    "dns_timeout": _check_seconds,
    "plugin_timeout": _check_seconds,
    "dnsbl_zones": _check_zone_line,
    "rhsbl_zones": _check_first_word_zone,
    "whitelist_zones": _check_first_word_zone,
    "uribl_zones": _check_uribl_line,
}


# -- checks for shipped plugins -------------------------------------------------------

def _check_tls(checker: Checker, plugin: Any) -> list[str]:
    args = list(plugin.args[:2])
    cert = args[0] if args else plugin.default_path("qpsmtpd-server.crt")
    key = args[1] if len(args) > 1 else plugin.default_path("qpsmtpd-server.key")
    problems = []
    for what, path in (("certificate", cert), ("key", key)):
        if not os.path.exists(path):
            problems.append(f"TLS {what} {path} is missing: STARTTLS would not be offered")
        elif not os.access(path, os.R_OK):
            problems.append(f"TLS {what} {path} is not readable by this user: STARTTLS would not be offered")
    if problems:
        if checker.qp.conf.from_file("tls_before_auth") not in ([], ["0"]):
            problems.append("tls_before_auth is set: without TLS, AUTH would never be offered")
        return problems
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        return [f"TLS certificate {cert} and key {key} do not go together or cannot be read: {error}"]
    except OSError as error:
        return [f"TLS certificate {cert}: {error}"]
    expiry = _certificate_expiry(cert)
    import time

    if expiry is not None and expiry < time.time():
        return [f"TLS certificate {cert} expired on {time.strftime('%Y-%m-%d', time.gmtime(expiry))}"]
    return []


def _certificate_expiry(path: str) -> float | None:
    import ssl

    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]  # the stdlib's PEM reader
        return ssl.cert_time_to_seconds(decoded["notAfter"])
    except Exception:
        return None


def _check_maildir(checker: Checker, plugin: Any) -> list[str]:
    directory = getattr(plugin, "maildir", None)
    if not directory:
        return []
    if getattr(plugin, "template", None):
        problem = _writable_dir_problem(directory, may_create=True)
    else:
        for sub in ("tmp", "new"):
            path = os.path.join(directory, sub)
            if os.path.isdir(path):
                problem = _writable_dir_problem(path)
                if problem:
                    return [f"maildir {path}: {problem}"]
        problem = _writable_dir_problem(directory, may_create=True)
    return [f"maildir {directory}: {problem}"] if problem else []


def _check_qmail_queue(checker: Checker, plugin: Any) -> list[str]:
    program = getattr(plugin, "queue_exec", None)
    if not program:
        return []
    if not os.path.isfile(program):
        return [f"queue program {program} is missing"]
    if not os.access(program, os.X_OK):
        return [f"queue program {program} is not executable by this user"]
    return []


def _check_postfix_queue(checker: Checker, plugin: Any) -> list[str]:
    target = getattr(plugin, "socket_env", None) or getattr(plugin, "socket", None)
    if not target or not target.startswith("/"):
        return []
    if not os.path.exists(target):
        return [f"Postfix cleanup socket {target} is missing (is Postfix running?)"]
    if not os.access(target, os.W_OK):
        return [f"Postfix cleanup socket {target} is not writable by this user"]
    return []


def _check_exim(checker: Checker, plugin: Any) -> list[str]:
    program = getattr(plugin, "exim_path", None)
    if not program:
        return []
    if not os.path.isfile(program):
        return [f"Exim program {program} is missing"]
    if not os.access(program, os.X_OK):
        return [f"Exim program {program} is not executable by this user"]
    return []


def _probe_servers(checker: Checker, plugin: Any, servers: list[tuple[str, int]], what: str) -> list[str]:
    """A warning (not a problem: a backend may be down for a moment) per server that does not answer."""
    import socket

    for host, port in servers:
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as error:
            checker.warning(f"{plugin.config_name}: {what} {host}:{port} does not accept connections now "
                            f"({error.strerror or error})")
    return []


def _check_smtp_forward(checker: Checker, plugin: Any) -> list[str]:
    server = getattr(plugin, "server", None)
    return _probe_servers(checker, plugin, [(server, getattr(plugin, "port", 25))], "SMTP server") if server else []


def _check_qmqp_forward(checker: Checker, plugin: Any) -> list[str]:
    return _probe_servers(checker, plugin, list(getattr(plugin, "servers", []) or []), "QMQP server")


def _check_logging_file(checker: Checker, plugin: Any) -> list[str]:
    if getattr(plugin, "is_pipe", False):
        return []
    template = getattr(plugin, "template", "") or ""
    directory = os.path.dirname(template) or "."
    if "%" in directory:
        return []  # a per-day or per-connection directory, made as the time comes
    problem = _writable_dir_problem(directory)
    if problem:
        return [f"log directory {directory}: {problem}"]
    if os.path.exists(template) and "%" not in template and not os.access(template, os.W_OK):
        return [f"log file {template} is not writable by this user"]
    return []


PLUGIN_CHECKS: dict[str, Callable[[Checker, Any], list[str]]] = {
    "tls": _check_tls,
    "queue/maildir": _check_maildir,
    "queue/qmail-queue": _check_qmail_queue,
    "queue/postfix-queue": _check_postfix_queue,
    "queue/exim-bsmtp": _check_exim,
    "queue/smtp-forward": _check_smtp_forward,
    "queue/qmqp-forward": _check_qmqp_forward,
    "logging/file": _check_logging_file,
}


# -- entry point --------------------------------------------------------------------

def switch_user(name: str) -> str | None:
    """Become user `name` (uid, gid, groups); an error text when that cannot be done."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return f"no such user: {name}"
    if os.geteuid() == entry.pw_uid:
        return None
    if os.geteuid() != 0:
        return f"only root can check as {name}; or run it as that user (setuidgid {name} ...)"
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = name
    return None


def check_config(install_dir: str, config_dir: str | None = None, out: TextIO | None = None,
                 user: str | None = None) -> int:
    """Run the check; the process exit status."""
    out = out or sys.stdout
    if config_dir is not None:
        if not os.path.isdir(config_dir):
            sys.stderr.write(f"qpsmtpd.py --check-config: {config_dir}: not a directory\n")
            return 2
        config_dir = os.path.abspath(config_dir)
        os.environ["QPSMTPD_CONFIG"] = config_dir
    if user is not None:
        error = switch_user(user)
        if error:
            sys.stderr.write(f"qpsmtpd.py --check-config: {error}\n")
            return 2
    return Checker(install_dir, config_dir, out).run()


def parse_arguments(argv: list[str]) -> tuple[str | None, str | None] | str:
    """`[DIR] [--user NAME]` in any order -> (dir, user), or an error text."""
    config_dir = user = None
    words = list(argv)
    while words:
        word = words.pop(0)
        if word == "--user" or word.startswith("--user="):
            if "=" in word:
                user = word.split("=", 1)[1]
            elif words:
                user = words.pop(0)
            else:
                return "--user needs a user name"
        elif word.startswith("-"):
            return f"unknown option {word}"
        elif config_dir is None:
            config_dir = word
        else:
            return f"more than one config dir given ({config_dir}, {word})"
    return config_dir, user
