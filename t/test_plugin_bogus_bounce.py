"""bogus_bounce: log / deny / denysoft, several recipients, Return-Path."""

from policy_support import HELO, log_has, replies, session

TWO = HELO + ["MAIL FROM:<>", "RCPT TO:<a@example.test>", "RCPT TO:<b@example.test>", "DATA", "From: x", "", "b", "."]
ONE_RP = HELO + ["MAIL FROM:<>", "RCPT TO:<a@example.test>", "DATA", "Return-Path: <x@y.test>", "From: x", "", "b",
                 "."]
GOOD = HELO + ["MAIL FROM:<>", "RCPT TO:<a@example.test>", "DATA", "Return-Path: <>", "From: x", "", "b", "."]


def test_log_only():
    result = session(["bogus_bounce log"], TWO, loglevel="6")
    assert replies(result)[6].startswith("250 Queued")
    assert log_has(result, "fail, bogus bounce to: a@example.test,b@example.test")
    assert log_has(result, "fail, tolerated")


def test_default_is_log():
    assert replies(session(["bogus_bounce"], TWO))[6].startswith("250 Queued")


def test_deny():
    assert replies(session(["bogus_bounce deny"], TWO))[6] == \
        "552 fail, this bounce message does not have 1 recipient"
    assert replies(session(["bogus_bounce deny"], ONE_RP))[5] == \
        "552 a bounce return path must be empty (RFC 3834)"


def test_denysoft():
    assert replies(session(["bogus_bounce denysoft"], TWO))[6] == \
        "452 fail, this bounce message does not have 1 recipient"


def test_reject_arguments():
    assert replies(session(["bogus_bounce reject 1"], TWO))[6].startswith("552")
    assert replies(session(["bogus_bounce reject 1 reject_type temp"], TWO))[6].startswith("452")


def test_valid_bounce_and_normal_mail_pass():
    assert replies(session(["bogus_bounce deny"], GOOD))[5].startswith("250 Queued")
    normal = HELO + ["MAIL FROM:<a@b.test>", "RCPT TO:<a@example.test>", "RCPT TO:<b@example.test>", "DATA",
                     "From: x", "", "b", "."]
    assert replies(session(["bogus_bounce deny"], normal))[6].startswith("250 Queued")
