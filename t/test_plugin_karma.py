"""karma: history over several connections (penalty box, release with tools/karma_tool.py,
expiry), the `negative` count the Perl plugin never reached, recipients, TLDs, the notes
other plugins read; the local store and a real Redis."""

import os
import subprocess
import sys
import time

import pytest

from qpsmtpd.testing import REPO_DIR, run_session
from state_support import backend, base_config, clock, log_lines, redis_daemon  # noqa: F401

DAY = 86400
QUIT_ONLY = ["HELO client.test", "QUIT"]
ADJUST_PLUGIN = """
def hook_connect(self, transaction):
    self.adjust_karma(int(self.args[0]))

def hook_rcpt(self, transaction, recipient, params=None):
    self.log(LOGWARN, f"notes: karma={self.connection.notes.get('karma')} "
                      f"history={self.connection.notes.get('karma_history')}")
"""


@pytest.fixture
def plugin_dir(tmp_path):
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "adjust.py").write_text(ADJUST_PLUGIN)
    return directory


def connect(plugin_dir, karma_args, adjust=0, lines=QUIT_ONLY, ip="192.0.2.1", before=(), after=(), **extra):
    """One session: `adjust N` changes this connection's karma, as a spam filter would."""
    plugins = [*before, f"karma {karma_args}", f"adjust {adjust}", *after, "rcpt_ok"]
    return run_session(lines, config=base_config(plugins, **extra), capture_queue=True,
                       plugin_dirs=[str(plugin_dir), os.path.join(REPO_DIR, "plugins")],
                       connection={"remote_ip": ip, "remote_host": f"[{ip}]"})


def tool(backend, *args):
    where = ["--db-dir", backend.db_dir] if backend.kind == "local" else ["--redis", backend.server]
    return subprocess.run([sys.executable, os.path.join(REPO_DIR, "tools", "karma_tool.py"), *where, *args],
                          capture_output=True, text=True, timeout=30)


def test_penalty_box_life_cycle(backend, clock, plugin_dir):
    args = f"{backend.args()} reject connect"
    first = connect(plugin_dir, args, adjust=-5)
    assert first.codes() == [220, 250, 221]
    assert log_lines(first, "negative, sent to penalty box, (msg: -5, his: -1)")

    clock.advance(3600)
    boxed = connect(plugin_dir, args)
    assert boxed.replies()[0] == (550, ["You were naughty. You cannot connect for 0.96 more days."])
    assert boxed.codes() == [550]

    listing = tool(backend, "search", "naughty")
    assert listing.returncode == 0, listing.stderr
    assert "192.0.2.1" in listing.stdout

    released = tool(backend, "release", "192.0.2.1")
    assert released.returncode == 0 and "released" in released.stdout
    assert connect(plugin_dir, args).codes() == [220, 250, 221]

    captured = tool(backend, "capture", "192.0.2.1")  # back in the box, by hand
    assert captured.returncode == 0, captured.stderr
    clock.now = time.time()  # the tool ran in another process, on the real clock
    assert connect(plugin_dir, args).codes() == [550]
    clock.advance(DAY + 1)  # penalty_days 1 is over
    passed = connect(plugin_dir, args)
    assert passed.codes() == [220, 250, 221]
    assert log_lines(passed, "pass, penalty expired")


def test_reject_naughty_leaves_it_to_the_naughty_plugin(backend, clock, plugin_dir):
    args = backend.args()  # reject naughty is the default
    connect(plugin_dir, args, adjust=-3)
    lines = ["HELO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>", "QUIT"]
    result = connect(plugin_dir, args, lines=lines, after=["naughty"])
    assert result.replies()[3][0] == 550
    assert "You were naughty" in result.replies()[3][1][0]


def test_negative_2_penalises_the_second_naughty_connection(backend, clock, plugin_dir):
    """The Perl plugin never counted naughty connections, so `negative 2` never penalised."""
    args = f"{backend.args()} negative 2 reject connect"
    first = connect(plugin_dir, args, adjust=-4)
    assert log_lines(first, "karma: negative, (msg: -4, his: -1)")
    assert connect(plugin_dir, args).codes() == [220, 250, 221]
    second = connect(plugin_dir, args, adjust=-4)
    assert log_lines(second, "negative, sent to penalty box, (msg: -4, his: -2)")
    assert connect(plugin_dir, args).codes() == [550]


def test_nice_history_and_notes(backend, clock, plugin_dir):
    """Nice connections build a history: the karma_history note (read by earlytalker) and
    more than one recipient per message."""
    args = backend.args()
    lines = ["HELO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>",
             "RCPT TO:<y@example.test>", "QUIT"]
    unknown = connect(plugin_dir, args, lines=lines)
    assert unknown.replies()[4] == (550, ["too many recipients for karma 0 (h: 0)"])
    for _ in range(2):
        nice = connect(plugin_dir, args, adjust=3)
        assert log_lines(nice, "karma: positive")
    known = connect(plugin_dir, args, lines=lines)
    assert log_lines(known, "notes: karma=0 history=2")
    assert known.replies()[4][0] == 250
    assert log_lines(known, "pass, no penalty (0 naughty, 2 nice, 2 connects)")


def test_neutral_connection_and_other_ip(backend, clock, plugin_dir):
    args = f"{backend.args()} reject connect"
    assert log_lines(connect(plugin_dir, args, adjust=-2), "karma: neutral")
    connect(plugin_dir, args, adjust=-9, ip="192.0.2.66")
    assert connect(plugin_dir, args, ip="192.0.2.66").codes() == [550]
    assert connect(plugin_dir, args).codes() == [220, 250, 221]


def test_penalty_box_bonus(backend, clock, plugin_dir):
    """Never nice and history below -5: one more day in the box per point."""
    store = backend.store("karma")
    store.set("192.0.2.1", "0:6:0:6", 30 * DAY)
    boxed = connect(plugin_dir, f"{backend.args()} reject connect", adjust=-3)
    assert log_lines(boxed, "penalty box bonus!")
    clock.advance(5 * DAY)
    result = connect(plugin_dir, f"{backend.args()} reject connect")
    assert result.codes() == [550]
    assert "You cannot connect for 3.00 more days" in result.replies()[0][1][0]


def test_relay_client_not_refused_but_recorded(backend, clock, plugin_dir):
    args = f"{backend.args()} reject connect"
    connect(plugin_dir, args, adjust=-5)
    relay = connect(plugin_dir, args, before=["relay"], relayclients=["192.0.2.1"])
    assert relay.codes() == [220, 250, 221]


def test_karma_tlds_and_envelope_format(backend, clock, plugin_dir):
    lines = ["HELO client.test", "MAIL FROM: <a@shop.work>", "QUIT"]
    result = connect(plugin_dir, backend.args(), lines=lines, karma_tlds=["work:-4", "fr:+1"])
    assert log_lines(result, "adjusting karma for .work envelope sender")
    assert log_lines(result, "illegal envelope address format")
    assert log_lines(result, "negative, sent to penalty box, (msg: -6, his: -1)")


def test_very_bad_karma_refused_at_data(backend, clock, plugin_dir):
    lines = ["HELO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>", "DATA", "QUIT"]
    result = connect(plugin_dir, f"{backend.args()} reject 1", adjust=-5, lines=lines)
    assert result.replies()[4][0] == 554
    assert result.replies()[4][1] == ["very bad karma: -5"]


@pytest.mark.components  # redis-py
def test_store_down_skips_karma(clock, plugin_dir):
    from components import free_port
    result = connect(plugin_dir, f"redis 127.0.0.1:{free_port()} reject connect", adjust=-5)
    assert result.codes() == [220, 250, 221]
    assert log_lines(result, "karma store unusable")
    assert log_lines(result, "connection not recorded")


def test_tool_usage_errors(tmp_path):
    script = os.path.join(REPO_DIR, "tools", "karma_tool.py")
    bad = subprocess.run([sys.executable, script, "capture", "not-an-ip", "--db-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "needs an IP address" in bad.stderr
    missing = subprocess.run([sys.executable, script, "list", "--db-dir", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "not a writable directory" in missing.stderr


def test_ipv6_client(backend, clock, plugin_dir):
    args = f"{backend.args()} reject connect"
    connect(plugin_dir, args, adjust=-5, ip="2001:db8::25")
    assert connect(plugin_dir, args, ip="2001:db8::25").codes() == [550]
    listing = tool(backend, "search", "2001:db8::25")
    assert "2001:db8::25" in listing.stdout and "totals: 1 naughty" in listing.stdout
