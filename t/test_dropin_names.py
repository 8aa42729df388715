"""Old plugin names of the Perl qpsmtpd (Debian's check_* wrappers and older) and their old
config files work unchanged, each logging once which current plugin it loads (issue 16)."""

from __future__ import annotations

import pytest

import os

from qpsmtpd.testing import REPO_DIR, run_session

REPO_PLUGINS = os.path.join(REPO_DIR, "plugins")

SESSION = ["HELO client.example", "MAIL FROM:<someone@sender.example>", "RCPT TO:<user@example.test>",
           "DATA", "Subject: hi", "From: a@sender.example", "Date: Wed, 25 Nov 2026 10:00:00 +0000",
           "", "body", ".", "QUIT"]
BASE = {"rcpthosts": ["example.test"], "loglevel": "7"}


def notices(result, old):
    return [line for line in result.log if f"plugin {old} is the old name of" in line]


@pytest.mark.parametrize("line, target", [
    ("check_relay", "relay"),
    ("check_norelay", "relay"),
    ("check_badmailfrom", "badmailfrom"),
    ("check_badrcptto", "badrcptto"),
    ("check_spamhelo", "helo"),
    ("check_loop", "loop"),
    ("check_basicheaders", "headers"),
    ("check_earlytalker action log wait 0", "earlytalker"),
    pytest.param("require_resolvable_fromhost reject 0", "resolvable_fromhost",
                 marks=pytest.mark.components),  # needs dnspython
    ("check_bogus_bounce log", "bogus_bounce"),
])
def test_old_name_loads_the_current_plugin_and_says_so_once(line, target):
    old = line.split()[0]
    result = run_session(SESSION, config={**BASE, "plugins": [line, "rcpt_ok"]}, capture_queue=True)
    assert result.codes()[0] == 220, result.log
    found = notices(result, old)
    assert len(found) == 1, result.log
    assert f"loaded as '{target}" in found[0] and "docs/migration.md" in found[0]
    assert f"({5})" not in found[0]
    plugin = result.smtp.plugins[0]
    assert plugin.plugin_name == target and plugin.config_name == old


def test_notice_is_at_lognotice():
    result = run_session(["QUIT"], config={**BASE, "loglevel": "5", "plugins": ["check_relay", "rcpt_ok"]})
    assert notices(result, "check_relay")
    quiet = run_session(["QUIT"], config={**BASE, "loglevel": "4", "plugins": ["check_relay", "rcpt_ok"]})
    assert not notices(quiet, "check_relay")


def test_check_badmailfrom_refuses_listed_sender():
    result = run_session(SESSION, config={**BASE, "plugins": ["check_badmailfrom", "rcpt_ok"],
                                          "badmailfrom": ["@sender.example"]}, capture_queue=True)
    assert 550 in result.codes() and not result.queued


def test_check_badrcptto_refuses_listed_recipient():
    result = run_session(SESSION, config={**BASE, "plugins": ["check_badrcptto", "rcpt_ok"],
                                          "badrcptto": ["user@example.test"]}, capture_queue=True)
    assert result.codes()[3] == 550 and not result.queued


def test_check_spamhelo_reads_badhelo():
    result = run_session(["HELO bad.example", "QUIT"], config={**BASE, "plugins": ["check_spamhelo", "rcpt_ok"],
                                                            "badhelo": ["bad.example"]})
    assert result.codes()[1] == 550, result.output


def test_check_loop_takes_max_hops_positionally():
    hops = [f"Received: from hop{n}.example by mx" for n in range(3)]
    lines = SESSION[:4] + hops + SESSION[4:]
    result = run_session(lines, config={**BASE, "plugins": ["check_loop 2", "rcpt_ok"]}, capture_queue=True)
    assert result.codes()[-2] == 552 and not result.queued, result.output
    ok = run_session(lines, config={**BASE, "plugins": ["check_loop 5", "rcpt_ok"]}, capture_queue=True)
    assert len(ok.queued) == 1


def test_check_basicheaders_days_argument_becomes_past_and_future():
    old = [line if not line.startswith("Date:") else "Date: Mon, 01 Jan 2024 10:00:00 +0000" for line in SESSION]
    result = run_session(old, config={**BASE, "plugins": ["check_basicheaders 3", "rcpt_ok"]}, capture_queue=True)
    assert not result.queued and any(code >= 500 for code in result.codes()), result.output
    plugin = result.smtp.plugins[0]
    assert plugin.args == ["past", "3", "future", "3"] or sorted(plugin.args) == ["3", "3", "future", "past"]


def test_check_earlytalker_action_log_lets_an_early_talker_through():
    # the session's lines are all sent before the greeting: an early talker
    result = run_session(SESSION, config={**BASE, "plugins": ["check_earlytalker action log wait 0.2", "rcpt_ok"]},
                         capture_queue=True)
    assert len(result.queued) == 1, result.output
    denied = run_session(SESSION, config={**BASE, "plugins": ["check_earlytalker action deny wait 0.2", "rcpt_ok"]},
                         capture_queue=True)
    assert not denied.queued


@pytest.mark.components  # resolvable_fromhost needs dnspython
def test_require_resolvable_fromhost_config_file_zero_means_log_only():
    plugins = ["require_resolvable_fromhost", "rcpt_ok"]
    result = run_session(["QUIT"], config={**BASE, "plugins": plugins, "require_resolvable_fromhost": "0"})
    assert result.smtp.plugins[0].args == ["reject", "0"]
    default = run_session(["QUIT"], config={**BASE, "plugins": plugins})
    assert default.smtp.plugins[0].args == []


def test_relay_only_sets_only():
    result = run_session(["QUIT"], config={**BASE, "plugins": ["relay_only", "rcpt_ok"]})
    assert result.smtp.plugins[0].args == ["only", "1"]


def test_own_python_plugin_of_an_old_name_wins(tmp_path):
    (tmp_path / "check_relay.py").write_text("def hook_helo(self, transaction, host):\n    return DENY, 'mine'\n")
    result = run_session(["HELO x", "QUIT"], config={**BASE, "plugins": ["check_relay", "rcpt_ok"]},
                         plugin_dirs=[str(tmp_path), REPO_PLUGINS])
    assert result.codes()[1] == 550 and not notices(result, "check_relay")


def test_numbered_instance_of_an_old_name():
    result = run_session(["QUIT"], config={**BASE, "plugins": ["check_relay:1", "rcpt_ok"]})
    assert result.smtp.plugins[0].plugin_name == "relay_3a1"  # as rcpt_ok:1 is named
    assert result.smtp.plugins[0].config_name == "check_relay:1"


def test_check_badrcptto_patterns_reads_badrcptto_patterns():
    config = {**BASE, "plugins": ["check_badrcptto_patterns", "rcpt_ok"],
              "badrcptto_patterns": ["# Format is pattern\\s+Response", "!       Sorry, bang paths not accepted here",
                                     "@.*@    Sorry, multiple at signs not accepted here",
                                     "%       Sorry, percent hack not accepted here"]}
    lines = ["HELO c", "MAIL FROM:<a@sender.example>", "RCPT TO:<x%y@example.test>", "RCPT TO:<b!c@example.test>",
             "RCPT TO:<ok@example.test>", "QUIT"]
    result = run_session(lines, config=config)
    replies = result.replies()
    assert replies[3] == (550, ["Sorry, percent hack not accepted here"]), replies
    assert replies[4] == (550, ["Sorry, bang paths not accepted here"])
    assert replies[5][0] == 250
    assert any("check_badrcptto_patterns is an old plugin" in line for line in result.log)


def test_check_badmailfrom_patterns_refuses_every_rcpt():
    config = {**BASE, "plugins": ["check_badmailfrom_patterns", "rcpt_ok"],
              "badmailfrom_patterns": [r"^return.*@.*\.pidplate\.biz$    I don't want it",
                                       r"^admin.*\.ppoonn400\.com$"]}
    lines = ["HELO c", "MAIL FROM:<return-1@x.pidplate.biz>", "RCPT TO:<a@example.test>", "RSET",
             "MAIL FROM:<admin@mx.ppoonn400.com>", "RCPT TO:<a@example.test>", "RSET",
             "MAIL FROM:<good@sender.example>", "RCPT TO:<a@example.test>", "QUIT"]
    replies = run_session(lines, config=config).replies()
    assert replies[2][0] == 250
    assert replies[3] == (550, ["I don't want it"])
    assert replies[6] == (550, ["Your envelope sender is in my badmailfrom_patterns list"])
    assert replies[9][0] == 250


def test_async_names_of_the_old_async_server():
    result = run_session(["QUIT"], config={**BASE, "plugins": ["async/earlytalker wait 0", "rcpt_ok"]})
    assert result.smtp.plugins[0].plugin_name == "earlytalker"
