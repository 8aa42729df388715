"""queue/exim-bsmtp against a test double of `exim -bS` written here.

Why a double: Debian's Exim (exim4-daemon-light) conflicts with Postfix
(both provide mail-transport-agent), and the other queue tests need the
real Postfix, so Exim cannot be installed beside it.  The double reads the
BSMTP job on stdin the way Exim 4.96 does (checked by hand against Debian's
exim4 binary run privately with `-C`): it keeps the exact bytes it was fed,
undoes the dot-stuffing, and on an error prints Exim's report (`501 text`,
`Transaction started in line 1`, `Error detected in line N`, the command)
on stdout and exits 2 without accepting the message; on success it prints
nothing and exits 0.  Recipients named `reject@`, `tempfail@`, `crash@`
and `hang@` make it fail on demand.
"""

from __future__ import annotations

import os
import sys

import pytest
from qpsmtpd.testing import run_session

EXIM_DOUBLE = f'''#!{sys.executable}
import os, signal, sys, time
state = os.environ["EXIM_DOUBLE_DIR"]
if sys.argv[1:] != ["-bS"]:
    print("exim double: expected exactly -bS, got", sys.argv[1:]); sys.exit(64)
mode = os.fstat(0).st_mode & 0o777
job = sys.stdin.buffer.read()
count = len(os.listdir(os.path.join(state, "jobs")))
with open(os.path.join(state, "jobs", f"{{count}}.bsmtp"), "wb") as f:
    f.write(job)
with open(os.path.join(state, "jobs", f"{{count}}.mode"), "w") as f:
    f.write(oct(mode))
lines = job.split(b"\\n")
def fail(number, text):
    print(text); print("Transaction started in line 1"); print(f"Error detected in line {{number}}")
    print(lines[number - 1].decode(errors="replace")); sys.stdout.flush()
    sys.stderr.write("An error was detected while processing a file of BSMTP input.\\n"); sys.exit(2)
if not lines[0].startswith(b"HELO "): fail(1, "500 bad HELO")
if not (lines[1].startswith(b"MAIL FROM:<") and lines[1].endswith(b">")): fail(2, "503 MAIL first")
rcpts, index = [], 2
while lines[index].startswith(b"RCPT TO:<"):
    rcpt = lines[index][9:-1].decode()
    local = rcpt.split("@")[0]
    if local == "reject": fail(index + 1, "550 unknown user in the double")
    if local == "tempfail": fail(index + 1, "452 Space shortage, please try later")
    if local == "crash": os.kill(os.getpid(), signal.SIGKILL)
    if local == "hang": time.sleep(30)
    rcpts.append(rcpt); index += 1
if not rcpts: fail(index + 1, "503 RCPT TO:<recipient> must precede DATA")
if lines[index] != b"DATA": fail(index + 1, "500 expected DATA")
body, index = [], index + 1
while lines[index] != b".":
    line = lines[index]
    body.append(line[1:] if line.startswith(b".") else line); index += 1
if lines[index + 1:] != [b"QUIT", b""]: fail(index + 2, "500 expected QUIT at the end")
with open(os.path.join(state, "queue", f"{{count}}.eml"), "wb") as f:
    f.write(lines[1] + b"\\n" + b"\\n".join(b"RCPT " + r.encode() for r in rcpts) + b"\\n\\n" + b"\\n".join(body) + b"\\n")
'''

BODY = ["Subject: dots", "", "line one", ".starts with a dot", ".", "..two dots", "last line"]


@pytest.fixture
def exim(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "queue").mkdir()
    program = tmp_path / "exim4"
    program.write_text(EXIM_DOUBLE)
    program.chmod(0o755)
    os.environ["EXIM_DOUBLE_DIR"] = str(tmp_path)
    yield tmp_path
    os.environ.pop("EXIM_DOUBLE_DIR", None)


def send(exim, recipients, sender="a@example.org", args="", body=BODY):
    lines = ["HELO client.test", f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA",
             *[("." + line if line.startswith(".") else line) for line in body], ".", "QUIT"]
    result = run_session(lines, config={"plugins": ["rcpt_ok", f"queue/exim-bsmtp exim_path {exim / 'exim4'} {args}"],
                                        "rcpthosts": ["example.test"], "loglevel": "7"},
                         env={"EXIM_DOUBLE_DIR": str(exim)}, keep_install=True)
    return result.replies()[-2], result


def job(exim, number=0) -> bytes:
    return (exim / "jobs" / f"{number}.bsmtp").read_bytes()


def test_queued_with_exact_bsmtp_bytes(exim):
    import socket
    reply, result = send(exim, ["x@example.test", "y@example.test"])
    assert reply == (250, ["Queued!"])
    raw = job(exim)
    envelope = (f"HELO {socket.gethostname()}\nMAIL FROM:<a@example.org>\n"
                "RCPT TO:<x@example.test>\nRCPT TO:<y@example.test>\nDATA\n").encode()
    assert raw.startswith(envelope)
    assert raw.endswith(b"\nSubject: dots\n\nline one\n..starts with a dot\n..\n...two dots\nlast line\n.\nQUIT\n")
    assert b"\nReceived: " in raw or raw[len(envelope):].startswith(b"Received: ")
    assert (exim / "jobs" / "0.mode").read_text() == "0o600"
    queued = (exim / "queue" / "0.eml").read_bytes()
    assert queued.endswith(b"\nSubject: dots\n\nline one\n.starts with a dot\n.\n..two dots\nlast line\n")
    install = os.path.dirname(os.path.dirname(result.smtp.spool_dir()))
    spool_files = [name for _root, _dirs, files in os.walk(os.path.join(install, "spool")) for name in files]
    assert spool_files == []


def test_null_sender(exim):
    reply, _ = send(exim, ["x@example.test"], sender="")
    assert reply[0] == 250
    assert b"\nMAIL FROM:<>\n" in job(exim)


def test_permanent_error_is_552_and_nothing_queued(exim):
    reply, result = send(exim, ["x@example.test", "reject@example.test"])
    assert reply == (552, ["unknown user in the double"])
    assert os.listdir(exim / "queue") == []
    assert any("exim: Error detected in line 4" in line for line in result.log)


def test_temporary_error_is_452(exim):
    reply, _ = send(exim, ["tempfail@example.test"])
    assert reply == (452, ["Space shortage, please try later"])
    assert os.listdir(exim / "queue") == []


def test_exim_killed_without_a_word_is_not_queued(exim):
    reply, result = send(exim, ["crash@example.test"])
    assert reply[0] == 451
    assert any("BSMTP enqueue failed; exitcode -9" in line for line in result.log)


def test_exim_hanging_is_killed_after_the_timeout(exim):
    import time
    started = time.monotonic()
    reply, _result = send(exim, ["hang@example.test"], args="timeout 1")
    assert reply == (452, ["Internal error enqueuing mail"])
    assert time.monotonic() - started < 5


def test_missing_exim(tmp_path):
    result = run_session(["HELO c", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.test>", "DATA", "hi", ".",
                          "QUIT"],
                         config={"plugins": ["rcpt_ok", f"queue/exim-bsmtp exim_path {tmp_path}/none"],
                                 "rcpthosts": ["example.test"], "loglevel": "7"})
    assert result.replies()[-2][0] == 451
    assert any("Could not find exim" in line for line in result.log)
