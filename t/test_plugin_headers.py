"""headers: required and singular headers, Date windows, reject modes, immunity, no leak between messages."""

import email.utils
import time

from policy_support import RCPT, log_has, replies, session


def end_of_data(plugin, header_lines, extra_lines=(), **config):
    lines = RCPT + ["DATA"] + list(header_lines) + ["", "body", "."] + list(extra_lines)
    return replies(session([plugin], lines, **config))


def date(days):
    return "Date: " + email.utils.formatdate(time.time() + days * 86400)


def test_good_message_passes():
    assert end_of_data("headers", ["From: a@b.test", "Subject: ok"])[5].startswith("250 Queued")


def test_missing_from():
    assert end_of_data("headers", ["Subject: no from"])[5] == "552 We require a valid From header"


def test_empty_from():
    assert end_of_data("headers", ["From:  ", "Subject: x"])[5] == "552 We require a valid From header"


def test_require_list():
    got = end_of_data("headers require From,Date,Message-ID", ["From: a@b.test", "Subject: x"])
    assert got[5] == "552 We require a valid Date header | We require a valid Message-ID header"


def test_singular_headers():
    got = end_of_data("headers", ["From: a@b.test", "Subject: one", "subject: two", "To: x", "To: y"])
    assert got[5] == ("552 Only one To header allowed. See RFC 5322, Section 3.6 | "
                      "Only one Subject header allowed. See RFC 5322, Section 3.6")


def test_date_windows():
    assert end_of_data("headers past 5", ["From: a@b.test", date(-6)])[5] == \
        "552 The Date header is too far in the past"
    assert end_of_data("headers past 5", ["From: a@b.test", date(-4)])[5].startswith("250")
    assert end_of_data("headers future 1", ["From: a@b.test", date(2)])[5] == \
        "552 The Date header is too far in the future"
    assert end_of_data("headers future 1", ["From: a@b.test", date(0.5)])[5].startswith("250")
    assert end_of_data("headers", ["From: a@b.test", date(-400)])[5].startswith("250")
    assert end_of_data("headers past 1", ["From: a@b.test", "Date: not a date"])[5].startswith("250")


def test_reject_zero_and_temp():
    assert end_of_data("headers reject 0", ["Subject: x"])[5].startswith("250")
    assert end_of_data("headers reject_type temp", ["Subject: x"])[5] == "452 We require a valid From header"


def test_reject_naughty_rejects_this_message_not_the_next():
    lines = RCPT + ["DATA", "Subject: bad", "", "b", ".",
                    "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA", "From: a@b.test", "", "b", "."]
    got = replies(session(["headers reject naughty", "naughty reject data_post"], lines))
    assert got[5] == "552 (headers) We require a valid From header"
    assert got[6].startswith("250") and got[7].startswith("250") and got[8].startswith("354")
    assert got[9].startswith("250 Queued")


def test_rejection_does_not_leak_into_next_message_with_naughty_loaded():
    lines = RCPT + ["DATA", "Subject: bad", "", "b", ".",
                    "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA", "From: a@b.test", "", "b", "."]
    got = replies(session(["headers", "naughty reject data"], lines))
    assert got[5] == "552 We require a valid From header"
    assert got[8] == "354 go ahead"
    assert got[9].startswith("250 Queued")


def test_immune_relay_client():
    result = session(["relay", "headers"], RCPT + ["DATA", "Subject: x", "", "b", "."], env={"RELAYCLIENT": ""})
    assert replies(result)[5].startswith("250")


def test_karma():
    result = session(["headers reject 0"], RCPT + ["DATA", "Subject: x", "Subject: y", "", "b", "."], loglevel="6")
    assert log_has(result, "karma -1 (-2)")
