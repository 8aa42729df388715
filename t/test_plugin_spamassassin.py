"""spamassassin against Debian's real spamd (GTUBE as spam, a plain note as ham).

The failure cases use the real spamd frozen and killed, a closed port, and
peers written here where spamd cannot misbehave on demand (silence, garbage,
an answer cut short).
"""

import subprocess

import pytest

import components
from scanner_support import HAM, message, run_while_killing, scan_session, scripted_peer, silent_listener

pytestmark = pytest.mark.components

SPAM = components.GTUBE


@pytest.fixture(scope="module")
def spamd():
    with components.spamd(user_prefs={"tolerant@example.test": "required_score 2000\n"}) as daemon:
        yield daemon


def sa(spamd, *args: str) -> str:
    return " ".join(["spamassassin", "spamd_socket", f"127.0.0.1:{spamd.port}", *args])


def test_spam_at_the_threshold_is_refused(spamd):
    outcome = scan_session([sa(spamd, "reject 12")], message(SPAM))
    assert outcome.final == "552 spam score exceeded threshold"
    assert outcome.queued == []
    line = [line for line in outcome.lines_of("spamassassin") if "fail, Spam" in line][0]
    assert ">= 12" in line and "(127.0.0.1)" in line and "552 spam score exceeded threshold" in line


def test_reject_type_temp_defers(spamd):
    outcome = scan_session([sa(spamd, "reject 12 reject_type temp")], message(SPAM))
    assert outcome.final == "452 spam score exceeded threshold"
    assert outcome.queued == []


def test_old_reject_threshold_spelling(spamd):
    assert scan_session([sa(spamd, "reject_threshold 12")], message(SPAM)).final.startswith("552 ")


def test_ham_passes_with_spamd_headers_and_notes(spamd):
    outcome = scan_session([sa(spamd, "reject 12")], message(HAM))
    assert outcome.final.startswith("250 ")
    header = outcome.header()
    assert header.startswith("X-Spam-Checker-Version: SpamAssassin ")
    assert "\nX-Spam-Status: No, score=" in header
    assert "X-Spam-Level:" in header
    assert "X-Spam-Flag" not in header and "X-Spam-Report" not in header
    assert "X-Spam-User" not in header  # one recipient
    note = outcome.notes["spamassassin"]
    assert note["is_spam"] == "No" and float(note["score"]) < 5 and note["required"] == "5.0"
    assert "ALL_TRUSTED" in note["tests"] and note["autolearn"] == "disabled"
    assert outcome.notes["karma"] is None  # ham without autolearn: no karma change
    assert any("pass, Ham" in line and "< 12" in line for line in outcome.lines_of("spamassassin"))


def test_spam_below_the_threshold_is_accepted_marked_and_costs_karma(spamd):
    outcome = scan_session([sa(spamd, "reject 5000")], message(SPAM))
    assert outcome.final.startswith("250 ")
    header = outcome.header()
    assert "X-Spam-Flag: YES" in header and "X-Spam-Status: Yes, score=" in header
    assert "GTUBE" in header
    assert outcome.notes["karma"] == -1
    assert float(outcome.notes["spamassassin"]["score"]) >= 900  # GTUBE, minus ALL_TRUSTED
    assert any("fail, tolerated, Spam" in line for line in outcome.lines_of("spamassassin"))


def test_without_reject_nothing_is_refused(spamd):
    outcome = scan_session([sa(spamd)], message(SPAM))
    assert outcome.final.startswith("250 ")
    assert "X-Spam-Flag: YES" in outcome.header()


def test_subject_munging(spamd):
    outcome = scan_session([sa(spamd, "munge_subject_threshold 10")], message(SPAM, subject="offer"))
    assert "\nSubject: *** SPAM *** offer\n" in outcome.header()
    prefixed = scan_session([sa(spamd, "munge_subject_threshold 10 subject_prefix [SPAM]")],
                            message(SPAM, subject="offer"))
    assert "\nSubject: [SPAM] offer\n" in prefixed.header()
    from_config = scan_session([sa(spamd, "munge_subject_threshold 10")], message(SPAM, subject="offer"),
                               config={"subject_prefix": ["{spam}"]})
    assert "\nSubject: {spam} offer\n" in from_config.header()
    ham = scan_session([sa(spamd, "munge_subject_threshold 10")], message(HAM, subject="lunch"))
    assert "\nSubject: lunch\n" in ham.header()


def test_subject_not_munged_below_the_threshold(spamd):
    outcome = scan_session([sa(spamd, "munge_subject_threshold 5000")], message(SPAM, subject="offer"))
    assert "\nSubject: offer\n" in outcome.header()


def test_userprefs_threshold_comes_from_the_recipients_preferences(spamd):
    """spamd_user vpopmail: the single recipient is spamd's user; tolerant@ has required_score 2000."""
    plugin = sa(spamd, "reject userprefs spamd_user vpopmail")
    tolerant = scan_session([plugin], message(SPAM), recipients=("tolerant@example.test",))
    assert tolerant.final.startswith("250 ")
    assert tolerant.notes["spamassassin"]["required"] == "2000.0"
    strict = scan_session([plugin], message(SPAM), recipients=("strict@example.test",))
    assert strict.final == "552 spam score exceeded threshold"


def test_several_recipients_keep_spamd_user_and_get_x_spam_user(spamd):
    plugin = sa(spamd, "reject userprefs spamd_user vpopmail")
    outcome = scan_session([plugin], message(SPAM), recipients=("tolerant@example.test", "strict@example.test"))
    assert outcome.final == "552 spam score exceeded threshold"  # vpopmail's (default) prefs, not tolerant@'s
    ham = scan_session([plugin], message(HAM, extra=["X-Spam-User: forged"]),
                       recipients=("tolerant@example.test", "strict@example.test"))
    header = ham.header()
    assert "\nX-Spam-User: vpopmail, 2 recipients\n" in header
    assert "X-Old-Spam-User: forged" in header


OLD = ["X-Spam-Status: Yes, score=99.0 required=1.0", "X-Spam-Flag: YES"]


@pytest.mark.parametrize("mode, present, absent", [
    ("rename", ["X-Old-Spam-Status: Yes, score=99.0 required=1.0", "X-Old-Spam-Flag: YES"], ["X-Spam-Flag: YES"]),
    ("drop", [], ["score=99.0", "X-Old-Spam", "X-Spam-Flag: YES"]),
    ("keep", ["X-Spam-Status: Yes, score=99.0 required=1.0", "X-Spam-Flag: YES"], ["X-Old-Spam"]),
])
def test_leave_old_headers(spamd, mode, present, absent):
    outcome = scan_session([sa(spamd, f"leave_old_headers {mode}")], message(HAM, extra=OLD))
    header = outcome.header()
    assert header.startswith("X-Spam-Checker-Version:")
    assert header.count("X-Spam-Status: No, score=") == 1
    for text in present:
        assert text in header
    for text in absent:
        assert text not in header
    assert outcome.notes["spamassassin"]["is_spam"] == "No"  # our result, never the forged one


def test_default_is_rename(spamd):
    assert "X-Old-Spam-Status: Yes, score=99.0" in scan_session([sa(spamd)], message(HAM, extra=OLD)).header()


def test_headers_none_adds_nothing_but_still_rejects(spamd):
    ham = scan_session([sa(spamd, "headers none reject 12 munge_subject_threshold 1")], message(HAM, extra=OLD))
    header = ham.header()
    assert "X-Spam-Checker-Version" not in header and "X-Old-Spam" not in header
    assert "X-Spam-Status: Yes, score=99.0" in header  # left as it came
    assert ham.notes["spamassassin"]["is_spam"] == "No"
    spam = scan_session([sa(spamd, "headers none reject 12")], message(SPAM))
    assert spam.final == "552 spam score exceeded threshold"


def test_size_limit(spamd):
    big = message(SPAM + "\n" + "\n".join(["filler line of a longer message"] * 40))
    outcome = scan_session([sa(spamd, "reject 12 size_limit 1000")], big)
    assert outcome.final.startswith("250 ")
    assert "X-Spam-" not in outcome.header()
    assert any("skip, too large" in line for line in outcome.lines_of("spamassassin"))


def test_relay_clients_are_not_scanned(spamd):
    outcome = scan_session(["relay", sa(spamd, "reject 12 relayclient skip")], message(SPAM),
                           config={"relayclients": ["127.0.0.1"]})
    assert outcome.final.startswith("250 ")
    assert "X-Spam-" not in outcome.header()
    assert any("skip, relay client" in line for line in outcome.lines_of("spamassassin"))


def test_unix_socket(spamd, tmp_path):
    """spamd_socket with a slash is a unix socket: socat puts the real spamd behind one."""
    path = tmp_path / "spamd.sock"
    relay = subprocess.Popen([components.find_binary("socat"), f"UNIX-LISTEN:{path},fork",
                              f"TCP:127.0.0.1:{spamd.port}"], stderr=subprocess.DEVNULL)
    try:
        components.wait_for(path.exists, 5, "socat's unix socket")
        spam = scan_session([f"spamassassin spamd_socket {path} reject 12"], message(SPAM))
        ham = scan_session([f"spamassassin spamd_socket {path} reject 12"], message(HAM))
    finally:
        relay.terminate()
        relay.wait(5)
    assert spam.final == "552 spam score exceeded threshold"
    assert ham.final.startswith("250 ") and "X-Spam-Status: No" in ham.header()


# -- spamd failing ------------------------------------------------------------------

def test_spamd_down_accepts_unscanned():
    with silent_listener() as address:
        port = int(address.rsplit(":", 1)[1])
    outcome = scan_session([f"spamassassin spamd_socket 127.0.0.1:{port} reject 12"], message(SPAM))
    assert outcome.final.startswith("250 ")
    assert "X-Spam-" not in outcome.header()
    line = [line for line in outcome.lines_of("spamassassin") if "error" in line][0]
    assert "Connection refused" in line and "accepted unscanned (127.0.0.1)" in line


def test_spamd_down_with_defer_on_error():
    outcome = scan_session(["spamassassin spamd_socket /nonexistent/spamd.sock reject 12 defer_on_error yes"],
                           message(HAM))
    assert outcome.final == "451 Unable to scan for spam"
    assert outcome.queued == []


def test_silent_spamd_times_out_within_the_limit():
    with silent_listener() as address:
        outcome = scan_session([f"spamassassin spamd_socket {address} timeout 1 defer_on_error yes"], message(HAM))
    assert outcome.final == "451 Unable to scan for spam"
    assert 0.9 < outcome.seconds < 3
    assert any("no answer within 1s" in line for line in outcome.lines_of("spamassassin"))


def test_silent_spamd_is_cut_before_the_plugin_timeout():
    """timeout 20 but plugin_timeout 2: the plugin gives up after 1 s with its own outcome, not 'Internal error'."""
    with silent_listener() as address:
        outcome = scan_session([f"spamassassin spamd_socket {address}"], message(HAM),
                               config={"plugin_timeout": ["2"]})
    assert outcome.final.startswith("250 ")
    assert outcome.seconds < 3
    assert len(outcome.queued) == 1


@pytest.mark.parametrize("answer, reason", [
    (b"HTTP/1.0 400 Bad Request\r\n\r\n", "garbage from"),
    (b"SPAMD/1.1 76 Bad header line: (Content-Length mismatch)\r\n", "answered"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 400\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nX-Spam-Status: Yes, sc",
     "mid-answer"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-len", "mid-answer"),
    (b"", "without an answer"),
])
def test_broken_answers_are_an_error_never_a_half_result(answer, reason):
    with scripted_peer(answer) as address:
        accepted = scan_session([f"spamassassin spamd_socket {address} reject 1"], message(SPAM))
        deferred = scan_session([f"spamassassin spamd_socket {address} reject 1 defer_on_error 1"], message(SPAM))
    assert accepted.final.startswith("250 ") and len(accepted.queued) == 1
    assert "X-Spam-" not in accepted.header()
    assert any(reason in line for line in accepted.lines_of("spamassassin")), accepted.lines_of("spamassassin")
    assert deferred.final == "451 Unable to scan for spam" and deferred.queued == []


def test_spamd_killed_mid_scan():
    with components.spamd() as victim:
        outcome = run_while_killing(victim, lambda: scan_session(
            [f"spamassassin spamd_socket 127.0.0.1:{victim.port} reject 12 defer_on_error yes"], message(SPAM)))
    assert outcome.final == "451 Unable to scan for spam"
    assert outcome.queued == []
    assert outcome.seconds < 5


@pytest.mark.parametrize("status, karma, verdict", [
    ("Yes, score=20.0 required=5.0 tests=GTUBE autolearn=spam version=4.0.1", -2, "fail, tolerated, Spam, 20.0 < 50, learn=spam"),
    ("No, score=-3.0 required=5.0 tests=ALL_TRUSTED autolearn=ham version=4.0.1", 1, "pass, Ham, -3.0 < 50, learn=ham"),
    ("No, hits=1.5 required=5.0 tests=NONE autolearn=no", None, "pass, Ham, 1.5 < 50, learn=no"),
])
def test_karma_follows_spam_and_autolearn(status, karma, verdict):
    """spamd's answer comes from a peer written here: the real spamd's autolearn needs a trained Bayes database."""
    fields = f"X-Spam-Status: {status}\n\n".encode()
    answer = b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: x\r\n\r\n" % len(fields) + fields
    with scripted_peer(answer) as address:
        outcome = scan_session([f"spamassassin spamd_socket {address} reject 50"], message(HAM))
    assert outcome.final.startswith("250 ")
    assert outcome.notes["karma"] == karma
    assert any(verdict in line for line in outcome.lines_of("spamassassin")), outcome.lines_of("spamassassin")


def test_slow_spamd_is_given_up_at_the_timeout():
    """A peer that answers one byte every 0.2 s (no real spamd can be made that slow): the deadline
    covers the whole exchange, so the trickle cannot stretch it."""
    fields = b"X-Spam-Status: No, score=0.0 required=5.0 tests=NONE autolearn=no\n\n"
    answer = b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\n\r\n" % len(fields) + fields
    with scripted_peer(answer, trickle=0.2) as address:
        outcome = scan_session([f"spamassassin spamd_socket {address} timeout 1"], message(HAM))
    assert outcome.final.startswith("250 ") and "X-Spam-" not in outcome.header()
    assert outcome.seconds < 2.5
    assert any("no answer within 1s" in line for line in outcome.lines_of("spamassassin"))
