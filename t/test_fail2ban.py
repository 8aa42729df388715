"""deploy/fail2ban against Debian's real fail2ban, on log lines real sessions wrote.

The sessions (t/logsamples.py) run the real qpsmtpd.py; their lines reach a
real multilog, logging/file's own file and a real rsyslogd.  fail2ban-regex
must find exactly the refused clients in each format; a private
fail2ban-server running the shipped jails must ban the password guesser and
the relay prober, and never the client whose mail was accepted.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import logsamples
from components import ComponentError, find_binary
from logsamples import AUTH_IP, DEFER_IP, GOOD_IP, IPV6_IP, RELAY_IP

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "fail2ban"
FILTER = DEPLOY / "filter.d" / "qpsmtpd.conf"
JAIL = DEPLOY / "jail.d" / "qpsmtpd.conf"
ETC_FAIL2BAN = Path("/etc/fail2ban")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("f2b-logs")
    (base / "sys").mkdir()
    return {
        "multilog": logsamples.multilog_log(base / "main"),
        "file": logsamples.file_log(base / "file.log"),
        "syslog": logsamples.syslog_log(base / "sys"),
    }


def matched_ips(log: Path, mode: str | None = None) -> Counter:
    """fail2ban-regex's matches: client address -> number of lines."""
    filter_arg = f"{FILTER}[mode={mode}]" if mode else str(FILTER)
    run = subprocess.run([find_binary("fail2ban-regex"), "-o", "ip", str(log), filter_arg],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return Counter(run.stdout.split())


@pytest.mark.parametrize("kind", ["multilog", "file", "syslog"])
def test_reject_mode_finds_every_refused_client(logs, kind):
    text = logs[kind].read_text()
    assert text.count(" accept ") == 2 and f"defer {DEFER_IP}: 4" in text, text  # what must not match is there
    assert matched_ips(logs[kind]) == Counter({AUTH_IP: 6, RELAY_IP: 2, IPV6_IP: 1})


@pytest.mark.parametrize("kind", ["multilog", "file", "syslog"])
def test_auth_mode_finds_only_auth_failures(logs, kind):
    assert matched_ips(logs[kind], "auth") == Counter({AUTH_IP: 6})


def test_journal_lines(tmp_path):
    """The systemd backend hands fail2ban "<host> qpsmtpd[<pid>]: <message>" (what `journalctl -o short`
    shows); no journald runs here, so the real logging/warn lines are written in that form by the test."""
    raw = logsamples.stderr_log(tmp_path / "stderr.log").read_text().splitlines()
    stamp = time.strftime("%b %d %H:%M:%S")
    journal = tmp_path / "journal"
    journal.write_text("".join(f"{stamp} mx qpsmtpd[{line.split()[0]}]: {line}\n" for line in raw))
    assert matched_ips(journal) == Counter({AUTH_IP: 6, RELAY_IP: 2, IPV6_IP: 1})
    assert matched_ips(journal, "auth") == Counter({AUTH_IP: 6})


def test_reply_text_cannot_frame_another_address(tmp_path):
    """A refusal whose reply quotes client text with a fake decision counts for the real client only."""
    log = tmp_path / "current"
    log.write_text("@400000006925ecf11c2a9b0c 4711 (rcpt) rcpt_ok: reject 192.0.2.99: 550 "
                   "<x (auth) a: reject 203.0.113.1: 535 y> denied\n"
                   "@400000006925ecf11c2a9b0c 4711 Connection from [203.0.113.1] (auth) a: reject 203.0.113.1: 535\n")
    assert matched_ips(log) == Counter({"192.0.2.99": 1})


def _private_fail2ban_conf(conf: Path, logpath: Path, banned: Path) -> None:
    """The shipped filter and jails; the admin's jail.local sets logpath; a dummy action records bans."""
    (conf / "filter.d").mkdir(parents=True)
    (conf / "action.d").mkdir()
    (conf / "jail.d").mkdir()
    shutil.copy(ETC_FAIL2BAN / "filter.d" / "common.conf", conf / "filter.d")
    shutil.copy(ETC_FAIL2BAN / "action.d" / "dummy.conf", conf / "action.d")
    shutil.copy(FILTER, conf / "filter.d")
    shutil.copy(JAIL, conf / "jail.d")
    (conf / "fail2ban.conf").write_text(
        f"[Definition]\nloglevel = INFO\nlogtarget = {conf}/fail2ban.log\nsocket = {conf}/f2b.sock\n"
        f"pidfile = {conf}/f2b.pid\ndbfile = :memory:\n")
    (conf / "jail.conf").write_text(
        f"[DEFAULT]\nbackend = polling\nbanaction = dummy\naction = dummy[target={banned}]\n"
        "ignoreip = 127.0.0.1/8 ::1\n")
    (conf / "jail.local").write_text("".join(f"[{jail}]\nlogpath = {logpath}\n" for jail in ("qpsmtpd-auth", "qpsmtpd")))


def _client(conf: Path, *args: str) -> str:
    run = subprocess.run([find_binary("fail2ban-client"), "-c", str(conf), "-s", str(conf / "f2b.sock"), *args],
                         capture_output=True, text=True, timeout=30)
    return run.stdout + run.stderr


def _banned(conf: Path, jail: str) -> set[str]:
    out = _client(conf, "status", jail)
    line = next((line for line in out.splitlines() if "Banned IP list:" in line), "")
    return set(line.split("Banned IP list:")[-1].split())


def test_shipped_jails_ban_guesser_and_prober_only(tmp_path):
    conf, banned = tmp_path / "conf", tmp_path / "banned"
    with logsamples.multilog(tmp_path / "main") as multilog:
        current = tmp_path / "main" / "current"
        _private_fail2ban_conf(conf, current, banned)
        server = subprocess.Popen([find_binary("fail2ban-server"), "-f", "-x", "-c", str(conf),
                                   "-s", str(conf / "f2b.sock"), "-p", str(conf / "f2b.pid")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while "qpsmtpd-auth" not in _client(conf, "status"):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise ComponentError("fail2ban-server did not start its jails:\n"
                                         + (conf / "fail2ban.log").read_text(errors="replace")[-3000:])
                time.sleep(0.2)
            probes = tuple(logsamples._relay_attempt(RELAY_IP, f"v{n}@elsewhere.test") for n in range(10))
            logsamples.run_sessions(["logging/warn LOGNOTICE"], stderr=multilog.stdin, base=tmp_path,
                                    sessions=logsamples.SESSIONS + probes)
            deadline = time.monotonic() + 20
            while not (_banned(conf, "qpsmtpd-auth") and _banned(conf, "qpsmtpd") >= {RELAY_IP}):
                assert time.monotonic() < deadline, (conf / "fail2ban.log").read_text(errors="replace")[-3000:]
                time.sleep(0.2)
            auth_bans, reject_bans = _banned(conf, "qpsmtpd-auth"), _banned(conf, "qpsmtpd")
        finally:
            _client(conf, "stop")
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert auth_bans == {AUTH_IP}, "5 AUTH failures in 10 minutes: banned by the auth jail"
    # 6 AUTH failures are below the reject jail's 10; the prober's 12 refusals are not
    assert reject_bans == {RELAY_IP}
    assert GOOD_IP not in auth_bans | reject_bans and DEFER_IP not in auth_bans | reject_bans


def test_debian_configuration_accepts_the_shipped_files(tmp_path):
    """Debian's own /etc/fail2ban with the filter and jail added as docs/deploy.md says (only logpath
    set to a file that exists here, and Debian's sshd jail off: this machine has no auth.log)."""
    conf = tmp_path / "fail2ban"
    shutil.copytree(ETC_FAIL2BAN, conf)
    shutil.copy(FILTER, conf / "filter.d")
    log = tmp_path / "current"
    log.touch()
    (conf / "jail.d" / "qpsmtpd.conf").write_text(JAIL.read_text().replace(
        "/etc/qpsmtpd-service/log/main/current", str(log)))
    (conf / "jail.d" / "zz-test.local").write_text("[sshd]\nenabled = false\n")
    check = subprocess.run([find_binary("fail2ban-client"), "-c", str(conf), "-t"], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0 and "configuration test is successful" in check.stdout + check.stderr, \
        check.stdout + check.stderr
    dump = subprocess.run([find_binary("fail2ban-client"), "-c", str(conf), "-d"], capture_output=True, text=True,
                          timeout=60).stdout
    for jail, retries in (("qpsmtpd-auth", 5), ("qpsmtpd", 10)):
        assert f"['add', '{jail}', 'auto']" in dump
        assert f"['set', '{jail}', 'maxretry', {retries}]" in dump
        assert f"['set', '{jail}', 'addlogpath', '{log}', 'head']" in dump
