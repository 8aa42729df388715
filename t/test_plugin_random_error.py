"""random_error: failure rate argument and the connection note."""

from policy_support import HELO, replies, session


def test_always_fails_at_connect_with_100():
    got = replies(session(["random_error 100"], HELO, quit=False))
    assert got == ["450 random failure"]


def test_disabled_with_negative():
    got = replies(session(["random_error -1"], HELO + ["MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA",
                                                       "From: a", "", "b", "."]))
    assert all(not line.startswith("4") for line in got)


def test_note_overrides_rate(tmp_path):
    import os
    from qpsmtpd.testing import REPO_DIR, run_session
    (tmp_path / "rate.py").write_text("def hook_helo(self, t, h):\n    self.connection.notes['random_fail_%'] = 100\n")
    result = run_session(HELO + ["MAIL FROM:<a@b.test>"], config={"plugins": ["random_error -1", "rate"]},
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert replies(result)[2].endswith("random failure")


def test_too_many_arguments_fail_to_load():
    result = session(["random_error 1 2"], HELO)
    assert replies(result)[0].startswith("421")
    assert any("Invalid args: '1 2'" in line for line in result.log)
