"""logging/file through the real qpsmtpd.py: file names, templates, nosplit, pipes, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deploy_support import private_install, remove_install, run_pipe

LINE = re.compile(r"^(\S+) (\S+)\[(\d+)\]: (\d{10}\.(\d+)) (.*)$")


@pytest.fixture
def logdir():
    path = Path(tempfile.mkdtemp(prefix="qplog-"))
    yield path
    remove_install(path)


@pytest.fixture
def install_with(request):
    made = []

    def make(logging: list[str], loglevel: str = "4") -> Path:
        install = private_install({"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"],
                                   "logging": logging, "loglevel": loglevel})
        made.append(install)
        return install

    yield make
    for path in made:
        remove_install(path)


def test_per_day_file_format_and_level(install_with, logdir):
    install = install_with([f"logging/file loglevel LOGINFO tsformat %FT%T {logdir}/smtp-%Y-%m-%d.log"])
    before = time.strftime("%Y-%m-%d")
    result = run_pipe(install, ["EHLO client.test", "NOOP a\rb", "QUIT"])
    assert result.stderr == b""
    names = [p.name for p in logdir.iterdir()]
    assert names in ([f"smtp-{before}.log"], [f"smtp-{time.strftime('%Y-%m-%d')}.log"]), names
    lines = (logdir / names[0]).read_text().splitlines()
    assert lines
    for line in lines:
        match = LINE.match(line)
        assert match, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", match.group(1))
        assert match.group(2) == os.uname().nodename
        assert int(match.group(3)) == result.pid == int(match.group(5))
        assert "\r" not in line
    assert any(line.endswith(" dispatching NOOP a\\x0db") for line in lines)
    assert not any("running plugin" in line for line in lines), "LOGDEBUG written at LOGINFO"
    assert (logdir / names[0]).stat().st_mode & 0o777 == 0o640


def test_appends_across_connections_and_per_connection_files(install_with, logdir):
    install = install_with([f"logging/file loglevel 6 reopen {logdir}/all.log",
                            f"logging/file:1 loglevel 6 {logdir}/conn-%i.log"])
    first = run_pipe(install, ["HELO one.test", "QUIT"])
    second = run_pipe(install, ["HELO two.test", "QUIT"])
    text = (logdir / "all.log").read_text()
    assert "dispatching HELO one.test" in text and "dispatching HELO two.test" in text
    per_connection = sorted(p.name for p in logdir.glob("conn-*.log"))
    assert len(per_connection) == 2, per_connection
    for result in (first, second):
        [name] = [n for n in per_connection if n.endswith(f".{result.pid}.log")]
        assert re.fullmatch(rf"conn-\d{{10}}\.{result.pid}\.log", name)


def _slow_session(install: Path) -> None:
    """A session whose lines span more than one second."""
    proc = subprocess.Popen([sys.executable, str(install / "qpsmtpd.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"HELO early.test\r\n")
    proc.stdin.flush()
    proc.stdout.readline()
    proc.stdout.readline()
    time.sleep(1.1)
    out, err = proc.communicate(b"NOOP late\r\nQUIT\r\n", timeout=10)
    assert b"221" in out and err == b""


def test_nosplit_keeps_a_connection_in_one_file(install_with, logdir):
    split_dir, nosplit_dir = logdir / "split", logdir / "nosplit"
    split_dir.mkdir()
    nosplit_dir.mkdir()
    install = install_with([f"logging/file loglevel 6 {split_dir}/%H%M%S.log",
                            f"logging/file:1 loglevel 6 nosplit {nosplit_dir}/%H%M%S.log"])
    _slow_session(install)
    assert len(list(split_dir.iterdir())) >= 2
    [single] = list(nosplit_dir.iterdir())
    text = single.read_text()
    assert "HELO early.test" in text and "NOOP late" in text


def test_pipe_to_a_command(install_with, logdir):
    target = logdir / "piped.log"
    install = install_with([f"logging/file loglevel LOGINFO |cat >> {target}"])
    result = run_pipe(install, ["HELO piped.test", "QUIT"])
    assert result.codes() == [220, 250, 221]
    text = target.read_text()
    assert "dispatching HELO piped.test" in text
    default_stamp = r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}"
    tag = rf"{re.escape(os.uname().nodename)}\[{result.pid}\]: \d{{10}}\.{result.pid} "
    assert text.endswith("\n")
    assert all(re.match(default_stamp + " " + tag, line) for line in text.splitlines()), text


def test_unwritable_file_does_not_stop_mail(install_with, logdir):
    install = install_with([f"logging/file loglevel 6 {logdir}/missing-dir/x.log"])
    result = run_pipe(install, ["HELO a.test", "NOOP", "QUIT"])
    assert result.codes() == [220, 250, 250, 221]
    errors = result.log_lines()
    assert len(errors) == 1 and "logging/file: cannot open" in errors[0] and "missing-dir" in errors[0]


@pytest.mark.parametrize("line", ["logging/file loglevel", "logging/file loglevel LOGNOPE /tmp/x.log",
                                  "logging/file nosplit"])
def test_bad_arguments(install_with, line):
    result = run_pipe(install_with([line]), ["HELO a.test", "QUIT"])
    assert result.codes() == [421]
