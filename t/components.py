"""Real daemons on 127.0.0.1 for integration tests.

Each ``with`` helper below starts one real daemon in the foreground, in a
private directory (``tempfile.mkdtemp()``, mode 0755, so daemons that drop to
``nobody`` or ``postfix`` can enter it), on a port picked at run time, waits
until the daemon really answers its protocol, yields an object describing it,
and stops it cleanly on exit. Tests can therefore run in parallel.

Everything a helper runs is in the repository (``t/bin/``). Only the
standard library is used, so the module can be imported without pytest.

Failure policy: a missing binary, a daemon that exits early or does not answer
in time raises :class:`ComponentError` with the tail of the daemon's logs. No
helper ever skips silently.

Set ``COMPONENTS_KEEP=1`` to keep the private directories after the tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
T_BIN = REPO_ROOT / "t" / "bin"
POSTFIX_PRIVATE_SCRIPT = T_BIN / "postfix-private.sh"
QMAIL_QUEUE_DOUBLE = T_BIN / "qmail-queue-double"

#: Interpreter for programs run as ``nobody`` (pyenv interpreters live in
#: root's 0700 home and cannot be executed by other users).
SYSTEM_PYTHON = "/usr/bin/python3"
#: Interpreter of the running tests, for programs run as root.
PYTHON = sys.executable

LOCALHOST = "127.0.0.1"
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/lib/postfix/sbin")
DEFAULT_TIMEOUT = 10.0
IS_ROOT = os.geteuid() == 0

# Built from pieces so that virus scanners do not flag this source file.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CLAMAV_TESTFILE = Path("/usr/share/clamav-testfiles/clam.exe")
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"


class ComponentError(RuntimeError):
    """A real component could not be started or used."""


# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------


def private_dir(prefix: str = "qpsmtpd-comp-") -> Path:
    """Create a fresh directory with mode 0755 and return its path."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def free_port(host: str = LOCALHOST, udp: bool = False) -> int:
    """Return a port that is currently free for TCP (and for UDP if ``udp``).

    The kernel picks the port (bind to port 0). Another process may take it
    before the daemon binds it; the start helpers retry in that case.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            if not udp or _udp_port_free(host, port):
                return port
    raise ComponentError("could not find a free port")


def _udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_binary(name: str) -> str:
    """Return the absolute path of a program, searching PATH and sbin dirs."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    found = shutil.which(name, path=path)
    if not found:
        raise ComponentError(
            f"required program {name!r} is not installed (see .ci/run for the package list)"
        )
    return found


def require_root(what: str) -> None:
    """Raise ComponentError unless running as root."""
    if not IS_ROOT:
        raise ComponentError(f"{what} needs root (the tests are meant to run as root)")


def tail(path: Path, lines: int = 30) -> str:
    """Return the last lines of a file, or a note that it is missing."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    return "\n".join(text.splitlines()[-lines:])


def chown_nobody(*paths: Path) -> None:
    """chown paths (recursively) to nobody:nogroup when running as root."""
    if not IS_ROOT:
        return
    nobody = pwd.getpwnam("nobody")
    for top in paths:
        for path in [top, *top.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)


@dataclasses.dataclass
class ProcessInfo:
    pid: int
    ppid: int
    pgrp: int


def processes() -> list[ProcessInfo]:
    """Live (non-zombie) processes, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if state not in ("Z", "X"):
            found.append(ProcessInfo(int(entry.name), int(ppid), int(pgrp)))
    return found


def _as_nobody() -> dict:
    """Popen keyword arguments that run the child as nobody when we are root."""
    if not IS_ROOT:
        return {}
    return {"user": "nobody", "group": "nogroup", "extra_groups": []}


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll ``check`` until it returns true; raise ComponentError on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ComponentError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_for_files(directory: Path, pattern: str, count: int, timeout: float = 5.0) -> list[Path]:
    """Wait until ``directory`` has at least ``count`` files matching ``pattern``."""
    found: list[Path] = []

    def enough() -> bool:
        nonlocal found
        found = sorted(directory.glob(pattern))
        return len(found) >= count

    wait_for(enough, timeout, f"{count} file(s) {pattern} in {directory}", interval=0.02)
    return found


def tcp_exchange(port: int, request: bytes, host: str = LOCALHOST, timeout: float = 2.0,
                 until: bytes | None = None, shutdown: bool = False) -> bytes:
    """Connect, send ``request``, and read the reply.

    Reading stops at end of file, or as soon as the reply contains ``until``.
    With ``shutdown`` the write side is closed after sending.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if request:
            sock.sendall(request)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        return recv_until(sock, until)


def recv_until(sock: socket.socket, until: bytes | None) -> bytes:
    """Read from ``sock`` until end of file or until the data contains ``until``."""
    reply = b""
    while until is None or until not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _answers(probe: Callable[[], bool]) -> Callable[[], bool]:
    """Wrap a protocol probe so that connection errors count as "not yet"."""

    def check() -> bool:
        try:
            return probe()
        except OSError:
            return False

    return check


# --------------------------------------------------------------------------
# Daemon objects and their life cycle
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Daemon:
    """A running daemon started by this module.

    ``base_dir`` is its private directory, ``log_path`` its main log, and
    ``log_paths`` every log whose tail is shown when something goes wrong.
    """

    name: str
    proc: subprocess.Popen
    base_dir: Path
    log_path: Path
    host: str = LOCALHOST
    port: int = 0
    log_paths: list[Path] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.log_path not in self.log_paths:
            self.log_paths.insert(0, self.log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs(self, lines: int = 30) -> str:
        """Tails of all logs, for error messages."""
        return "\n".join(f"--- tail of {p} ---\n{tail(p, lines)}" for p in self.log_paths)

    def wait_ready(self, check: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> None:
        """Poll ``check`` until true; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ComponentError(
                    f"{self.name} exited with status {self.proc.returncode} before it "
                    f"answered\n{self.logs()}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise ComponentError(f"{self.name} did not answer within {timeout:g}s\n{self.logs()}")
            time.sleep(0.01)

    def signal_stop(self) -> None:
        """Ask the daemon to stop (SIGTERM to its PID)."""
        _kill(self.proc.pid, signal.SIGTERM)

    def force_stop(self) -> None:
        _kill(self.proc.pid, signal.SIGKILL)

    def stragglers(self) -> list[int]:
        """Other processes that must be gone before the daemon counts as stopped."""
        return []

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the daemon (and its stragglers) and return its exit status."""
        if self.proc.poll() is None:
            self.signal_stop()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.force_stop()
                self.proc.wait(timeout)
        try:
            wait_for(lambda: not self.stragglers(), timeout, f"the processes of {self.name} to exit")
        except ComponentError:
            self.force_stop()
        return self.proc.returncode


def _kill(pid: int, sig: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def _spawn(argv: Sequence[str], log_path: Path, *, stdout_path: Path | None = None,
           **popen_kwargs) -> subprocess.Popen:
    """Start a daemon in the foreground with stdin from /dev/null."""
    with open(log_path, "ab") as log:
        out = open(stdout_path, "wb") if stdout_path else log
        try:
            return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=log, **popen_kwargs)
        finally:
            if stdout_path:
                out.close()


@contextlib.contextmanager
def _running(start: Callable[[], Daemon], check_for: Callable[[Daemon], Callable[[], bool]],
             timeout: float = DEFAULT_TIMEOUT, attempts: int = 3) -> Iterator[Daemon]:
    """Start, wait until ready (retrying on port clashes), yield, stop."""
    daemon = _start_ready(start, check_for, timeout, attempts)
    try:
        yield daemon
    finally:
        daemon.stop()
        if os.environ.get("COMPONENTS_KEEP") != "1":
            shutil.rmtree(daemon.base_dir, ignore_errors=True)


def _start_ready(start: Callable[[], Daemon], check_for: Callable[[Daemon], Callable[[], bool]],
                 timeout: float, attempts: int) -> Daemon:
    """Start the daemon; on a port clash start it again (with a new port).

    If it does not come up, it is stopped and its private directory is kept
    for inspection (the error message names its logs).
    """
    for attempt in range(1, attempts + 1):
        daemon = start()
        try:
            daemon.wait_ready(check_for(daemon), timeout)
            return daemon
        except BaseException as exc:
            daemon.stop()
            port_clash = isinstance(exc, ComponentError) and "in use" in str(exc)
            if attempt == attempts or not port_clash:
                raise
            shutil.rmtree(daemon.base_dir, ignore_errors=True)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# 1. tcpserver (ucspi-tcp)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class TcpServer(Daemon):
    """tcpserver; it runs in its own process group with its children.

    Stopping signals the whole group, and waits until no member is left.
    """

    def signal_stop(self) -> None:
        _kill(self.proc.pid, signal.SIGTERM, group=True)

    def force_stop(self) -> None:
        _kill(self.proc.pid, signal.SIGKILL, group=True)

    def stragglers(self) -> list[int]:
        return [p.pid for p in processes() if p.pgrp == self.proc.pid]


def compile_tcprules(rules: str, directory: Path) -> Path:
    """Compile tcprules text into ``directory/tcp.cdb`` and return its path."""
    cdb = directory / "tcp.cdb"
    result = subprocess.run([find_binary("tcprules"), str(cdb), str(directory / "tcp.tmp")],
                            input=rules.encode(), capture_output=True)
    if result.returncode != 0:
        raise ComponentError(f"tcprules failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace')}")
    return cdb


def _check_absolute(program: str) -> None:
    if not os.path.isabs(program):
        raise ValueError(f"program must be an absolute path (e.g. sys.executable), got {program!r}")


@contextlib.contextmanager
def tcpserver(argv: Sequence[str], env: Mapping[str, str] | None = None, rules: str | None = None,
              concurrency: int = 10, host: str = LOCALHOST, cwd: str | os.PathLike | None = None,
              options: Sequence[str] = ()) -> Iterator[TcpServer]:
    """Run ``tcpserver -v -R -H -l0 -c N [-x rules.cdb] [options] HOST 0 argv...``.

    ``argv[0]`` must be absolute (use ``components.PYTHON`` / ``sys.executable``
    for Python programs). ``env`` is added to a copy of ``os.environ``.
    ``rules`` is tcprules text, e.g. ``'127.0.0.1:allow,RELAYCLIENT=""\\n:allow\\n'``.
    ``options`` are more tcpserver flags, e.g. ``["-u", "65534", "-g", "65534"]``.
    The kernel picks the port (``-1``), so there is no race. Yields a
    :class:`TcpServer` with ``.host``, ``.port`` and ``.log_path`` (tcpserver's
    ``-v`` log, which also receives the children's stderr).
    """
    _check_absolute(argv[0])
    binary = find_binary("tcpserver")

    def start() -> TcpServer:
        base = private_dir("tcpserver-")
        opts = ["-v", "-R", "-H", "-l0", "-1", "-c", str(concurrency)]
        if rules is not None:
            opts += ["-x", str(compile_tcprules(rules, base))]
        opts += options
        full_env = {**os.environ, **(env or {})}
        proc = _spawn([binary, *opts, host, "0", *argv], base / "tcpserver.log",
                      stdout_path=base / "port", env=full_env, cwd=cwd, start_new_session=True)
        return TcpServer("tcpserver", proc, base, base / "tcpserver.log", host=host)

    def port_printed(daemon: Daemon) -> Callable[[], bool]:
        def check() -> bool:
            text = (daemon.base_dir / "port").read_text()
            if not text.endswith("\n"):
                return False
            daemon.port = int(text)  # tcpserver prints the port after listen()
            return True
        return check

    with _running(start, port_printed, attempts=1) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 2. xinetd
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Xinetd(Daemon):
    """xinetd; its servers are session leaders and must be stopped first.

    ``service_log`` gets xinetd's per-connection lines (PID, HOST, EXIT, DURATION).
    """

    service_log: Path = Path()
    servers: list[int] = dataclasses.field(default_factory=list)

    def signal_stop(self) -> None:
        # Each server is a session leader: signal its group, then xinetd.
        self.servers = [p.pid for p in processes() if p.ppid == self.proc.pid]
        for pid in self.servers:
            _kill(pid, signal.SIGTERM, group=True)
        _kill(self.proc.pid, signal.SIGTERM)

    def force_stop(self) -> None:
        for pid in self.servers:
            _kill(pid, signal.SIGKILL, group=True)
        _kill(self.proc.pid, signal.SIGKILL)

    def stragglers(self) -> list[int]:
        live = {p.pid for p in processes()}
        return [pid for pid in self.servers if pid in live]


def _check_others_can_reach(path: str) -> None:
    """Raise ValueError if a directory above ``path`` is not searchable by others."""
    for directory in Path(path).parents:
        if not os.stat(directory).st_mode & 0o001:
            raise ValueError(f"{path}: directory {directory} is not searchable by other users; "
                             f"use components.private_dir() for files and components.SYSTEM_PYTHON "
                             f"({SYSTEM_PYTHON}) as the interpreter of servers run as nobody")


def _check_others_can_run(program: str) -> None:
    """Raise ValueError if a non-root user cannot reach and execute ``program``."""
    _check_others_can_reach(program)
    if not os.stat(program).st_mode & 0o001:
        raise ValueError(f"{program} is not executable by other users")


def _xinetd_words(values: Sequence[str], what: str) -> str:
    for value in values:
        if not value or re.search(r"\s", value):
            raise ValueError(f"xinetd {what} must be non-empty and contain no whitespace: {value!r}")
    return " ".join(values)


def _xinetd_conf(base: Path, port: int, server: str, server_args: Sequence[str],
                 env: Mapping[str, str], user: str, passenv: Sequence[str] | None,
                 host: str) -> str:
    lines = [
        "defaults", "{",
        "    instances      = 50",
        f"    log_type       = FILE {base / 'xinetd-service.log'}",
        "    log_on_success = PID HOST EXIT DURATION",
        "    log_on_failure = HOST",
        "}",
        "service qpsmtpd-test", "{",
        "    type        = UNLISTED",
        f"    port        = {port}",
        f"    bind        = {host}",
        "    socket_type = stream",
        "    protocol    = tcp",
        "    wait        = no",
        f"    user        = {user}",
        f"    server      = {server}",
        "    cps         = 1000 1",
    ]
    if server_args:
        lines.append(f"    server_args = {_xinetd_words(server_args, 'server_args')}")
    if env:
        lines.append(f"    env         = {_xinetd_words([f'{k}={v}' for k, v in env.items()], 'env')}")
    if passenv is not None:
        lines.append(f"    passenv     = {_xinetd_words(passenv, 'passenv')}".rstrip())
    lines.append("}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def xinetd(server: str, server_args: str | Sequence[str] = (), env: Mapping[str, str] | None = None,
           user: str = "root", passenv: Sequence[str] | None = None,
           host: str = LOCALHOST) -> Iterator[Xinetd]:
    """Run ``xinetd -dontfork`` with a private config serving one TCP service.

    ``server`` must be absolute; with ``user="nobody"`` every directory above
    it must be searchable by others (use ``SYSTEM_PYTHON``, not a pyenv one).
    ``server_args`` is a string (split on whitespace) or a list of words
    without whitespace; ``env`` values must not contain whitespace (xinetd
    splits on it). Without ``passenv`` the server inherits xinetd's whole
    environment; ``passenv=[]`` passes nothing but ``env`` and REMOTE_HOST.

    Under xinetd, fds 0, 1 **and 2** of the server are the socket, and no
    TCP* variables are set (only REMOTE_HOST).
    Yields an :class:`Xinetd` with ``.port``, ``.log_path`` (xinetd's
    ``-filelog``) and ``.service_log`` (per-connection log lines).
    """
    _check_absolute(server)
    args = server_args.split() if isinstance(server_args, str) else list(server_args)
    if user != "root":
        _check_others_can_run(server)
        for arg in args:
            if os.path.isabs(arg) and os.path.exists(arg):
                _check_others_can_reach(arg)
    binary = find_binary("xinetd")

    def start() -> Xinetd:
        base = private_dir("xinetd-")
        conf = base / "xinetd.conf"
        port = free_port(host)
        conf.write_text(_xinetd_conf(base, port, server, args, env or {}, user, passenv, host))
        log = base / "xinetd.log"
        log.touch()
        proc = _spawn([binary, "-dontfork", "-f", str(conf), "-filelog", str(log)], base / "xinetd.out")
        return Xinetd("xinetd", proc, base, log, host=host, port=port,
                      log_paths=[log, base / "xinetd.out", conf],
                      service_log=base / "xinetd-service.log")

    def started(daemon: Daemon) -> Callable[[], bool]:
        def check() -> bool:
            text = daemon.log_path.read_text(errors="replace")
            if "Started working: 0 available services" in text:
                raise ComponentError(f"xinetd could not enable the service "
                                     f"(port {daemon.port} in use?)\n{daemon.logs()}")
            return "Started working: 1 available service" in text
        return check

    with _running(start, started) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 3. Postfix smtp-sink
# --------------------------------------------------------------------------


@dataclasses.dataclass
class SinkMessage:
    """One mail transaction dumped by smtp-sink ``-d``.

    ``data`` is the message as smtp-sink stored it: CRLF turned into LF,
    dot-stuffing removed, without smtp-sink's own Received header
    (``received``) and without the empty line smtp-sink appends.
    """

    path: Path
    client_addr: str
    proto: str
    helo: str
    mail_args: str
    rcpt_args: list[str]
    received: bytes
    data: bytes

    @property
    def sender(self) -> str:
        return _angle_addr(self.mail_args)

    @property
    def recipients(self) -> list[str]:
        return [_angle_addr(a) for a in self.rcpt_args]


def _angle_addr(args: str) -> str:
    """The address in ``<...>`` at the start of MAIL/RCPT arguments."""
    match = re.match(r"\s*<([^>]*)>", args)
    if match:
        return match.group(1)
    words = args.split()
    return words[0] if words else ""


_SINK_FIELDS = {b"X-Client-Addr", b"X-Client-Proto", b"X-Helo-Args", b"X-Mail-Args", b"X-Rcpt-Args"}


def parse_sink_dump(raw: bytes, path: Path = Path("-")) -> SinkMessage:
    """Parse one smtp-sink dump file."""
    lines = raw.splitlines(keepends=True)
    fields: dict[bytes, list[str]] = {}
    i = 0
    while i < len(lines) and lines[i].split(b":", 1)[0] in _SINK_FIELDS:
        name, value = lines[i].rstrip(b"\n").split(b":", 1)
        fields.setdefault(name, []).append(value.strip().decode("utf-8", "replace"))
        i += 1
    start = i
    if i < len(lines) and lines[i].startswith(b"Received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    data = b"".join(lines[i:])
    if data.endswith(b"\n"):
        data = data[:-1]
    def first(name: bytes) -> str:
        return fields.get(name, [""])[0]

    return SinkMessage(path=path, client_addr=first(b"X-Client-Addr"), proto=first(b"X-Client-Proto"),
                       helo=first(b"X-Helo-Args"), mail_args=first(b"X-Mail-Args"),
                       rcpt_args=fields.get(b"X-Rcpt-Args", []), received=b"".join(lines[start:i]),
                       data=data)


def read_sink_dumps(dump_dir: Path) -> list[SinkMessage]:
    """All messages dumped into ``dump_dir``, oldest first.

    smtp-sink has finished a file when it answers the final ``.`` of DATA;
    a transaction still in progress shows up as a partial message.
    """
    files = [p for p in Path(dump_dir).iterdir() if p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [parse_sink_dump(p.read_bytes(), p) for p in files]


@dataclasses.dataclass
class SmtpSink(Daemon):
    """smtp-sink; ``dump_dir`` holds one file per mail transaction."""

    dump_dir: Path = Path()

    def messages(self) -> list[SinkMessage]:
        return read_sink_dumps(self.dump_dir)


def smtp_banner_probe(port: int, host: str = LOCALHOST) -> bool:
    """True if an SMTP server on the port sends a 220 banner (then QUIT)."""
    with socket.create_connection((host, port), timeout=2) as sock:
        banner = recv_until(sock, b"\n")
        sock.sendall(b"QUIT\r\n")
        recv_until(sock, b"\n")
    return banner.startswith(b"220")


@contextlib.contextmanager
def smtp_sink(args: Sequence[str] = (), backlog: int = 128) -> Iterator[SmtpSink]:
    """Run Postfix ``smtp-sink -d DUMPDIR/%Y%m%d%H%M%S. [args] 127.0.0.1:PORT backlog``.

    ``args`` are extra smtp-sink options (e.g. ``["-f", "data"]`` to
    hard-reject DATA). As root, ``-u nobody`` is added and the dump directory
    belongs to nobody. Yields an :class:`SmtpSink` with ``.port`` and
    ``.dump_dir``; ``.messages()`` parses the dumps (see :class:`SinkMessage`).
    smtp-sink has no STARTTLS and answers AUTH with 250.
    """
    binary = find_binary("smtp-sink")

    def start() -> SmtpSink:
        base = private_dir("smtp-sink-")
        dump_dir = base / "sink"
        dump_dir.mkdir()
        chown_nobody(dump_dir)
        port = free_port()
        user = ["-u", "nobody"] if IS_ROOT else []
        argv = [binary, *user, "-d", f"{dump_dir}/%Y%m%d%H%M%S.", *args, f"{LOCALHOST}:{port}", str(backlog)]
        proc = _spawn(argv, base / "smtp-sink.log")
        return SmtpSink("smtp-sink", proc, base, base / "smtp-sink.log", port=port, dump_dir=dump_dir)

    with _running(start, lambda d: _answers(lambda: smtp_banner_probe(d.port))) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 4. Postfix: qmqpd / smtpd / cleanup in a private instance (root only)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class QueuedMessage:
    """A message read back from a Postfix queue with postcat.

    ``content`` is headers + body exactly as queued (``postcat -bh``), with LF
    line endings, including the Received header that qmqpd/smtpd prepended
    (see :func:`strip_first_header`). A last line without LF gets one; lines
    longer than line_length_limit (2048), which Postfix stores in pieces,
    come back joined. cleanup(8) adds a missing From:, Date: or Message-Id:
    header, so send complete headers when comparing bytes.
    """

    queue_id: str
    sender: str
    recipients: list[str]
    content: bytes


def _netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def qmqp_send(port: int, message: bytes, sender: str, recipients: Sequence[str],
              host: str = LOCALHOST, timeout: float = 5.0) -> bytes:
    """Send one message by QMQP and return the decoded response.

    The response starts with ``K`` (queued), ``Z`` (temporary failure) or
    ``D`` (permanent failure), e.g. ``b"KOk: queued as 22D89510547"``.
    QMQP carries LF line endings: convert CRLF before calling this.
    """
    payload = _netstring(message) + _netstring(sender.encode())
    payload += b"".join(_netstring(r.encode()) for r in recipients)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(_netstring(payload))
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # qmqpd may answer and close before reading everything
        reply = recv_until(sock, None)
    match = re.fullmatch(rb"(\d+):(.*),", reply, re.S)
    if not match or int(match.group(1)) != len(match.group(2)):
        raise ComponentError(f"bad QMQP response {reply!r}")
    return match.group(2)


def queue_id_from_response(response: bytes) -> str:
    """The queue id in a Postfix ``queued as ID`` reply (QMQP or SMTP)."""
    match = re.search(rb"queued as ([0-9A-Za-z]+)", response)
    if not match:
        raise ComponentError(f"no queue id in {response!r}")
    return match.group(1).decode()


def _postfix_tool(tool: str, conf_dir: Path, *args: str) -> bytes:
    result = subprocess.run([find_binary(tool), "-c", str(conf_dir), *args], capture_output=True)
    if result.returncode != 0:
        raise ComponentError(f"{tool} -c {conf_dir} {' '.join(args)} failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace')}")
    return result.stdout


def postfix_queue(conf_dir: Path) -> list[dict]:
    """``postqueue -c CONF -j``: one dict per queued message.

    Keys include ``queue_name`` (hold, incoming, active, deferred),
    ``queue_id``, ``sender`` (``MAILER-DAEMON`` for the null sender) and
    ``recipients`` (list of ``{"address": ...}``). The order is arbitrary.
    """
    out = _postfix_tool("postqueue", conf_dir, "-j")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def postcat_message(conf_dir: Path, queue_id: str) -> QueuedMessage:
    """Read one queued message back with postcat.

    Envelope: ``postcat -c CONF -e -q ID`` (lines ``sender: ...`` -- empty for
    the null sender -- and ``recipient: ...``). Content:
    ``postcat -c CONF -bh -q ID`` (header and body, no record labels).
    """
    envelope = _postfix_tool("postcat", conf_dir, "-e", "-q", queue_id).decode("utf-8", "replace")
    sender = ""
    recipients = []
    for line in envelope.splitlines():
        if line.startswith("sender: "):
            sender = line[len("sender: "):]
        elif line.startswith("recipient: "):
            recipients.append(line[len("recipient: "):])
    content = _postfix_tool("postcat", conf_dir, "-bh", "-q", queue_id)
    return QueuedMessage(queue_id, sender, recipients, content)


def strip_first_header(content: bytes, name: bytes = b"Received") -> bytes:
    """Remove the first header line (with its continuation lines) if it is ``name``.

    Use it to compare a queued message with what was sent, after the
    Received header that qmqpd or smtpd put in front of it.
    """
    lines = content.splitlines(keepends=True)
    if not lines or not lines[0].lower().startswith(name.lower() + b":"):
        return content
    i = 1
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    return b"".join(lines[i:])


@dataclasses.dataclass
class Postfix(Daemon):
    """A private Postfix instance (master and its children), made in ``pf_dir``.

    ``conf_dir`` is the ``-c`` directory for postqueue/postcat/postsuper,
    ``cleanup_socket`` the cleanup(8) unix socket, ``out_dir`` the delivery
    directory in ``file`` mode, ``log_path`` the maillog. ``qmqp_port`` and
    ``smtpd_port`` are None when that listener is not configured.
    """

    pf_dir: Path = Path()
    qmqp_port: int | None = None
    smtpd_port: int | None = None
    mode: str = "hold"

    @property
    def conf_dir(self) -> Path:
        return self.pf_dir / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.pf_dir / "spool"

    @property
    def cleanup_socket(self) -> Path:
        return self.queue_dir / "public" / "cleanup"

    @property
    def out_dir(self) -> Path:
        return self.pf_dir / "out"

    def queue(self) -> list[dict]:
        return postfix_queue(self.conf_dir)

    def queue_ids(self, queue_name: str | None = None) -> list[str]:
        """Queue ids, sorted; only those in ``queue_name`` (e.g. "hold") if given."""
        return sorted(m["queue_id"] for m in self.queue()
                      if queue_name is None or m["queue_name"] == queue_name)

    def held_ids(self) -> list[str]:
        return self.queue_ids("hold")

    def read(self, queue_id: str) -> QueuedMessage:
        return postcat_message(self.conf_dir, queue_id)

    def clear_queue(self) -> None:
        """Delete every queued message (``postsuper -d ALL``)."""
        _postfix_tool("postsuper", self.conf_dir, "-d", "ALL")

    def delivered(self, count: int = 1, timeout: float = 5.0) -> list[Path]:
        """In ``file`` mode: wait for ``count`` delivered files ``out/*.eml``."""
        return wait_for_files(self.out_dir, "*.eml", count, timeout)

    def qmqp_send(self, message: bytes, sender: str, recipients: Sequence[str]) -> bytes:
        if self.qmqp_port is None:
            raise ComponentError("this Postfix instance has no qmqpd")
        return qmqp_send(self.qmqp_port, message, sender, recipients)


def _qmqp_probe(port: int) -> bool:
    """A QMQP request without recipients: qmqpd answers D (no recipients)."""
    return qmqp_send(port, b"Subject: probe\n\nprobe\n", "probe@example.test", [], timeout=2)[:1] in b"DKZ"


def _postfix_probe(daemon: Postfix) -> Callable[[], bool]:
    def probe() -> bool:
        if not daemon.cleanup_socket.exists():
            return False
        if daemon.qmqp_port is not None and not _qmqp_probe(daemon.qmqp_port):
            return False
        if daemon.smtpd_port is not None and not smtp_banner_probe(daemon.smtpd_port):
            return False
        return True

    def check() -> bool:
        if "in use" in tail(daemon.log_path, 20):
            raise ComponentError(f"Postfix could not bind its port: address in use\n{daemon.logs()}")
        return _answers(probe)()
    return check


def _start_postfix(script: Path, args: Sequence[str], mode: str, qmqp_port: int | None,
                   smtpd_port: int | None) -> Postfix:
    base = private_dir("postfix-")
    pf = base / "pf"
    proc = _spawn(["/bin/sh", str(script), str(pf), *args], base / "postfix.out")
    return Postfix("postfix", proc, base, pf / "maillog", port=qmqp_port or smtpd_port or 0,
                   log_paths=[pf / "maillog", base / "postfix.out"], pf_dir=pf,
                   qmqp_port=qmqp_port, smtpd_port=smtpd_port, mode=mode)


def _check_postfix(mode: str) -> None:
    if mode not in ("hold", "file"):
        raise ValueError(f"mode must be 'hold' or 'file', not {mode!r}")
    require_root("Postfix master(8)")
    if not Path(POSTFIX_MASTER).is_file():
        raise ComponentError(f"{POSTFIX_MASTER} is missing: Postfix is not installed (see .ci/run)")
    for tool in ("postcat", "postqueue", "postsuper"):
        find_binary(tool)


@contextlib.contextmanager
def postfix_qmqp(mode: str = "hold") -> Iterator[Postfix]:
    """A private Postfix whose only listener is qmqpd on 127.0.0.1.

    The same instance as :func:`postfix_private` without smtpd.
    ``mode="hold"``: every message stays in the hold queue (header_checks
    HOLD). ``mode="file"``: every message is delivered to
    ``out_dir/<qid>.<pid>.eml``, one file per recipient. Root only.
    """
    with postfix_private(mode, qmqp=True, smtpd=False) as daemon:
        yield daemon


@contextlib.contextmanager
def postfix_private(mode: str = "hold", qmqp: bool = True, smtpd: bool = True) -> Iterator[Postfix]:
    """A private Postfix via t/bin/postfix-private.sh: qmqpd, smtpd and cleanup.

    ``smtpd`` listens on ``.smtpd_port`` and relays for 127.0.0.0/8 (no DNS
    lookups, no error delays); ``.cleanup_socket`` accepts the Postfix cleanup
    protocol (as used by qpsmtpd's postfix-queue plugin); its directory is
    mode 0711, so unprivileged clients can reach it.

    ``mode="hold"``: nothing ever leaves the queue (there is no qmgr):
    mail from qmqpd/smtpd goes to ``hold``; mail sent to the cleanup socket
    without the FILTER flag stays in ``incoming``. Read it with :meth:`Postfix.read`.
    ``mode="file"``: every message is delivered by pipe(8) to
    ``out_dir/<qid>.<pid>.eml``, one file per recipient.
    Root only.
    """
    _check_postfix(mode)

    def start() -> Postfix:
        qmqp_port = free_port() if qmqp else None
        smtpd_port = free_port() if smtpd else None
        args = [str(qmqp_port or "-"), str(smtpd_port or "-"), mode]
        return _start_postfix(POSTFIX_PRIVATE_SCRIPT, args, mode, qmqp_port, smtpd_port)

    with _running(start, _postfix_probe) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 5. dnsmasq
# --------------------------------------------------------------------------

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}


def dns_rcode(port: int, name: str, qtype: str = "A", host: str = LOCALHOST,
              tcp: bool = False, timeout: float = 1.0) -> tuple[int, int]:
    """Send one DNS query (stdlib only); return (rcode, number of answers).

    rcode 0 is NOERROR, 3 NXDOMAIN, 5 REFUSED. For real lookups in tests use
    dnspython with ``nameservers=["127.0.0.1"]`` and ``port``.
    """
    qid = int.from_bytes(os.urandom(2), "big")
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".")) + b"\0"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", QTYPES[qtype], 1)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            reply = _recv_exactly(sock, struct.unpack("!H", _recv_exactly(sock, 2))[0])
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((host, port))  # connected: "port unreachable" fails fast
            sock.send(query)
            reply = sock.recv(65535)
    rid, flags, _qd, ancount = struct.unpack("!HHHH", reply[:8])
    if rid != qid:
        raise ComponentError("DNS reply with a wrong id")
    return flags & 0x000F, ancount


@dataclasses.dataclass
class Dnsmasq(Daemon):
    """dnsmasq serving private data on ``port`` (UDP and TCP)."""

    conf_path: Path = Path()


DNSMASQ_BASE_LINES = (
    "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts", "no-poll",
    "no-negcache", "log-queries", "log-facility=-",
    "local=/#/",  # every name not defined here gets NXDOMAIN (instead of REFUSED)
)


@contextlib.contextmanager
def dnsmasq(lines: Sequence[str] = ()) -> Iterator[Dnsmasq]:
    """Run dnsmasq on 127.0.0.1:PORT with a private config and no upstream.

    ``lines`` are dnsmasq.conf lines such as
    ``"host-record=mail.example.test,192.0.2.25"``, ``"mx-host=example.test,mail.example.test,10"``,
    ``"txt-record=example.test,\\"v=spf1 -all\\""`` or ``"address=/2.0.0.127.bl.test/127.0.0.2"``.
    Unknown names get NXDOMAIN. Nothing from /etc is read. Yields a
    :class:`Dnsmasq`; point resolvers at ``127.0.0.1`` port ``.port``.
    """
    binary = find_binary("dnsmasq")

    def start() -> Dnsmasq:
        base = private_dir("dnsmasq-")
        port = free_port(udp=True)
        conf = base / "dnsmasq.conf"
        conf.write_text("\n".join([f"port={port}", *DNSMASQ_BASE_LINES, *lines]) + "\n")
        log = base / "dnsmasq.log"
        proc = _spawn([binary, "--keep-in-foreground", f"--conf-file={conf}", "--pid-file="], log,
                      **_as_nobody())
        return Dnsmasq("dnsmasq", proc, base, log, port=port, log_paths=[log, conf], conf_path=conf)

    def answering(daemon: Daemon) -> Callable[[], bool]:
        return _answers(lambda: dns_rcode(daemon.port, "ready.probe.test", timeout=0.2)[0] >= 0)

    with _running(start, answering) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 6. redis-server
# --------------------------------------------------------------------------


def redis_ping(port: int, host: str = LOCALHOST) -> bool:
    """True if redis answers PING with +PONG."""
    return tcp_exchange(port, b"PING\r\n", host, until=b"\r\n").startswith(b"+PONG")


@contextlib.contextmanager
def redis_server() -> Iterator[Daemon]:
    """Run redis-server on 127.0.0.1:PORT, no persistence, as nobody when root."""
    binary = find_binary("redis-server")

    def start() -> Daemon:
        base = private_dir("redis-")
        data = base / "redis"
        data.mkdir()
        chown_nobody(data)
        port = free_port()
        log = data / "redis.log"
        argv = [binary, "--bind", LOCALHOST, "--port", str(port), "--save", "", "--appendonly", "no",
                "--dir", str(data), "--daemonize", "no", "--logfile", str(log)]
        proc = _spawn(argv, base / "redis.out", **_as_nobody())
        return Daemon("redis-server", proc, base, log, port=port, log_paths=[log, base / "redis.out"])

    with _running(start, lambda d: _answers(lambda: redis_ping(d.port))) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 7. spamd (SpamAssassin), offline
# --------------------------------------------------------------------------

SPAMD_LOCAL_CF = """\
dns_available no
skip_rbl_checks 1
use_bayes 0
bayes_auto_learn 0
use_razor2 0
use_pyzor 0
required_score 5.0
report_safe 0
lock_method flock
"""


def spamd_ping(port: int, host: str = LOCALHOST) -> bool:
    """True if spamd answers ``PING SPAMC/1.5`` with PONG."""
    return b"PONG" in tcp_exchange(port, b"PING SPAMC/1.5\r\n\r\n", host, until=b"PONG")


def _spamd_site_dir(base: Path) -> Path:
    site = base / "sa" / "site"
    site.mkdir(parents=True)
    (base / "sa" / "home").mkdir()
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        if pre.name != "sa-compile.pre":
            shutil.copy(pre, site / pre.name)
    (site / "local.cf").write_text(SPAMD_LOCAL_CF)
    chown_nobody(base / "sa")
    return site


@contextlib.contextmanager
def spamd(timeout: float = 30.0, user_prefs: Mapping[str, str] | None = None) -> Iterator[Daemon]:
    """Run spamd on 127.0.0.1:PORT with the shipped rules only (about 1.1 s).

    Local tests only (``-L``), no per-user config, as nobody when root.
    Ready when ``PING`` gets ``PONG``. Assert ``score >= 1000`` or the GTUBE
    symbol for :data:`GTUBE` mail, never an exact score.

    ``user_prefs`` maps virtual user names (as sent in spamd's ``User:``
    header, e.g. an address) to the text of their ``user_prefs`` file
    (``required_score 2000``); spamd then reads them (``--virtual-config-dir``).
    """
    binary = find_binary("spamd")

    def start() -> Daemon:
        base = private_dir("spamd-")
        site = _spamd_site_dir(base)
        port = free_port()
        log = base / "spamd.log"
        argv = [binary, "-L", "-x", f"--listen={LOCALHOST}:{port}", "-A", LOCALHOST,
                "-C", "/usr/share/spamassassin", f"--siteconfigpath={site}",
                "-H", str(base / "sa" / "home"), "-s", "stderr", "--min-children=1", "--max-children=2"]
        if user_prefs is not None:
            users = base / "sa" / "users"
            for name, text in user_prefs.items():
                (users / name).mkdir(parents=True)
                (users / name / "user_prefs").write_text(text)
            chown_nobody(users)
            # spamd insists on -u with virtual configs: as root the parent stays root
            # and its children run as nobody (otherwise -u names the current user)
            user = "nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
            argv += [f"--virtual-config-dir={users}/%u", "-u", user]
            if IS_ROOT:
                argv += ["-g", "nogroup"]
            proc = _spawn(argv, log)
            return Daemon("spamd", proc, base, log, port=port)
        proc = _spawn(argv, log, **_as_nobody())
        return Daemon("spamd", proc, base, log, port=port)

    with _running(start, lambda d: _answers(lambda: spamd_ping(d.port)), timeout=timeout) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 8. clamd (ClamAV) with custom signatures
# --------------------------------------------------------------------------


def clamd_ping(port: int, host: str = LOCALHOST) -> bool:
    """True if clamd answers ``zPING\\0`` with ``PONG\\0``."""
    return tcp_exchange(port, b"zPING\0", host, until=b"\0").rstrip(b"\0") == b"PONG"


def clamd_instream(port: int, data: bytes, host: str = LOCALHOST) -> str:
    """Scan ``data`` with INSTREAM; return e.g. ``stream: OK`` or ``stream: X FOUND``."""
    chunks = b"".join(struct.pack("!I", len(data[i:i + 65536])) + data[i:i + 65536]
                      for i in range(0, len(data), 65536))
    reply = tcp_exchange(port, b"zINSTREAM\0" + chunks + struct.pack("!I", 0), host, until=b"\0", timeout=10)
    return reply.rstrip(b"\0").decode()


def _clamd_signatures(db: Path) -> None:
    """Test.EICAR-NDB (EICAR anywhere) and Test.ClamAV-TestFile-HDB (clam.exe hash)."""
    (db / "test.ndb").write_text(f"Test.EICAR-NDB:0:*:{EICAR.encode().hex()}\n")
    if not CLAMAV_TESTFILE.is_file():
        raise ComponentError(f"{CLAMAV_TESTFILE} missing (package clamav-testfiles)")
    blob = CLAMAV_TESTFILE.read_bytes()
    (db / "test.hdb").write_text(f"{hashlib.md5(blob).hexdigest()}:{len(blob)}:Test.ClamAV-TestFile-HDB\n")


def _clamd_conf(clam: Path, port: int, stream_max_length: str = "25M") -> str:
    return "\n".join([
        "Foreground yes", f"DatabaseDirectory {clam / 'db'}", f"TemporaryDirectory {clam / 'tmp'}",
        f"TCPSocket {port}", f"TCPAddr {LOCALHOST}", f"LocalSocket {clam / 'clamd.sock'}",
        f"PidFile {clam / 'clamd.pid'}", f"LogFile {clam / 'clamd.log'}", "LogTime yes",
        "SelfCheck 0", "Bytecode no", f"StreamMaxLength {stream_max_length}", "MaxThreads 4",
    ]) + "\n"


@dataclasses.dataclass
class Clamd(Daemon):
    """clamd on TCP ``port`` and the unix socket ``socket_path``; its config is ``conf_path``."""

    socket_path: Path = Path()
    conf_path: Path = Path()


@contextlib.contextmanager
def clamd(stream_max_length: str = "25M") -> Iterator[Clamd]:
    """Run clamd with three custom signatures instead of the ClamAV databases.

    :data:`EICAR` (also inside MIME attachments) is found as
    ``Test.EICAR-NDB.UNOFFICIAL``; clamav-testfiles' clam.exe (also inside
    clam.zip) as ``Test.ClamAV-TestFile-HDB.UNOFFICIAL``.  ``.conf_path`` is
    its clamd.conf (for clamdscan ``--config-file``); ``stream_max_length``
    its ``StreamMaxLength`` (INSTREAM data beyond it is refused).
    """
    binary = find_binary("clamd")

    def start() -> Clamd:
        base = private_dir("clamd-")
        clam = base / "clam"
        (clam / "db").mkdir(parents=True)
        (clam / "tmp").mkdir()
        _clamd_signatures(clam / "db")
        port = free_port()
        conf = clam / "clamd.conf"
        conf.write_text(_clamd_conf(clam, port, stream_max_length))
        chown_nobody(clam)
        out = base / "clamd.out"
        proc = _spawn([binary, "--foreground", f"--config-file={conf}"], out, **_as_nobody())
        return Clamd("clamd", proc, base, out, port=port, log_paths=[out, clam / "clamd.log"],
                     socket_path=clam / "clamd.sock", conf_path=conf)

    with _running(start, lambda d: _answers(lambda: clamd_ping(d.port)), timeout=30.0) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# 9. openssl: throwaway certificate
# --------------------------------------------------------------------------


def make_cert(directory: str | os.PathLike, name: str = "server",
              key_readable: bool = False) -> tuple[Path, Path]:
    """Create a self-signed EC P-256 certificate for localhost and 127.0.0.1.

    Returns ``(cert_path, key_path)`` (``NAME.crt.pem``, ``NAME.key.pem``).
    ``ssl.create_default_context(cafile=cert_path)`` verifies a connection to
    127.0.0.1 or localhost. The key has mode 0600 unless ``key_readable``
    (0644, for servers that run as another user).
    """
    directory = Path(directory)
    cert, key = directory / f"{name}.crt.pem", directory / f"{name}.key.pem"
    argv = [find_binary("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-sha256", "-days", "3650",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert)]
    result = subprocess.run(argv, capture_output=True)
    if result.returncode != 0 or not cert.exists():
        raise ComponentError(f"openssl req failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace')}")
    key.chmod(0o644 if key_readable else 0o600)
    return cert, key


# --------------------------------------------------------------------------
# 10. The qmail-queue test double (t/bin/qmail-queue-double)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class DoubleMessage:
    """One message stored by t/bin/qmail-queue-double (``<n>.msg`` + ``<n>.env``)."""

    n: int
    message: bytes
    sender: str
    recipients: list[str]


def qq_double_messages(directory: str | os.PathLike) -> list[DoubleMessage]:
    """Messages stored by the qmail-queue double in ``directory`` (its QQ_DOUBLE_DIR), by n."""
    stored = []
    for env_path in Path(directory).glob("[0-9]*.env"):
        n = int(env_path.stem)
        env = json.loads(env_path.read_text())
        message = env_path.with_suffix(".msg").read_bytes()
        stored.append(DoubleMessage(n, message, env["sender"], env["recipients"]))
    return sorted(stored, key=lambda m: m.n)
