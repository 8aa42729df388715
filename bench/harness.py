"""Building blocks of the benchmarks: servers, the qmail-queue double, SMTP over a socket pair.

Every server process is started the way a super-server starts it: a
socket on fds 0 and 1 (a `socket.socketpair()`, so the Perl qpsmtpd, which
is silent on pipes, works too), tcpserver's `TCP*` variables in the
environment, stderr to /dev/null.  Its wall time is measured from just
before the fork to the end of the session and of the process; its peak RSS
and CPU time come from `wait4()` in a small C launcher (`Meter`), which is
what `/usr/bin/time -v` reports as "Maximum resident set size" (it covers
the process and the children it waited for, e.g. the qmail-queue double).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRLF = b"\r\n"

MINIMAL_STACK = ["rcpt_ok", "queue/qmail-queue"]
TYPICAL_STACK = [
    "count_unrecognized_commands 4", "relay", "helo policy lenient", "dont_require_anglebrackets",
    "badmailfrom reject naughty", "badrcptto", "rcpt_ok", "headers", "bogus_bounce log",
    "virus/klez_filter", "naughty reject data", "queue/qmail-queue",
]
COMMON_CONFIG = {
    "me": ["bench.example.test"],
    "rcpthosts": ["example.test"],
    "loglevel": ["6"],
    "badmailfrom": ["spammer@bad.test", "@spam.test"],
    "badrcptto": ["nobody@example.test"],
}
SENDER = "sender@client.test"
RECIPIENT = "rcpt@example.test"

QQ_DOUBLE_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* qmail-queue double for benchmarks: message on fd 0 to EOF, then the
   envelope on fd 1 to EOF; logs "<message bytes> <envelope bytes> <ok>" to
   $QQ_BENCH_LOG so the harness can check that every message arrived. */
static char buf[1 << 16];
static long drain(int fd, char *last2) {
    long total = 0; ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (n >= 2) { last2[0] = buf[n - 2]; last2[1] = buf[n - 1]; }
        else { last2[0] = last2[1]; last2[1] = buf[0]; }
        total += n;
    }
    return n < 0 ? -1 : total;
}
int main(void) {
    char mlast[2] = {1, 1}, elast[2] = {1, 1};
    long msg = drain(0, mlast);
    long env = drain(1, elast);
    if (msg < 0 || env < 0) return 54;
    const char *log = getenv("QQ_BENCH_LOG");
    if (log) {
        char line[64];
        int ok = env >= 3 && elast[0] == 0 && elast[1] == 0;
        int len = snprintf(line, sizeof line, "%ld %ld %d\n", msg, env, ok);
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (fd < 0 || write(fd, line, len) != len) return 53;
        close(fd);
    }
    return 0;
}
"""

LAUNCHER_C = r"""
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
/* launcher OUTFILE PROGRAM ARGS...: run PROGRAM, then write
   "<peak RSS KiB> <user us> <system us> <exit status>" to OUTFILE.  Like
   /usr/bin/time, but exact to the microsecond.  The child is forked from this
   small process, so its peak RSS is its own (a child forked from the big
   benchmark process would inherit that process's high-water mark). */
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    pid_t pid = fork();
    if (pid < 0) return 111;
    if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 111;
    FILE *out = fopen(argv[1], "w");
    if (!out) return 111;
    fprintf(out, "%ld %ld %ld %d\n", ru.ru_maxrss,
            (long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    fclose(out);
    return 0;
}
"""

QQ_DOUBLE_SH = """#!/bin/sh
# qmail-queue double for benchmarks (shell fallback when there is no C compiler)
m=$(wc -c)
e=$(wc -c <&1)
[ -n "$QQ_BENCH_LOG" ] && echo "$m $e 1" >> "$QQ_BENCH_LOG"
exit 0
"""


# -- statistics ------------------------------------------------------------
@dataclass
class Series:
    """Repeated measurements of one quantity."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def describe(self, fmt: str = "{:.1f}") -> str:
        if not self.values:
            return "n/a"
        return f"{fmt.format(self.median)} ({fmt.format(min(self.values))}–{fmt.format(max(self.values))})"


# -- the qmail-queue double --------------------------------------------------
def compile_c(directory: str, name: str, source_text: str) -> str | None:
    """Compile `source_text` with gcc/cc into `directory`/`name`; None without a compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        return None
    source = os.path.join(directory, name + ".c")
    binary = os.path.join(directory, name)
    with open(source, "w") as handle:
        handle.write(source_text)
    result = subprocess.run([compiler, "-O2", "-o", binary, source], capture_output=True, text=True, check=False)
    return binary if result.returncode == 0 else None


def build_qq_double(directory: str) -> tuple[str, str]:
    """Compile the C double into `directory` (or write the shell one); (path, kind)."""
    binary = compile_c(directory, "qq-double", QQ_DOUBLE_C)
    if binary:
        return binary, "C"
    script = os.path.join(directory, "qq-double.sh")
    with open(script, "w") as handle:
        handle.write(QQ_DOUBLE_SH)
    os.chmod(script, 0o755)
    return script, "sh"


def read_qq_log(path: str) -> list[tuple[int, int, bool]]:
    """What the double logged: (message bytes, envelope bytes, envelope well-formed) per message."""
    if not os.path.exists(path):
        return []
    entries = []
    with open(path) as handle:
        for line in handle:
            message, envelope, ok = line.split()
            entries.append((int(message), int(envelope), ok == "1"))
    return entries


# -- servers -----------------------------------------------------------------
@dataclass
class Server:
    """How to start one per-connection server process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None


def write_config(directory: str, plugins: list[str], extra: dict[str, list[str]] | None = None) -> str:
    os.makedirs(directory, exist_ok=True)
    for name, lines in {**COMMON_CONFIG, "plugins": plugins, **(extra or {})}.items():
        with open(os.path.join(directory, name), "w") as handle:
            handle.write("".join(line + "\n" for line in lines))
    return directory


def base_env(work: str, config_dir: str, qq_double: str, qq_log: str) -> dict[str, str]:
    """The environment tcpserver (-R -H -l0) would give, plus the queue double."""
    home = os.path.join(work, "home")
    os.makedirs(os.path.join(home, "tmp"), mode=0o700, exist_ok=True)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C", "TZ": "UTC",
        "PROTO": "TCP", "TCPLOCALHOST": "0", "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": "25",
        "TCPREMOTEIP": "127.0.0.1", "TCPREMOTEPORT": "40000",
        "QPSMTPD_CONFIG": config_dir, "QMAILQUEUE": qq_double, "QQ_BENCH_LOG": qq_log,
    }


def python_install(work: str, tree: str = REPO) -> str:
    """A private install dir: qpsmtpd.py copied, lib/ and plugins/ of `tree` linked, empty config/."""
    install = os.path.join(work, "py-install")
    os.makedirs(os.path.join(install, "config"), exist_ok=True)
    shutil.copy(os.path.join(tree, "qpsmtpd.py"), install)
    for name in ("lib", "plugins"):
        link = os.path.join(install, name)
        if not os.path.islink(link):
            os.symlink(os.path.join(tree, name), link)
    return install


def python_server(python: str, install: str, env: dict[str, str], flags: list[str] | None = None) -> Server:
    return Server("python", [python, *(flags or []), os.path.join(install, "qpsmtpd.py")], env)


def perl_server(checkout: str, env: dict[str, str]) -> Server:
    return Server("perl", [os.path.join(checkout, "qpsmtpd")], env, cwd=checkout)


def precompile(python: str, tree: str = REPO) -> None:
    """Bytecode for lib/ and plugins/ next to the sources, as the install docs advise."""
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(tree, "lib"), os.path.join(tree, "plugins")],
                   check=False, stdout=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


# -- one process over a socket pair --------------------------------------------
@dataclass
class Run:
    wall: float
    maxrss_kib: int
    status: int
    replies: list[tuple[int, str]]
    data_seconds: float = 0.0
    cpu_ms: float = 0.0


class Meter:
    """Starts a program so that its peak RSS and CPU time can be read afterwards.

    Through the C launcher when there is a compiler, else /usr/bin/time; as a
    last resort the benchmark's own wait4(), whose RSS figure then includes
    the high-water mark the child inherited from the benchmark process.
    """

    def __init__(self, work: str) -> None:
        self.out = os.path.join(work, "rusage.out")
        self.launcher = compile_c(work, "launcher", LAUNCHER_C)
        self.time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
        if self.launcher:
            self.kind = "C launcher (fork, exec, wait4)"
        elif self.time:
            self.kind = "/usr/bin/time"
        else:
            self.kind = "wait4 from the benchmark process (RSS figures too high)"

    def argv(self, argv: list[str]) -> list[str]:
        if self.launcher:
            return [self.launcher, self.out, *argv]
        if self.time:
            return [self.time, "-f", "%M %U %S %x", "-o", self.out, *argv]
        return argv

    def collect(self, proc: subprocess.Popen) -> tuple[int, int, float]:
        """wait4() the child: (exit status, peak RSS KiB, CPU ms)."""
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if not (self.launcher or self.time):
            return proc.returncode, usage.ru_maxrss, (usage.ru_utime + usage.ru_stime) * 1000
        with open(self.out) as handle:
            words = handle.read().split()
        os.unlink(self.out)
        if self.launcher:
            return int(words[3]), int(words[0]), (int(words[1]) + int(words[2])) / 1000
        return int(words[3]), int(words[0]), (float(words[1]) + float(words[2])) * 1000


class ReplyReader:
    """Reads complete SMTP replies (multi-line aware) from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def reply(self, timeout: float = 60.0) -> tuple[int, str]:
        self.sock.settimeout(timeout)
        text: list[str] = []
        while True:
            while CRLF not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return (0, "connection closed")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(CRLF, 1)
            decoded = line.decode("utf-8", "replace")
            text.append(decoded[4:])
            if decoded[3:4] != "-":
                return (int(decoded[:3]) if decoded[:3].isdigit() else 0, "\n".join(text))


def spawn(meter: Meter, server: Server, argv: list[str] | None, child_sock: socket.socket) -> subprocess.Popen:
    return subprocess.Popen(meter.argv(argv or server.argv), stdin=child_sock, stdout=child_sock,
                            stderr=subprocess.DEVNULL, env=server.env, cwd=server.cwd, close_fds=True)


def floor_run(meter: Meter, server: Server, argv: list[str]) -> Run:
    """Start `argv` with the server's environment and a socket on fd 0/1; nothing is said."""
    parent, child = socket.socketpair()
    start = time.perf_counter()
    proc = spawn(meter, server, argv, child)
    child.close()
    status, rss, cpu = meter.collect(proc)
    wall = time.perf_counter() - start
    parent.close()
    return Run(wall, rss, status, [], cpu_ms=cpu)


def message_bytes(body_lines: int = 5) -> bytes:
    headers = [
        f"From: Sender <{SENDER}>", f"To: <{RECIPIENT}>", "Subject: benchmark message",
        "Date: Thu, 01 Jan 2026 00:00:00 +0000", "Message-ID: <bench.1@client.test>",
    ]
    body = [f"line {i} of a small benchmark message, nothing to see here." for i in range(body_lines)]
    return CRLF.join(line.encode() for line in headers + [""] + body) + CRLF


def session_run(meter: Meter, server: Server, message: bytes | None = None, body_size: int = 0,
                block: int = 1 << 16) -> Run:
    """HELO, MAIL, RCPT, DATA, QUIT in lock-step, like a non-pipelining client.

    With `body_size`, the body is `body_size` bytes of 78-byte lines sent in
    `block`-sized writes, and `data_seconds` is the time from the first body
    byte to the reply after the final dot.
    """
    parent, child = socket.socketpair()
    start = time.perf_counter()
    proc = spawn(meter, server, None, child)
    child.close()
    reader = ReplyReader(parent)
    replies = [reader.reply()]
    data_seconds = 0.0
    try:
        for command in (b"HELO client.test", f"MAIL FROM:<{SENDER}>".encode(), f"RCPT TO:<{RECIPIENT}>".encode(),
                        b"DATA"):
            parent.sendall(command + CRLF)
            replies.append(reader.reply())
            if replies[-1][0] >= 400:
                break
        else:
            data_start = time.perf_counter()
            if body_size:
                send_big_body(parent, body_size, block)
            else:
                parent.sendall((message or message_bytes()) + b"." + CRLF)
            replies.append(reader.reply(timeout=600))
            data_seconds = time.perf_counter() - data_start
        parent.sendall(b"QUIT" + CRLF)
        replies.append(reader.reply())
    except OSError as error:
        replies.append((0, f"client error: {error}"))
    parent.close()
    status, rss, cpu = meter.collect(proc)
    wall = time.perf_counter() - start
    return Run(wall, rss, status, replies, data_seconds, cpu)


def big_body_block(size: int = 1 << 16) -> bytes:
    line = b"x" * 76 + CRLF
    return line * max(1, size // len(line))


def send_big_body(sock: socket.socket, size: int, block: int) -> None:
    """A message of about `size` bytes: small header, then 78-byte lines, then the final dot."""
    header = message_bytes(0)
    chunk = big_body_block(block)
    remaining = max(0, size - len(header)) // 78 * 78
    sock.sendall(header)
    while remaining > 0:
        piece = chunk if remaining >= len(chunk) else chunk[:remaining]
        sock.sendall(piece)
        remaining -= len(piece)
    sock.sendall(b"." + CRLF)


def raw_copy_run(qq_double: str, size: int, env: dict[str, str]) -> float:
    """Floor of a DATA transfer: the same bytes straight into the double over a socket pair (seconds)."""
    parent, child = socket.socketpair()
    with open(os.devnull, "rb") as null:
        proc = subprocess.Popen([qq_double], stdin=child, stdout=null, stderr=subprocess.DEVNULL,
                                env={k: v for k, v in env.items() if k != "QQ_BENCH_LOG"})
    child.close()
    start = time.perf_counter()
    send_big_body(parent, size, 1 << 16)
    parent.shutdown(socket.SHUT_WR)
    proc.wait()
    elapsed = time.perf_counter() - start
    parent.close()
    return elapsed


def make_workdir() -> str:
    work = tempfile.mkdtemp(prefix="qpsmtpd-bench-")
    os.chmod(work, 0o755)
    return work
