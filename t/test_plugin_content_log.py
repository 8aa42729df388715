"""content_log: messages appended to a strftime-named file; enable switch."""

import time

from policy_support import RCPT, replies, session

MESSAGE = ["DATA", "Subject: logged", "", "body line", "."]


def test_message_appended(tmp_path):
    pattern = str(tmp_path / "mail-%Y")
    session(["content_log"], RCPT + MESSAGE + ["MAIL FROM:<c@d.test>", "RCPT TO:<x@example.test>"] + MESSAGE,
            content_log_file=pattern)
    text = (tmp_path / time.strftime("mail-%Y")).read_bytes()
    assert text.count(b"Subject: logged\n") == 2
    assert text.count(b"\nbody line\n") == 2
    assert b"Received: from" in text


def test_disabled(tmp_path):
    pattern = str(tmp_path / "log")
    got = replies(session(["content_log"], RCPT + MESSAGE, content_log_file=pattern, content_log_enabled="false"))
    assert got[5].startswith("250")
    assert not (tmp_path / "log").exists()


def test_unwritable_file_does_not_stop_mail(tmp_path):
    got = replies(session(["content_log"], RCPT + MESSAGE, content_log_file=str(tmp_path / "no" / "dir")))
    assert got[5].startswith("250 Queued")
