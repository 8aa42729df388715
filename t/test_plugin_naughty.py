"""naughty: the reject stage, reject_type, per-connection and per-message marks, AUTH clearing."""

from policy_support import HELO, MAIL, RCPT, replies, session

LISTED = {"badmailfrom": ["a@b.test"]}


def test_default_stage_rcpt_disconnects():
    got = replies(session(["badmailfrom reject naughty", "naughty"], RCPT, **LISTED))
    assert got[2].startswith("250")
    assert got[3] == "550 (badmailfrom) Your envelope sender is in my badmailfrom list"
    assert len(got) == 4


def test_mail_stage():
    got = replies(session(["badmailfrom reject naughty", "naughty reject mail"], MAIL, **LISTED))
    assert got[2] == "550 (badmailfrom) Your envelope sender is in my badmailfrom list"


def test_data_stage_and_reject_type_temp():
    got = replies(session(["badmailfrom reject naughty", "naughty reject data reject_type temp"],
                          RCPT + ["DATA"], **LISTED))
    assert got[3].startswith("250")
    assert got[4] == "451 (badmailfrom) Your envelope sender is in my badmailfrom list"
    assert got[5].startswith("221")


def test_plugin_reject_type_wins():
    got = replies(session(["badmailfrom reject naughty reject_type temp", "naughty reject mail"], MAIL, **LISTED))
    assert got[2] == "450 (badmailfrom) Your envelope sender is in my badmailfrom list"


def test_connect_stage_with_connection_mark(tmp_path):
    (tmp_path / "mark.py").write_text("def hook_connect(self, t):\n    return self.get_reject('listed at connect')\n")
    import os
    from qpsmtpd.testing import REPO_DIR, run_session
    result = run_session(["QUIT"], config={"plugins": ["mark reject naughty", "naughty reject connect"]},
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert replies(result) == ["550 (mark) listed at connect"]


def test_connection_mark_lasts_for_every_message(tmp_path):
    (tmp_path / "mark.py").write_text("def hook_helo(self, t, h):\n    return self.get_reject('bad helo')\n")
    import os
    from qpsmtpd.testing import REPO_DIR, run_session
    result = run_session(HELO + ["MAIL FROM:<a@b.test>", "RSET", "MAIL FROM:<c@d.test>", "QUIT"],
                         config={"plugins": ["mark reject naughty", "naughty reject mail reject_type perm"]},
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    got = replies(result)
    assert got[2] == "550 (mark) bad helo" and got[4] == "550 (mark) bad helo"


def test_several_marks_give_several_lines():
    got = replies(session(["badmailfrom reject naughty", "badmailfrom:1 reject naughty", "naughty reject mail"],
                          MAIL, **LISTED))
    assert got[2] == ("550 (badmailfrom) Your envelope sender is in my badmailfrom list | "
                      "(badmailfrom_3a1) Your envelope sender is in my badmailfrom list")


def test_data_post_safety_net():
    got = replies(session(["badmailfrom reject naughty", "whitelist", "naughty reject rcpt"],
                          RCPT + ["DATA", "Subject: x", "", "b", "."], whitelistrcpt=["x@example.test"], **LISTED))
    assert got[3].startswith("250")
    assert got[5] == "552 (badmailfrom) Your envelope sender is in my badmailfrom list"


def test_clean_passes():
    got = replies(session(["badmailfrom reject naughty", "naughty reject data"],
                          HELO + ["MAIL FROM:<ok@b.test>", "RCPT TO:<x@example.test>", "DATA", "Subject: x", "",
                                  "b", "."], **LISTED))
    assert got[-2].startswith("250 Queued")


def test_invalid_stage_falls_back_to_data_post():
    got = replies(session(["badmailfrom reject naughty", "naughty reject bogus"],
                          RCPT + ["DATA", "Subject: x", "", "b", "."], **LISTED))
    assert got[5] == "552 (badmailfrom) Your envelope sender is in my badmailfrom list"
