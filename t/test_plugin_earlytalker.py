"""earlytalker: talking before the greeting / before 354, through the real qpsmtpd.py process."""

import time

from sessionfile import run_session_file

from policy_support import replies, session

GREET = "S: 220 mx.example.test ESMTP qpsmtpd {version} ready; send us your mail, but not your spam."
HI = "S: 250 mx.example.test Hi [192.0.2.1] [192.0.2.1]; I am so happy to meet you."
BYE = "S: 221 mx.example.test closing connection. Have a wonderful day."
MAILOK = "S: 250 <a@b.test>, sender OK - how exciting to get mail from you!"


def play(tmp_path, plugin, dialogue):
    spec = tmp_path / "session.toml"
    spec.write_text("dialogue = '''\n" + "\n".join(dialogue) + "\n'''\n[config]\nme = \"mx.example.test\"\n"
                    f"rcpthosts = [\"example.test\"]\nplugins = [\"{plugin}\", \"rcpt_ok\"]\n"
                    "[env]\nTCPREMOTEIP = \"192.0.2.1\"\n")
    return run_session_file(str(spec))


def test_patient_client_waits_and_passes(tmp_path):
    start = time.monotonic()
    play(tmp_path, "earlytalker wait 0.5", [GREET, "C: HELO client.test", HI, "C: QUIT", BYE])
    assert time.monotonic() - start >= 0.5


def test_early_talker_refused(tmp_path):
    play(tmp_path, "earlytalker wait 2", ["C: HELO client.test",
                                          "S: 550 Connecting host started transmitting before SMTP greeting"])


def test_early_talker_temp(tmp_path):
    play(tmp_path, "earlytalker wait 2 reject_type temp",
         ["C: HELO client.test", "S: 450 Connecting host started transmitting before SMTP greeting"])


def test_defer_reject_refuses_at_mail(tmp_path):
    play(tmp_path, "earlytalker wait 2 defer-reject 1",
         ["C: HELO client.test", GREET, HI, "C: MAIL FROM:<a@b.test>",
          "S: 550 Connecting host started transmitting before SMTP greeting", "C: QUIT", BYE])


def test_reject_zero_only_logs(tmp_path):
    play(tmp_path, "earlytalker wait 2 reject 0", ["C: HELO client.test", GREET, HI, "C: QUIT", BYE])


def test_check_at_data(tmp_path):
    play(tmp_path, "earlytalker wait 0.3 check-at DATA",
         [GREET, "C: HELO client.test", HI, "C: MAIL FROM:<a@b.test>", MAILOK,
          "C: RCPT TO:<x@example.test>", "S: 250 <x@example.test>, recipient ok",
          "C: DATA", "C: Subject: too early",
          "S: 554 Connecting host started transmitting before SMTP greeting",
          "S: 500 Unrecognized command", "C: QUIT", BYE])


def test_check_at_data_patient_client(tmp_path):
    play(tmp_path, "earlytalker wait 0.3 check-at DATA",
         [GREET, "C: HELO client.test", HI, "C: MAIL FROM:<a@b.test>", MAILOK,
          "C: RCPT TO:<x@example.test>", "S: 250 <x@example.test>, recipient ok",
          "C: DATA", "S: 354 go ahead", "C: Subject: x", "C:", "C: b", "C: .",
          "S: 451 Queuing declined or disabled; try again later", "C: QUIT", BYE])


def test_relay_client_not_delayed():
    got = replies(session(["relay", "earlytalker wait 5"], ["HELO c.test"], env={"RELAYCLIENT": ""}))
    assert got[0].startswith("220")


def test_karma_history_skips(tmp_path):
    import os
    from qpsmtpd.testing import REPO_DIR, run_session
    (tmp_path / "karma.py").write_text("def hook_connect(self, t):\n    self.connection.notes['karma_history'] = 6\n")
    result = run_session(["HELO c.test", "QUIT"], config={"plugins": ["karma", "earlytalker wait 5"]},
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert replies(result)[0].startswith("220")


def test_in_process_scripted_client_counts_as_early():
    assert replies(session(["earlytalker"], ["HELO c.test"]))[0] == \
        "550 Connecting host started transmitting before SMTP greeting"
