"""`qpsmtpd.py --listen`: the config and plugins loaded once, a forked process per connection.

The parent binds the listening sockets (or takes them from systemd with
`Accept=no`), drops privileges, reads the config and loads every plugin
once.  For each connection it runs the `pre-connection` hook (with
qpsmtpd-forkserver's arguments: remote/local ip and port, `max_conn_ip`,
`child_addrs`), answers a refusal itself and closes, or forks.  The child
puts the socket on fds 0 and 1, runs `post-fork`, then exactly the
session a per-connection process runs (`connect` ... `post-connection`),
and exits.  The parent never runs a session hook and never touches a
message; a crashing child only ends its own connection.

Signals: HUP reloads the config and plugins for new connections (running
sessions keep theirs); TERM and INT stop accepting, let the running
sessions finish, then exit; children are reaped as they end.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import sys
import time

from .constants import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGERROR, LOGINFO, LOGNOTICE
from .logline import write_stderr
from .qp import PluginFault
from .reader import SmtpIO, Transport
from .replies import TABLE
from .session import Terminated, end_on_signal, reset_signals, serve_client
from .smtp import SMTP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = """usage: qpsmtpd.py --listen [ADDR:]PORT [--listen ...] [options]
       qpsmtpd.py --listen systemd [options]       (sockets passed by systemd, Accept=no)

  --listen [ADDR:]PORT   listen here (IPv4 `127.0.0.1:25`, IPv6 `[::1]:25`, `25` = all IPv4
                         and IPv6 addresses); several allowed
  --max-children N       at most N sessions at once (default 15); more wait in the backlog
  --max-from-ip N        at most N sessions from one client IP (default 5, 0 = no limit);
                         checked by hosts_allow's pre-connection hook, or by the server
                         itself when hosts_allow is not loaded
  --user NAME            bind, then run as this user (and its groups)
  --pid-file PATH        write the parent's pid here (refuses to start if that pid runs)
  --detach               go to the background (stdin/stdout/stderr on /dev/null:
                         log through a logging plugin such as logging/file or logging/syslog)
  --backlog N            listen backlog (default 128)
"""

DEFAULT_MAX_CHILDREN = 15
DEFAULT_MAX_FROM_IP = 5
REFUSAL_TIMEOUT = 5.0  # seconds to write a refusal to a client that does not read


class Options:
    """What the command line asked for."""

    def __init__(self) -> None:
        self.listen: list[str] = []
        self.max_children = DEFAULT_MAX_CHILDREN
        self.max_from_ip = DEFAULT_MAX_FROM_IP
        self.user: str | None = None
        self.pid_file: str | None = None
        self.detach = False
        self.backlog = 128


class UsageError(Exception):
    """A command-line problem: the message is for the admin."""


def parse_options(argv: list[str]) -> Options:
    options = Options()
    words = list(argv)
    numbers = {"--max-children": "max_children", "--max-from-ip": "max_from_ip", "--backlog": "backlog"}
    while words:
        word = words.pop(0)
        if word == "--detach":
            options.detach = True
            continue
        if word not in ("--listen", "--user", "--pid-file", *numbers):
            raise UsageError(f"unknown option {word}")
        if not words:
            raise UsageError(f"{word} needs a value")
        value = words.pop(0)
        if word == "--listen":
            options.listen.append(value)
        elif word == "--user":
            options.user = value
        elif word == "--pid-file":
            options.pid_file = value
        else:
            if not (value.isascii() and value.isdigit()):
                raise UsageError(f"{word} needs a whole number, not {value!r}")
            setattr(options, numbers[word], int(value))
    if not options.listen:
        raise UsageError("--listen is required")
    return options


def split_address(text: str) -> tuple[str | None, int]:
    """`[::1]:25` -> ('::1', 25); `127.0.0.1:25` -> ('127.0.0.1', 25); `25` -> (None, 25)."""
    host: str | None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise UsageError(f"--listen {text}: write IPv6 addresses in brackets, e.g. [::1]:25")
    else:
        host, port_text = None, text
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise UsageError(f"--listen {text}: not a port")
    return host or None, int(port_text)


def open_listeners(specs: list[str], backlog: int) -> list[socket.socket]:
    """Bound, listening sockets for every --listen (or systemd's, for `--listen systemd`)."""
    if specs == ["systemd"]:
        return systemd_listeners()
    listeners = []
    for spec in specs:
        host, port = split_address(spec)
        if host is None:  # all addresses: one IPv6 socket that also takes IPv4, if the host has IPv6
            listeners.append(_bind_any(port, backlog))
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listeners.append(_bind(family, host, port, backlog))
    return listeners


def _bind(family: int, host: str, port: int, backlog: int, dual: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(False)
    return sock


def _bind_any(port: int, backlog: int) -> socket.socket:
    try:
        return _bind(socket.AF_INET6, "::", port, backlog, dual=True)
    except OSError:
        return _bind(socket.AF_INET, "0.0.0.0", port, backlog)


def systemd_listeners() -> list[socket.socket]:
    """The sockets systemd passed (LISTEN_FDS, LISTEN_PID; a .socket unit with Accept=no)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise UsageError("--listen systemd: no sockets from systemd (LISTEN_PID is not this process)")
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    if count < 1:
        raise UsageError("--listen systemd: LISTEN_FDS is 0")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    listeners = []
    for fd in range(3, 3 + count):
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        listeners.append(sock)
    return listeners


def drop_privileges(user: str) -> None:
    import grp
    import pwd

    entry = pwd.getpwnam(user)
    groups = sorted({entry.pw_gid, *(group.gr_gid for group in grp.getgrall() if user in group.gr_mem)})
    os.setgroups(groups)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = user


def _peer_facts(conn: socket.socket) -> dict[str, str]:
    """What tcpserver would have told the session about the connection."""
    peer, local = conn.getpeername(), conn.getsockname()
    remote_ip, local_ip = _unmap(peer[0]), _unmap(local[0])
    return {"remote_ip": remote_ip, "remote_host": f"[{remote_ip}]", "remote_info": f"[{remote_ip}]",
            "remote_port": str(peer[1]), "local_ip": local_ip, "local_host": "", "local_port": str(local[1])}


def _unmap(ip: str) -> str:
    return ip[7:] if ip.lower().startswith("::ffff:") and "." in ip else ip


class ForkServer:
    """The parent: accepts, asks pre-connection, forks a session per connection."""

    def __init__(self, install_dir: str, options: Options, listeners: list[socket.socket]) -> None:
        self.install_dir = install_dir
        self.options = options
        self.listeners = listeners
        self.children: dict[int, str] = {}  # pid -> client IP
        self.smtp: SMTP | None = None
        self.stopping = False
        self.reload_wanted = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    # -- set-up -----------------------------------------------------------------
    def load(self) -> None:
        """Read the config and load the plugins (once, and again on HUP)."""
        smtp = SMTP(self.install_dir, SmtpIO(_NoClient()))  # type: ignore[arg-type]
        smtp.forkserver = True
        smtp.load_plugins()
        smtp.spool_dir()
        smtp.size_threshold()
        self.smtp = smtp
        # What the parent holds now lives as long as it does: out of the collector's sight, so that
        # no child's collection touches (and so copies) the pages the parent shares with it.
        gc.collect()
        gc.freeze()
        self._hosts_allow_checks = any(plugin.plugin_name == "hosts_allow" for plugin in smtp.plugins)

    def log(self, level: int, message: str) -> None:
        if self.smtp is not None:
            self.smtp.log(level, message)
        else:
            write_stderr(f"{os.getpid()} {message}")

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop; reaping is done there
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.reload_wanted = True

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    # -- the loop ---------------------------------------------------------------------
    def serve_forever(self) -> int:
        import selectors

        selector = selectors.DefaultSelector()
        for listener in self.listeners:
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        for listener in self.listeners:
            self.log(LOGNOTICE, f"Listening on {_describe(listener)}")
        while not self.stopping:
            self.reap()
            if self.reload_wanted:
                self.reload()
            full = len(self.children) >= self.options.max_children
            for key, _events in selector.select(timeout=1.0):
                if key.fileobj == self._wake_read:
                    self._drain_wake()
                elif not full and not self.stopping:
                    self.accept(key.fileobj)  # type: ignore[arg-type]
        for listener in self.listeners:
            listener.close()
        self.log(LOGNOTICE, f"stopping: no new connections; waiting for {len(self.children)} session(s)")
        while self.children:
            self.reap(block=True)
        self.log(LOGNOTICE, "stopped")
        return 0

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def reap(self, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            ip = self.children.pop(pid, "?")
            if os.WIFSIGNALED(status):
                self.log(LOGERROR, f"session {pid} for {ip} was killed by signal {os.WTERMSIG(status)}")
            else:
                self.log(LOGINFO, f"cleaning up after {pid}")
            if block:
                return

    def reload(self) -> None:
        self.reload_wanted = False
        try:
            self.load()
        except Exception as error:  # a broken config keeps the running one
            self.log(LOGERROR, f"HUP: reload failed, keeping the old configuration: {type(error).__name__}: {error}")
            return
        self.log(LOGNOTICE, "HUP: config and plugins reloaded for new connections")

    # -- one connection -------------------------------------------------------------
    def accept(self, listener: socket.socket) -> None:
        try:
            conn, _address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.log(LOGERROR, f"accept: {error}; pausing")
                time.sleep(0.1)
                return
            raise
        try:
            conn.setblocking(True)
            facts = _peer_facts(conn)
        except OSError:
            conn.close()
            return
        if not self.admit(conn, facts):
            conn.close()
            return
        self.fork_session(conn, facts)

    def admit(self, conn: socket.socket, facts: dict[str, str]) -> bool:
        """The pre-connection hook (and --max-from-ip); a refusal is answered here."""
        assert self.smtp is not None
        ip = facts["remote_ip"]
        try:
            result = self.smtp.run_hooks(
                "pre-connection", remote_ip=ip, remote_port=facts["remote_port"], local_ip=facts["local_ip"],
                local_port=facts["local_port"], max_conn_ip=self.options.max_from_ip,
                child_addrs=list(self.children.values()))
            code, messages = result.code, [str(line) for line in result.messages]
        except PluginFault as fault:
            code, messages = DENYSOFT, ["Internal error - try again later"]
            self.log(LOGERROR, f"pre-connection: {fault}")
        if code == DECLINED and not self._hosts_allow_checks and self.options.max_from_ip:
            already = sum(1 for child_ip in self.children.values() if child_ip == ip)
            if already + 1 > self.options.max_from_ip:
                code, messages = DENYSOFT, [f"too many connections from {ip}, try again later"]
        if code not in (DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT):
            return True
        rule = TABLE["pre-connection"][code]
        text = messages[0] if messages and messages[0] else rule.text
        verdict = "reject" if rule.code >= 500 else "defer"
        self.smtp.varlog(LOGNOTICE, "pre-connection", result.plugin if code != DENYSOFT or messages else None,
                         f"{verdict} {ip}: {rule.code} {text}")
        if rule.esc and self.smtp.enhanced_status_codes() and not text[:1].isdigit():
            text = f"{rule.esc} {text}"
        _send_and_close(conn, f"{rule.code} {text}\r\n".encode("utf-8", "replace"))
        return False

    def fork_session(self, conn: socket.socket, facts: dict[str, str]) -> None:
        try:
            pid = os.fork()
        except OSError as error:
            self.log(LOGERROR, f"fork: {error}")
            _send_and_close(conn, b"421 Service temporarily unavailable; try again later\r\n")
            return
        if pid:
            self.children[pid] = facts["remote_ip"]
            conn.close()
            return
        status = 1
        try:
            status = self.run_child(conn, facts)
        finally:
            os._exit(status)

    def run_child(self, conn: socket.socket, facts: dict[str, str]) -> int:
        """In the child: exactly today's per-connection session, on the accepted socket."""
        started = time.monotonic()
        gc.disable()  # a session is short; its process exits without collecting
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        reset_signals()  # as a per-connection process: TERM/HUP/INT end the session cleanly
        for listener in self.listeners:
            listener.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        os.dup2(conn.fileno(), 0)
        os.dup2(conn.fileno(), 1)
        conn.close()
        for name, value in (("TCPREMOTEIP", facts["remote_ip"]), ("TCPREMOTEPORT", facts["remote_port"]),
                            ("TCPLOCALIP", facts["local_ip"]), ("TCPLOCALPORT", facts["local_port"])):
            os.environ[name] = value
        smtp = self.smtp
        assert smtp is not None
        smtp.io = SmtpIO(Transport(0, 1))
        smtp.connection.start(**facts)
        smtp.run_hooks_no_respond("post-fork")
        try:
            return serve_client(smtp, started)
        except Terminated as terminated:
            return end_on_signal(smtp, terminated.signum)


class _NoClient:
    """The parent's session object has no client: anything it would read or write is a bug."""

    fd_in = -1

    def wait_readable(self, timeout: float | None) -> bool:
        raise RuntimeError("the forkserver parent has no client")

    def read(self, size: int = 0) -> bytes:
        raise RuntimeError("the forkserver parent has no client")

    def write(self, data: bytes) -> None:
        raise RuntimeError("the forkserver parent has no client")


def _send_and_close(conn: socket.socket, data: bytes) -> None:
    try:
        conn.settimeout(REFUSAL_TIMEOUT)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


def _describe(listener: socket.socket) -> str:
    address = listener.getsockname()
    host = address[0]
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"


def write_pid_file(path: str) -> None:
    try:
        with open(path) as handle:
            running = handle.read().strip()
        if running.isdigit():
            try:
                os.kill(int(running), 0)
            except ProcessLookupError:
                pass
            except PermissionError:
                raise UsageError(f"{path}: a qpsmtpd with pid {running} is running") from None
            else:
                raise UsageError(f"{path}: a qpsmtpd with pid {running} is running")
    except FileNotFoundError:
        pass
    with open(path, "w") as handle:
        handle.write(f"{os.getpid()}\n")


def detach() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    # as qpsmtpd-forkserver: stdin, stdout and stderr go to /dev/null (log through a logging plugin)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(install_dir: str, argv: list[str]) -> int:
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(USAGE)
        return 0
    try:
        options = parse_options(argv)
        listeners = open_listeners(options.listen, options.backlog)
    except UsageError as error:
        sys.stderr.write(f"qpsmtpd.py: {error}\n{USAGE}")
        return 2
    except OSError as error:
        sys.stderr.write(f"qpsmtpd.py: cannot listen: {error}\n")
        return 1
    try:
        if options.user:
            drop_privileges(options.user)
        if options.detach:
            detach()
        if options.pid_file:
            write_pid_file(options.pid_file)
    except (UsageError, OSError, KeyError) as error:
        sys.stderr.write(f"qpsmtpd.py: {error}\n")
        return 1
    server = ForkServer(install_dir, options, listeners)
    try:
        server.load()
    except Exception as error:  # e.g. a plugin that cannot load: say so and do not serve
        sys.stderr.write(f"qpsmtpd.py: cannot load the configuration: {type(error).__name__}: {error}\n")
        return 1
    server.install_signals()
    try:
        return server.serve_forever()
    finally:
        if options.pid_file:
            try:
                os.unlink(options.pid_file)
            except OSError:
                pass
