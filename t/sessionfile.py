"""Golden SMTP sessions: a TOML file replayed through the real qpsmtpd.py.

    description = "relaying is denied"
    dialogue = '''
    S: 220 mx.example.test ESMTP qpsmtpd {version} ready; send us your mail, but not your spam.
    C: HELO client.test
    S~ 250 mx\\.example\\.test Hi .*
    '''
    [config]                       # files of a private config dir
    me = "mx.example.test"
    plugins = ["rcpt_ok"]          # a list: one line each
    [env]                          # extra environment (TCPREMOTEIP ...)
    TCPREMOTEIP = "192.0.2.1"
    [files]                        # extra files, path relative to a private dir {dir}
    "plugins/boom" = "def hook_rcpt(self, t, r, p): raise RuntimeError('x')"
    [queued]                       # what the qmail-queue double must hold
    count = 1
    sender = "a@b.test"            # checks of the last message, or per message:
    recipients = ["x@example.test"]
    contains = ["Subject: hi"]     # also: lacks = [...], equals = "whole message"
    [[queued.messages]]            # optional: index = 0, sender, recipients, contains, lacks, equals

(TOML: top-level keys such as `dialogue` must come before the first [table].)
The dialogue runs in order: a `C:` line is written (CRLF added; `C:` with
nothing after it sends an empty line), an `R:` line is sent raw with
Python escapes and no CRLF added (`R: foo\\n.\\r\\n`), an `S:` line must be the next reply
line exactly (`{version}`, `{dir}`, `{repo}` substituted), an `S~` line must match as
a regular expression.  Several `C:` lines before the next `S:` are sent in
one write (pipelining).  After the dialogue the server must close the
connection.  `{dir}` in config values, files and env is the private directory, `{repo}`
the repository (for `plugin_dirs` that include t/plugins_for_tests).
When [queued] is given, QMAILQUEUE points at t/bin/qmail-queue-double.
A top-level `dnsmasq = ["host-record=...", ...]` runs a private dnsmasq
with those lines for the session; `{dns}` is its `127.0.0.1:port`.
`spamd = true` runs a private spamd (`{spamd}` is its `127.0.0.1:port`),
`clamd = true` a private clamd (`{clamd_socket}`, `{clamd_port}`, `{clamd_conf}`); see
t/components.py.  `{eicar}` and `{gtube}` stand for the test strings (kept
out of the files, so virus scanners leave the repository alone).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TEST_DIR)
QPSMTPD = os.path.join(REPO_DIR, "qpsmtpd.py")
QQ_DOUBLE = os.path.join(TEST_DIR, "bin", "qmail-queue-double")
sys.path.insert(0, os.path.join(REPO_DIR, "lib"))
from qpsmtpd import __version__  # noqa: E402


@dataclass
class Outcome:
    transcript: list[str]
    stderr: str
    queue_dir: str


SHIPPED_CONFIG = os.path.join(REPO_DIR, "config.sample")
LOCAL_CONFIG = os.path.join(REPO_DIR, "config")  # a developer's own, if any (the repository ships none)


def shield_shipped_config(directory: str) -> None:
    """Make every file of the sample config (and of a config/ in the checkout) exist, empty, in
    `directory`, so only what a test writes takes effect: a file found in $QPSMTPD_CONFIG wins
    over <install>/config and over $QMAIL/control."""
    for source in (SHIPPED_CONFIG, LOCAL_CONFIG):
        if not os.path.isdir(source):
            continue
        for name in os.listdir(source):
            path = os.path.join(directory, name)
            if not os.path.exists(path):
                open(path, "w").close()


def write_config(directory: str, config: dict, private: str) -> None:
    """Write `config` (name -> text or list of lines) into `directory`, shielding the shipped config."""
    os.makedirs(directory, exist_ok=True)
    for name, value in config.items():
        if isinstance(value, list):
            text = "".join(str(item) + "\n" for item in value)
        else:
            text = str(value) + ("\n" if not str(value).endswith("\n") else "")
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text.replace("{dir}", private).replace("{repo}", REPO_DIR))
    shield_shipped_config(directory)


def _read_line(proc: subprocess.Popen, buffer: bytearray, deadline: float) -> str | None:
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out waiting for a reply line")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)  # a pipe, or the forkserver's socket
        if not chunk:
            return None
        buffer += chunk
    index = buffer.index(b"\n")
    line = bytes(buffer[:index]).rstrip(b"\r").decode("utf-8", "replace")
    del buffer[:index + 1]
    return line


FORKSERVER_STAND_IN = "192.0.2.1"  # the client address most sessions give in TCPREMOTEIP


class _SocketSession:
    """A TCP connection to a running forkserver, with the Popen interface the replay uses."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.stdin = self
        self.stdout = self.sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server already closed the connection
            pass

    def wait(self, timeout: float | None = None) -> int:
        self.sock.close()
        return 0

    def poll(self) -> int:
        return 0


def _start_forkserver(env: dict, cwd: str) -> tuple[subprocess.Popen, int]:
    """`qpsmtpd.py --listen` on a free loopback port, once it answers."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, QPSMTPD, "--listen", f"127.0.0.1:{port}", "--max-from-ip", "0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env, cwd=cwd)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if server.poll() is not None:
                raise AssertionError("forkserver exited: " + server.stderr.read().decode("utf-8", "replace"))
            time.sleep(0.02)
    server.kill()
    raise AssertionError("the forkserver did not start")


def run_session_file(path: str, timeout: float = 20.0, dns: str | None = None,
                     daemons: dict[str, str] | None = None, forkserver: bool = False) -> Outcome:
    """Replay one golden session; `forkserver=True`: through `qpsmtpd.py --listen` over TCP."""
    with open(path, "rb") as handle:
        text = handle.read().decode().replace("{dns}", dns or "{dns}")
    if forkserver:  # the client really is 127.0.0.1: the session's own address for it is replaced
        text = text.replace(FORKSERVER_STAND_IN, "127.0.0.1")
    for key, value in (daemons or {}).items():
        text = text.replace("{" + key + "}", value)
    spec = tomllib.loads(text)
    if "dnsmasq" in spec and dns is None:
        from components import dnsmasq  # `dnsmasq = [lines]`: a private DNS server, `{dns}` its address
        with dnsmasq(spec["dnsmasq"]) as server:
            return run_session_file(path, timeout, f"127.0.0.1:{server.port}", daemons, forkserver)
    if daemons is None and (spec.get("spamd") or spec.get("clamd") or "{eicar}" in text or "{gtube}" in text):
        return _with_scanners(path, timeout, dns, spec, forkserver)
    private = tempfile.mkdtemp(prefix="qpsmtpd-session-")
    os.chmod(private, 0o755)
    config_dir = os.path.join(private, "config")
    queue_dir = os.path.join(private, "queue")
    os.makedirs(queue_dir)
    config = {"spool_dir": os.path.join(private, "spool"), **spec.get("config", {})}
    write_config(config_dir, config, private)
    for name, text in spec.get("files", {}).items():
        file_path = os.path.join(private, name)
        os.makedirs(os.path.dirname(file_path), exist_ok=True)
        with open(file_path, "w") as handle:
            handle.write(text.replace("{dir}", private).replace("{repo}", REPO_DIR))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
    env.update({"QPSMTPD_CONFIG": config_dir, "QMAILQUEUE": QQ_DOUBLE, "QQ_DOUBLE_DIR": queue_dir})
    env.update({key: str(value).replace("{dir}", private).replace("{repo}", REPO_DIR)
                for key, value in spec.get("env", {}).items()})
    server = None
    if forkserver:
        server, port = _start_forkserver(env, private)
        proc = _SocketSession(port)
    else:
        proc = subprocess.Popen([sys.executable, QPSMTPD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=private)
    transcript: list[str] = []
    buffer = bytearray()
    deadline = time.monotonic() + timeout
    pending: list[bytes] = []
    try:
        for raw in spec["dialogue"].strip("\n").split("\n"):
            kind, text = raw[:2], raw[3:] if len(raw) > 3 else ""
            text = text.replace("{version}", __version__).replace("{dir}", private)
            if kind == "C:":
                pending.append(text.encode("utf-8", "surrogateescape") + b"\r\n")
                transcript.append(raw)
                continue
            if kind == "R:":
                pending.append(text.encode("latin-1").decode("unicode_escape").encode("latin-1"))
                transcript.append(raw)
                continue
            if pending:
                proc.stdin.write(b"".join(pending))
                proc.stdin.flush()
                pending = []
            line = _read_line(proc, buffer, deadline)
            transcript.append(f"got: {line}")
            if kind == "S:":
                assert line == text, f"{os.path.basename(path)}: expected {text!r}, got {line!r}\n" + "\n".join(transcript)
            elif kind == "S~":
                assert line is not None and re.fullmatch(text, line), \
                    f"{os.path.basename(path)}: expected /{text}/, got {line!r}\n" + "\n".join(transcript)
            else:
                raise AssertionError(f"bad dialogue line {raw!r}")
        if pending:
            proc.stdin.write(b"".join(pending))
            proc.stdin.flush()
        proc.stdin.close()
        rest = _read_line(proc, buffer, deadline)
        assert rest is None, f"unexpected reply after the dialogue: {rest!r}"
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server is not None:  # the forkserver drains (the session is over) and exits
            server.terminate()
            server.wait(timeout=10)
            proc = server
    stderr = proc.stderr.read().decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    check_queued(spec.get("queued"), queue_dir, path)
    return Outcome(transcript, stderr, queue_dir)


def _with_scanners(path: str, timeout: float, dns: str | None, spec: dict, forkserver: bool = False) -> Outcome:
    """Run the session with the private spamd/clamd it asks for, the test strings filled in."""
    import contextlib

    import components

    daemons = {"eicar": components.EICAR, "gtube": components.GTUBE}
    with contextlib.ExitStack() as stack:
        if spec.get("spamd"):
            daemons["spamd"] = f"127.0.0.1:{stack.enter_context(components.spamd()).port}"
        if spec.get("clamd"):
            clamd = stack.enter_context(components.clamd())
            daemons.update(clamd_socket=str(clamd.socket_path), clamd_port=str(clamd.port),
                           clamd_conf=str(clamd.conf_path))
        return run_session_file(path, timeout, dns, daemons, forkserver)


def queued_messages(queue_dir: str) -> list[tuple[dict, bytes]]:
    messages = []
    for name in sorted(os.listdir(queue_dir)):
        if name.endswith(".env"):
            with open(os.path.join(queue_dir, name)) as handle:
                envelope = json.load(handle)
            with open(os.path.join(queue_dir, name[:-4] + ".msg"), "rb") as handle:
                messages.append((envelope, handle.read()))
    return messages


def check_queued(expected: dict | None, queue_dir: str, path: str) -> None:
    if expected is None:
        return
    messages = queued_messages(queue_dir)
    assert len(messages) == expected.get("count", 1), f"{path}: {len(messages)} messages queued"
    checks = expected.get("messages") or ([dict(expected, index=-1)] if messages else [])
    for check in checks:
        envelope, message = messages[check.get("index", -1)]
        if "sender" in check:
            assert envelope["sender"] == check["sender"]
        if "recipients" in check:
            assert envelope["recipients"] == check["recipients"]
        if "equals" in check:
            assert message == check["equals"].encode(), f"{path}: queued message differs:\n{message!r}"
        for needle in check.get("contains", []):
            needle = needle.replace("{version}", __version__)
            assert needle.encode() in message, f"{path}: {needle!r} not in queued message:\n{message[:2000]!r}"
        for needle in check.get("lacks", []):
            assert needle.encode() not in message, f"{path}: {needle!r} unexpectedly in queued message"
