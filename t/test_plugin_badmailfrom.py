"""badmailfrom: exact, @domain, regexp lines, reasons, reject 0/1/naughty, immunity, null sender."""

from policy_support import HELO, log_has, replies, session

LIST = ["spammer@bad.test", "@evil.test   No mail from evil", r"^verp-.*@bulk\.test$ VERP not welcome",
        "nodomain"]


def mail(sender, plugin="badmailfrom", **config):
    config.setdefault("badmailfrom", LIST)
    return replies(session([plugin], HELO + [f"MAIL FROM:{sender}"], **config))[2]


def test_exact_match_case_insensitive():
    assert mail("<spammer@bad.test>") == "550 Your envelope sender is in my badmailfrom list"
    assert mail("<SPAMMER@Bad.Test>") == "550 Your envelope sender is in my badmailfrom list"
    assert mail("<other@bad.test>").startswith("250")


def test_domain_with_reason():
    assert mail("<anyone@evil.test>") == "550 No mail from evil"
    assert mail("<anyone@sub.evil.test>").startswith("250")


def test_regexp_with_reason():
    assert mail("<verp-123@bulk.test>") == "550 VERP not welcome"
    assert mail("<x-verp-123@bulk.test>").startswith("250")


def test_line_without_at_is_ignored_with_warning():
    result = session(["badmailfrom"], HELO + ["MAIL FROM:<nodomain@x.test>"], badmailfrom=LIST)
    assert replies(result)[2].startswith("250")
    assert log_has(result, "no @ sign in nodomain")


def test_null_sender_and_empty_list():
    assert mail("<>").startswith("250")
    assert mail("<spammer@bad.test>", badmailfrom=[]).startswith("250")


def test_reject_zero_only_logs():
    result = session(["badmailfrom reject 0"], HELO + ["MAIL FROM:<spammer@bad.test>"], badmailfrom=LIST,
                     loglevel="6")
    assert replies(result)[2].startswith("250")
    assert log_has(result, "fail, tolerated")


def test_reject_type_temp():
    assert mail("<spammer@bad.test>", plugin="badmailfrom reject_type temp") == \
        "450 Your envelope sender is in my badmailfrom list"


def test_reject_type_disconnect():
    result = session(["badmailfrom reject_type disconnect"], HELO + ["MAIL FROM:<spammer@bad.test>"],
                     badmailfrom=LIST)
    assert replies(result)[-1] == "550 Your envelope sender is in my badmailfrom list"


def test_reject_naughty_defers_to_naughty_for_this_message_only():
    lines = HELO + ["MAIL FROM:<spammer@bad.test>", "RCPT TO:<x@example.test>",
                    "MAIL FROM:<good@ok.test>", "RCPT TO:<x@example.test>", "DATA", "Subject: x", "", "b", "."]
    result = session(["badmailfrom reject naughty", "naughty reject rcpt reject_type perm"], lines, badmailfrom=LIST)
    got = replies(result)
    assert got[2].startswith("250")
    assert got[3] == "550 (badmailfrom) Your envelope sender is in my badmailfrom list"
    assert got[4].startswith("250")
    assert got[5].startswith("250")
    assert got[-2].startswith("250 Queued")


def test_immune_relay_client():
    result = session(["relay", "badmailfrom"], HELO + ["MAIL FROM:<spammer@bad.test>"], badmailfrom=LIST,
                     env={"RELAYCLIENT": ""})
    assert replies(result)[2].startswith("250")


def test_karma():
    result = session(["badmailfrom reject 0"], HELO + ["MAIL FROM:<spammer@bad.test>"], badmailfrom=LIST,
                     loglevel="6")
    assert log_has(result, "karma -1 (-1)")
