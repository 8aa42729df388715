"""whitelist: hosts (prefix, CIDR, env), helo, senders, recipients, per_recipient with user_config."""

from policy_support import HELO, MAIL, replies, session

SPAMMY = {"badmailfrom": ["a@b.test"], "badrcptto": ["x@example.test"]}


def run(lines, plugins=("whitelist", "badmailfrom", "badrcptto"), **config):
    merged = dict(SPAMMY)
    merged.update(config)
    return replies(session(list(plugins), lines, **merged))


def test_without_whitelist_refused():
    assert run(MAIL)[2].startswith("550")


def test_whitelisted_host_prefix_and_cidr():
    assert run(MAIL, whitelisthosts=["192.0.2."])[2].startswith("250")
    assert run(MAIL, whitelisthosts=["192.0.2.0/28"])[2].startswith("250")
    assert run(MAIL, whitelisthosts=["192.0.3.0/24"])[2].startswith("550")
    assert run(MAIL, env={"WHITELISTCLIENT": "1"})[2].startswith("550")


def test_whitelisted_sender_is_immune_for_this_message_only():
    lines = MAIL + ["RCPT TO:<y@example.test>", "MAIL FROM:<c@d.test>", "RCPT TO:<x@example.test>"]
    got = run(lines, plugins=("whitelist", "badrcptto"), whitelistsenders=["b.test"])
    assert got[2].startswith("250") and got[3].startswith("250")
    assert got[5] == "550 mail to x@example.test not accepted here (#5.1.1)"
    got = run(MAIL + ["RCPT TO:<x@example.test>"], plugins=("whitelist", "badrcptto"), whitelistsenders=["a@b.test"])
    assert got[3].startswith("250")


def test_whitelisted_recipient_skips_later_rcpt_plugins_but_never_relays():
    got = run(HELO + ["MAIL FROM:<ok@c.test>", "RCPT TO:<x@example.test>", "RCPT TO:<x@foreign.test>"],
              whitelistrcpt=["x@example.test", "foreign.test"])
    assert got[3].startswith("250")
    assert got[4] == "550 Relaying denied (#5.7.1)"  # whitelisting skips checks, only relay decisions relay


def test_whitelisted_helo_skips_helo_checks():
    got = run(["HELO 198.51.100.1"], plugins=("whitelist", "helo"), whitelisthelo=["198.51.100.1"])
    assert got[1].startswith("250")
    got = run(["HELO 198.51.100.1"], plugins=("whitelist", "helo"), whitelisthelo=["other"])
    assert got[1].startswith("550")


def test_per_recipient_with_user_config(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "whitelistsenders").write_text("a@b.test\n")
    lines = MAIL + ["RCPT TO:<x@example.test>", "RCPT TO:<y@example.test>"]
    got = run(lines, plugins=(f"user_config {tmp_path}/%u", "whitelist per_recipient 1", "badrcptto"),
              badrcptto=["x@example.test", "y@example.test"])
    assert got[3].startswith("250")
    assert got[4] == "550 mail to y@example.test not accepted here (#5.1.1)"
    got = run(lines, plugins=(f"user_config {tmp_path}/%u", "whitelist per_recipient 1 merge 0", "badrcptto"),
              badrcptto=["x@example.test", "y@example.test"], whitelistsenders=["b.test"])
    assert got[3].startswith("250") and got[4].startswith("250")
