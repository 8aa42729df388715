"""Real log files from real sessions, for the fail2ban filter and the report.

`run_sessions()` plays a fixed mix of SMTP sessions through the real
qpsmtpd.py (a pipe, with the client address in TCPREMOTEIP as tcpserver
sets it) and the logging plugins write where a deployment's would:

- `multilog`: logging/warn on stderr, piped into a real `multilog t DIR`
  (daemontools' log/run), read back from DIR/current;
- `file`: logging/file, the plugin's own file;
- `syslog`: logging/syslog into a private, real rsyslogd that writes the
  mail facility to a file in its default (Debian 12) format;
- `stderr`: logging/warn on stderr, kept as it is (no time stamps).

The mix (`SESSIONS`): AUTH failures from AUTH_IP, relaying attempts from
RELAY_IP, accepted mail from GOOD_IP (sender GOOD_SENDER) and temporary
refusals (random_error 100) from DEFER_IP.  Only the standard library is
used; multilog and rsyslogd are needed for those two formats.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from components import ComponentError, find_binary

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lib"))
from qpsmtpd.testing import make_install  # noqa: E402

AUTH_IP = "192.0.2.7"
RELAY_IP = "198.51.100.8"
GOOD_IP = "203.0.113.9"
DEFER_IP = "192.0.2.44"
IPV6_IP = "2001:db8::25"
GOOD_SENDER = "friend@good.test"
SPAMMER = "spammer@bad.test"


@dataclass(frozen=True)
class Session:
    ip: str
    lines: tuple[str, ...]
    defer: bool = False  # run with random_error 100 (every step deferred)


def _auth_failure(ip: str) -> Session:
    wrong = base64.b64encode(b"\0user@example.test\0wrong password").decode()
    return Session(ip, ("EHLO client.test", f"AUTH PLAIN {wrong}", "QUIT"))


def _relay_attempt(ip: str, victim: str) -> Session:
    return Session(ip, ("HELO spam.test", f"MAIL FROM:<{SPAMMER}>", f"RCPT TO:<{victim}>", "QUIT"))


def _good_message(ip: str, subject: str) -> Session:
    return Session(ip, ("HELO good.test", f"MAIL FROM:<{GOOD_SENDER}>", "RCPT TO:<user@example.test>",
                        "DATA", f"Subject: {subject}", "", "hello", ".", "QUIT"))


#: 6 AUTH failures, 3 relaying attempts (one over IPv6), 2 messages, 1 deferred session.
SESSIONS: tuple[Session, ...] = (
    *(_auth_failure(AUTH_IP) for _ in range(6)),
    _relay_attempt(RELAY_IP, "victim1@elsewhere.test"),
    _good_message(GOOD_IP, "one"),
    _relay_attempt(RELAY_IP, "victim2@elsewhere.test"),
    _relay_attempt(IPV6_IP, "victim3@elsewhere.test"),
    _good_message(GOOD_IP, "two"),
    Session(DEFER_IP, ("HELO slow.test", "MAIL FROM:<a@slow.test>", "QUIT"), defer=True),
)


def _config(logging: list[str], defer: bool) -> dict[str, str | list[str]]:
    plugins = ["random_error 100"] if defer else []
    plugins += ["auth/auth_flat_file", "rcpt_ok", "queue/maildir {maildir}"]
    return {"me": "mx.example.test", "rcpthosts": ["example.test"], "loglevel": "5",
            "flat_auth_pw": ["user@example.test:secret"], "plugins": plugins, "logging": logging}


def _run_one(session: Session, logging: list[str], stderr, base: Path) -> None:
    config = _config(logging, session.defer)
    config["plugins"] = [line.replace("{maildir}", str(base / "Maildir")) for line in config["plugins"]]
    install = Path(make_install(config, runnable=True))
    try:
        (install / "spool").mkdir(mode=0o700, exist_ok=True)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
        env["TCPREMOTEIP"] = session.ip
        dialogue = "".join(line + "\r\n" for line in session.lines).encode()
        subprocess.run([sys.executable, str(install / "qpsmtpd.py")], input=dialogue, stdout=subprocess.DEVNULL,
                       stderr=stderr, env=env, cwd=install, timeout=30, check=False)
    finally:
        shutil.rmtree(install, ignore_errors=True)


def run_sessions(logging: list[str], stderr=subprocess.DEVNULL, base: Path | None = None,
                 sessions: tuple[Session, ...] = SESSIONS) -> None:
    """Play `sessions` with this config/logging; stderr of every process goes to `stderr`."""
    own = base is None
    base = base or Path(tempfile.mkdtemp(prefix="qplogs-"))
    try:
        for session in sessions:
            _run_one(session, logging, stderr, base)
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)


def stderr_log(path: Path, sessions: tuple[Session, ...] = SESSIONS) -> Path:
    """logging/warn's lines as they are on stderr (pid first, no time stamp)."""
    with open(path, "wb") as out:
        run_sessions(["logging/warn LOGNOTICE"], stderr=out, base=path.parent, sessions=sessions)
    return path


def file_log(path: Path, sessions: tuple[Session, ...] = SESSIONS) -> Path:
    """logging/file's own file."""
    run_sessions([f"logging/file loglevel LOGNOTICE {path}"], base=path.parent, sessions=sessions)
    return path


@contextlib.contextmanager
def multilog(directory: Path) -> Iterator[subprocess.Popen]:
    """A real `multilog t DIRECTORY` (as daemontools' log/run starts it); yields the process."""
    proc = subprocess.Popen([find_binary("multilog"), "t", str(directory)], stdin=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def multilog_log(directory: Path, sessions: tuple[Session, ...] = SESSIONS) -> Path:
    """logging/warn through a real multilog: directory/current, every line with @tai64n."""
    with multilog(directory) as proc:
        run_sessions(["logging/warn LOGNOTICE"], stderr=proc.stdin, base=directory.parent, sessions=sessions)
    return directory / "current"


@contextlib.contextmanager
def rsyslog(base: Path) -> Iterator[tuple[Path, Path]]:
    """A private, real rsyslogd: yields (its unix socket, the file it writes mail.* to)."""
    socket_path, log_path = base / "log.sock", base / "mail.log"
    conf = base / "rsyslog.conf"
    (base / "work").mkdir()
    # Debian 12's /etc/rsyslog.conf sets no default template: the file gets
    # RSYSLOG_FileFormat (RFC 3339 time stamps), which is what is used here.
    conf.write_text(f'global(workDirectory="{base}/work")\n'
                    'module(load="imuxsock" SysSock.Use="off")\n'
                    f'input(type="imuxsock" Socket="{socket_path}")\n'
                    f'mail.* action(type="omfile" file="{log_path}")\n')
    proc = subprocess.Popen([find_binary("rsyslogd"), "-n", "-f", str(conf), "-i", str(base / "rsyslogd.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ComponentError(f"rsyslogd did not start: {proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.05)
        yield socket_path, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def syslog_log(base: Path, sessions: tuple[Session, ...] = SESSIONS) -> Path:
    """logging/syslog through a real rsyslogd, as it lands in its mail log file."""
    with rsyslog(base) as (socket_path, log_path):
        run_sessions([f"logging/syslog loglevel LOGNOTICE facility mail socket {socket_path}"], base=base,
                     sessions=sessions)
        # rsyslog writes asynchronously: wait for the last session's lines
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log_path.exists() and DEFER_IP in log_path.read_text(errors="replace"):
                break
            time.sleep(0.05)
    return log_path
