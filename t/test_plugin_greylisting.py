"""greylisting: the life cycle with a controlled clock, on the local store and on a real Redis;
exclusions, arguments and config files; the store down -> the client is let through."""

import time

import pytest

from state_support import (MAIL_ONLY, ONE_MESSAGE, backend, clock, log_lines, redis_daemon,  # noqa: F401
                           session)

DENIED = (450, ["This mail is temporarily denied"])
MINUTE = 60


def mail_reply(result):
    return result.replies()[2]


def test_life_cycle(backend, clock):
    """First try 4xx, early retry 4xx, retry after the window 250, white afterwards, expiry."""
    plugin = [f"greylisting {backend.args()} black_timeout 3000 white_timeout 86400"]
    first = session(ONE_MESSAGE, plugin)
    assert mail_reply(first) == DENIED
    assert first.queued == []
    assert log_lines(first, "fail: initial DENYSOFT, unknown")

    clock.advance(49 * MINUTE)
    early = session(ONE_MESSAGE, plugin)
    assert mail_reply(early) == DENIED
    assert log_lines(early, "black DENYSOFT - 1 deferred connections")

    clock.advance(2 * MINUTE)  # 51 minutes after the first try
    retry = session(ONE_MESSAGE, plugin)
    assert retry.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert len(retry.queued) == 1
    assert log_lines(retry, "pass: timed out (grey)")

    clock.advance(20 * 3600)  # white now: later deliveries pass and renew the entry
    later = session(ONE_MESSAGE, plugin)
    assert mail_reply(later)[0] == 250
    assert log_lines(later, "pass: white, 2 deliveries")
    clock.advance(20 * 3600)  # 40 h after the grey pass, 20 h after the last delivery
    assert mail_reply(session(MAIL_ONLY, plugin))[0] == 250

    clock.advance(86400 + 1)  # no delivery for longer than white_timeout: greylisted again
    expired = session(MAIL_ONLY, plugin)
    assert mail_reply(expired) == DENIED
    assert log_lines(expired, "initial DENYSOFT, unknown")


def test_other_ip_is_greylisted_on_its_own(backend, clock):
    plugin = [f"greylisting {backend.args()} black_timeout 60"]
    assert mail_reply(session(MAIL_ONLY, plugin, ip="192.0.2.1")) == DENIED
    clock.advance(61)
    assert mail_reply(session(MAIL_ONLY, plugin, ip="192.0.2.1"))[0] == 250
    assert mail_reply(session(MAIL_ONLY, plugin, ip="192.0.2.2")) == DENIED


def test_sender_and_recipient_triplet(backend, clock):
    plugin = [f"greylisting {backend.args()} sender 1 recipient 1 black_timeout 60"]
    lines = ["HELO c.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>", "QUIT"]
    result = session(lines, plugin)
    assert result.replies()[2][0] == 250  # the check runs at RCPT
    assert result.replies()[3] == DENIED
    clock.advance(61)
    assert session(lines, plugin).replies()[3][0] == 250
    other = ["HELO c.test", "MAIL FROM:<b@sender.test>", "RCPT TO:<x@example.test>", "QUIT"]
    assert session(other, plugin).replies()[3] == DENIED


def test_null_sender_refused_at_data(backend, clock):
    plugin = [f"greylisting {backend.args()} recipient 1"]
    lines = ["HELO c.test", "MAIL FROM:<>", "RCPT TO:<x@example.test>", "DATA", "QUIT"]
    result = session(lines, plugin)
    assert result.codes() == [220, 250, 250, 250, 451, 221]
    assert result.replies()[4][1] == ["This mail is temporarily denied"]


def test_deny_late_refuses_at_data(backend, clock):
    result = session(ONE_MESSAGE, [f"greylisting {backend.args()} deny_late 1"])
    assert result.codes()[:5] == [220, 250, 250, 250, 451]
    assert result.replies()[4][1] == ["This mail is temporarily denied"]
    assert result.queued == []


def test_reject_0_records_but_lets_through(backend, clock):
    plugin = [f"greylisting {backend.args()} reject 0 black_timeout 60"]
    result = session(MAIL_ONLY, plugin)
    assert mail_reply(result)[0] == 250
    assert log_lines(result, "fail: initial DENYSOFT, unknown")
    assert log_lines(session(MAIL_ONLY, plugin), "black DENYSOFT - 1 deferred")


def test_denysoft_greylist_config_file(backend, clock):
    """Settings from config/denysoft_greylist; the plugin line wins over the file."""
    config = {"denysoft_greylist": ["black_timeout 10", "reject 0"]}
    plugin = [f"greylisting {backend.args()} reject 1"]
    assert mail_reply(session(MAIL_ONLY, plugin, **config)) == DENIED
    clock.advance(11)
    assert mail_reply(session(MAIL_ONLY, plugin, **config))[0] == 250


def test_relay_client_and_whitelisted_host_skipped(backend, clock):
    relay = session(MAIL_ONLY, ["relay", f"greylisting {backend.args()}"], relayclients=["192.0.2.1"])
    assert mail_reply(relay)[0] == 250
    assert log_lines(relay, "skip, relay client")
    white = session(MAIL_ONLY, ["whitelist", f"greylisting {backend.args()}"], whitelisthosts=["192.0.2.1"])
    assert mail_reply(white)[0] == 250


def test_all_recipients_whitelisted_pass_at_data(backend, clock):
    plugin = ["whitelist", f"greylisting {backend.args()} deny_late 1"]
    result = session(ONE_MESSAGE, plugin, whitelistrcpt=["x@example.test"])
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert log_lines(result, "skip: all recipients whitelisted")


def test_exclude_files(backend, clock, tmp_path):
    listing = tmp_path / "whitelist_clients"
    listing.write_text("# postgrey format\n192.0.2.9\nmx.friend.test\n/^mta[0-9]+\\.pool\\.test$/\n")
    plugin = [f"greylisting {backend.args()}"]
    extra = {"greylist_exclude_files": [str(listing)]}
    for ip in ("192.0.2.9",):
        assert mail_reply(session(MAIL_ONLY, plugin, ip=ip, **extra))[0] == 250
    from qpsmtpd.testing import run_session
    from state_support import base_config
    for host, expected in (("mx.friend.test", 250), ("mta12.pool.test", 250), ("other.test", 450)):
        result = run_session(MAIL_ONLY, config=base_config([*plugin, "rcpt_ok"], **extra),
                             connection={"remote_ip": "198.51.100.7", "remote_host": host})
        assert mail_reply(result)[0] == expected, host


def test_geoip_and_p0f_notes(backend, clock, tmp_path):
    """geoip: listed countries are never greylisted; p0f: only matching fingerprints are.
    The notes come from ident/geoip and ident/p0f; a test plugin sets them here."""
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "set_notes.py").write_text(
        "def hook_connect(self, transaction):\n"
        "    self.connection.notes['geoip_country'] = 'us'\n"
        "    self.connection.notes['p0f'] = {'genre': 'Windows', 'link': 'DSL', 'distance': 9}\n")
    from qpsmtpd.testing import REPO_DIR, run_session
    from state_support import base_config

    def run(args):
        config = base_config(["set_notes", f"greylisting {backend.args()} {args}", "rcpt_ok"])
        return mail_reply(run_session(MAIL_ONLY, config=config,
                                      plugin_dirs=[str(plugins_dir), f"{REPO_DIR}/plugins"]))

    assert run("geoip US,CA")[0] == 250
    assert run("p0f genre,linux")[0] == 250          # no match: not greylisted
    assert run("p0f genre,windows") == DENIED        # a match: greylisted
    assert run("p0f distance,20,link,ethernet")[0] == 250
    assert run("p0f distance,5") == DENIED


@pytest.mark.components  # redis-py
def test_store_down_lets_the_client_through(clock):
    """Redis not listening: the client passes at once, with a log line, no traceback."""
    from components import free_port
    start = time.monotonic()
    result = session(ONE_MESSAGE, [f"greylisting redis 127.0.0.1:{free_port()} timeout 0.5"])
    assert time.monotonic() - start < 3
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert log_lines(result, "UNABLE TO OBTAIN GREYLIST RESULT")
    assert not log_lines(result, "Traceback")


def test_bad_db_dir_lets_the_client_through(clock, tmp_path):
    result = session(MAIL_ONLY, [f"greylisting db_dir {tmp_path}/missing"])
    assert mail_reply(result)[0] == 250
    assert log_lines(result, "UNABLE TO OBTAIN GREYLIST RESULT: db_dir")


def test_per_recipient_settings(backend, clock, tmp_path):
    """per_recipient: denysoft_greylist is read per recipient (through user_config): one
    recipient's list turns greylisting off for it (reject 0), the other keeps it."""
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "prefs.py").write_text(
        "def hook_user_config(self, transaction, address, name):\n"
        "    if name == 'denysoft_greylist' and address.user == 'relaxed':\n"
        "        return OK, 'reject 0'\n"
        "    return DECLINED\n")
    from qpsmtpd.testing import REPO_DIR, run_session
    from state_support import base_config
    lines = ["HELO c.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<relaxed@example.test>",
             "RCPT TO:<strict@example.test>", "QUIT"]
    config = base_config(["prefs", f"greylisting {backend.args()} per_recipient 1 recipient 1", "rcpt_ok"])
    result = run_session(lines, config=config, plugin_dirs=[str(plugins_dir), f"{REPO_DIR}/plugins"])
    assert result.replies()[3][0] == 250
    assert result.replies()[4] == DENIED


def test_old_arguments(backend, clock):
    """`mode testonly` is the old `reject 0`; `grey_timeout` is accepted and ignored."""
    result = session(MAIL_ONLY, [f"greylisting {backend.args()} mode testonly grey_timeout 600"])
    assert mail_reply(result)[0] == 250
    assert log_lines(result, "fail: initial DENYSOFT, unknown")
    assert not log_lines(result, "invalid parameter")
