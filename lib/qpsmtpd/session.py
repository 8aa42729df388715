"""Process set-up for one SMTP session on fds 0/1.

Finds the client's addresses (tcpserver's TCP* variables, else the socket
on fd 0, else the documented pipe default), keeps log lines away from the
client when fd 2 is the client's socket (xinetd), loads the plugins and
runs the session.  A plugin that fails to load ends the session with a 421
and a log line naming it, never a session without that plugin.

Signals: the dispositions and the signal mask inherited from the parent are
reset at start-up (an ignored SIGCHLD, as `swaks --pipe` leaves it, would
make every wait for a queue program fail after it accepted).  SIGTERM,
SIGHUP and SIGINT end the session cleanly: the spool and temp files of the
open transaction are removed, one log line says which signal, nothing is
printed, and no reply that could be taken for a verdict is sent.

Time limits (config files, seconds; 0 switches one off):

| file | default | bounds |
| --- | --- | --- |
| `timeout_write` | 60 | writing one reply (a client that never reads) |
| `timeout_session` | 3600 | the whole session |
| `timeout_command` | 300 | one command line, from its first byte to its end |

(`timeout`/`timeoutsmtpd`, default 1200, still bound each wait for input;
`plugin_timeout` and `queue_timeout` bound the plugins and queue backends.)
"""

from __future__ import annotations

import os
import stat
import sys
import time

from .constants import LOGNOTICE
from .reader import ConnectionLost, SmtpIO, Transport
from .smtp import SMTP

PIPE_REMOTE_IP = "127.0.0.1"
DEFAULT_WRITE_TIMEOUT = 60
DEFAULT_SESSION_TIMEOUT = 3600
DEFAULT_COMMAND_TIMEOUT = 300
TERMINATING = ("SIGTERM", "SIGHUP", "SIGINT")
# Python's own choices at start-up, kept: a broken pipe or a too-big file is an error, not death
KEEP = ("SIGPIPE", "SIGXFSZ", "SIGKILL", "SIGSTOP")


class Terminated(BaseException):
    """SIGTERM, SIGHUP or SIGINT arrived: end the session (not an Exception: no handler eats it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: object) -> None:
    import _signal

    for name in TERMINATING:  # one clean-up only
        _signal.signal(getattr(_signal, name), _signal.SIG_IGN)
    raise Terminated(signum)


def reset_signals() -> None:
    """Default dispositions and an empty mask, whatever the parent left; our own TERM/HUP/INT."""
    import _signal  # the C module: `signal` would import enum at start-up

    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    keep = {getattr(_signal, name) for name in KEEP if hasattr(_signal, name)}
    for number in range(1, _signal.NSIG):
        if number in keep:
            continue
        try:
            if _signal.getsignal(number) == _signal.SIG_IGN:
                _signal.signal(number, _signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            continue  # not a signal on this system, or one that cannot be caught
    for name in TERMINATING:
        _signal.signal(getattr(_signal, name), _terminate)


def configure_limits(smtp: SMTP, started: float) -> None:
    """The write, session and command time limits from the config files."""
    io = smtp.io
    write_timeout = smtp.config_int("timeout_write", DEFAULT_WRITE_TIMEOUT)
    io.transport.write_timeout = float(write_timeout) if write_timeout > 0 else None
    session_timeout = smtp.config_int("timeout_session", DEFAULT_SESSION_TIMEOUT)
    io.session_deadline = started + session_timeout if session_timeout > 0 else None
    command_timeout = smtp.config_int("timeout_command", DEFAULT_COMMAND_TIMEOUT)
    io.command_timeout = float(command_timeout) if command_timeout > 0 else None
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:")


def _same_file(fd_a: int, fd_b: int) -> bool:
    try:
        first, second = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def stderr_is_client(fd_in: int = 0, fd_out: int = 1) -> bool:
    """True when fd 2 is the client's socket (xinetd passes the socket on 0, 1 and 2)."""
    try:
        mode = os.fstat(2).st_mode
    except OSError:
        return True  # closed: anything written there could land on a reused fd
    return stat.S_ISSOCK(mode) and (_same_file(2, fd_in) or _same_file(2, fd_out))


def silence_stderr() -> None:
    """Point fd 2 at /dev/null so nothing, not even a crash, reaches the client."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    if null != 2:
        os.close(null)


def sanitize_host(host: str) -> str:
    return "".join(char for char in host if char in _HOST_CHARS)


def connection_info(environ: dict[str, str] | os._Environ, fd: int = 0) -> dict[str, str]:
    """Addresses of the client: TCP* variables, else getpeername on fd 0, else the pipe default."""
    if environ.get("TCPREMOTEIP"):
        return _info_from_tcpserver(environ)
    from_socket = _info_from_socket(fd)
    if from_socket:
        return from_socket
    return {"remote_ip": PIPE_REMOTE_IP, "remote_host": f"[{PIPE_REMOTE_IP}]",
            "remote_info": f"[{PIPE_REMOTE_IP}]", "remote_port": "",
            "local_ip": "", "local_host": "", "local_port": ""}


def _info_from_tcpserver(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    remote_ip = environ["TCPREMOTEIP"]
    host = sanitize_host(environ.get("TCPREMOTEHOST") or f"[{remote_ip}]")
    ident = sanitize_host(environ.get("TCPREMOTEINFO", ""))
    return {
        "remote_ip": remote_ip,
        "remote_host": host,
        "remote_info": f"{ident}@{host}" if ident else host,
        "remote_port": environ.get("TCPREMOTEPORT", ""),
        "local_ip": environ.get("TCPLOCALIP", ""),
        "local_host": environ.get("TCPLOCALHOST", ""),
        "local_port": environ.get("TCPLOCALPORT", ""),
    }


def _info_from_socket(fd: int) -> dict[str, str] | None:
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
    except OSError:
        return None
    import socket  # only for super-servers that give no TCP* variables

    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        peer, local = sock.getpeername(), sock.getsockname()
    except OSError:
        return None
    finally:
        sock.close()
    remote_ip = _unmap(peer[0])
    return {"remote_ip": remote_ip, "remote_host": f"[{remote_ip}]", "remote_info": f"[{remote_ip}]",
            "remote_port": str(peer[1]), "local_ip": _unmap(local[0]), "local_host": "",
            "local_port": str(local[1])}


def _unmap(ip: str) -> str:
    return ip[7:] if ip.lower().startswith("::ffff:") and "." in ip else ip


def run_session(install_dir: str) -> int:
    """Run one SMTP session on fds 0/1; the process exit status."""
    started = time.monotonic()
    if stderr_is_client():
        silence_stderr()
        client_on_stderr = True
    else:
        client_on_stderr = False
    smtp = SMTP(install_dir, SmtpIO(Transport(0, 1)))
    if client_on_stderr:
        smtp.disable_stderr_log()
    try:
        info = connection_info(os.environ)
        smtp.connection.start(**info)
        if not smtp.start():
            return 1
        quiet_collector()
        return serve_client(smtp, started)
    except Terminated as terminated:
        return end_on_signal(smtp, terminated.signum)


def serve_client(smtp: SMTP, started: float) -> int:
    """The session once its plugins are loaded (here or in the forkserver's parent): a PROXY
    header from a trusted balancer, the time limits, then the SMTP dialogue; the exit status."""
    if smtp.config("proxy_trusted") or getattr(smtp, "proxy_protocol_plugin", False):
        from .proxy import handle_proxy  # only where a balancer may send a PROXY header

        if not handle_proxy(smtp):
            return 1
    configure_limits(smtp, started)
    connection = smtp.connection  # a PROXY header may have changed the client's facts
    smtp.log(LOGNOTICE, f"Connection from {connection.remote_info} [{connection.remote_ip}]")
    try:
        smtp.run()
    except ConnectionLost:
        pass
    return 0


def quiet_collector() -> None:
    """No cyclic garbage collection in a short session: what the plugins loaded is frozen out of
    the collector's sight, and a collection runs only after very many new objects (a long
    session with many messages still gets one now and then)."""
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def end_on_signal(smtp: SMTP, signum: int) -> int:
    """The session was told to stop: remove what the open transaction stored, log it, exit."""
    import _signal

    _signal.setitimer(_signal.ITIMER_REAL, 0)  # a plugin time limit armed when the signal came
    transaction = getattr(smtp, "_transaction", None)
    if transaction is not None:
        try:
            transaction.close()
        except Exception as error:  # never a traceback: the log line says it
            smtp.log(LOGNOTICE, f"clean-up after signal {signum} incomplete: {error}")
    smtp.log(LOGNOTICE, f"signal {signum} received: session ended, nothing queued from an unfinished transaction")
    return 128 + signum


def main(install_dir: str, argv: list[str]) -> int:
    reset_signals()
    if argv:
        from .cli import run_cli
        try:
            return run_cli(install_dir, argv)
        except Terminated as terminated:
            return 128 + terminated.signum
    return run_session(install_dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), sys.argv[1:]))
