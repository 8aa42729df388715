"""The headers we add must be trustworthy: no forged Authentication-Results of ours, no client control characters."""

import base64
import os

from qpsmtpd.testing import REPO_DIR, run_session

BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"], "plugins": ["rcpt_ok"]}
ENVELOPE = ["MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA"]


def queued_header(lines, config=None, helo="HELO client.test"):
    result = run_session([helo, *ENVELOPE, *lines, ".", "QUIT"], config=dict(BASE, **(config or {})),
                         capture_queue=True)
    assert len(result.queued) == 1, result.output
    return result.queued[0].message.split(b"\n\n", 1)[0].decode("utf-8", "replace")


def test_forged_authentication_results_with_our_id_never_survive_a_dkim_signature_listing_it():
    """A client's A-R claiming our host, 'protected' by a fake DKIM-Signature's h=, is renamed."""
    header = queued_header([
        "DKIM-Signature: v=1; a=rsa-sha256; d=evil.test; s=x; h=from:subject:authentication-results; bh=AA=; b=AA=",
        "Authentication-Results: mx.example.test; dkim=pass header.d=bank.test; spf=pass",
        "From: <ceo@bank.test>", "Subject: pay", "", "body"])
    ours = [line for line in header.splitlines() if line.startswith("Authentication-Results:")]
    assert ours == ["Authentication-Results: mx.example.test; auth=none"], header
    assert "Original-Authentication-Results: mx.example.test; dkim=pass header.d=bank.test; spf=pass" in header


def test_other_hosts_results_covered_by_a_signature_are_kept():
    header = queued_header([
        "DKIM-Signature: v=1; d=list.test; h=from:authentication-results; b=AA=",
        "Authentication-Results: list.test; dkim=pass header.d=a.test",
        "From: <a@a.test>", "", "body"])
    assert "\nAuthentication-Results: list.test; dkim=pass header.d=a.test" in header


def test_without_a_signature_every_client_result_is_renamed():
    header = queued_header(["Authentication-Results: other.test; spf=pass", "", "body"])
    assert "Original-Authentication-Results: other.test; spf=pass" in header


def test_control_characters_from_helo_do_not_reach_the_received_header():
    for bad in ("\x0b", "\x1b", "\x00", "\u2028"):
        header = queued_header(["Subject: x", "", "b"], helo=f"HELO a{bad}b.test")
        received = next(line for line in header.splitlines() if line.startswith("Received:"))
        assert bad not in header
        assert "(HELO a?b.test)" in received, received


def test_an_auth_user_cannot_add_authentication_results_entries(tmp_path):
    (tmp_path / "anyone.py").write_text(
        "from qpsmtpd.constants import OK\n"
        "def hook_auth(self, transaction, mechanism, user, password, digest, ticket=None):\n"
        "    return OK\n")
    plain = base64.b64encode(b"\0joe; dkim=pass header.d=bank.test\0pw").decode()
    lines = ["EHLO client.test", f"AUTH PLAIN {plain}", *ENVELOPE, "Subject: x", "", "b", ".", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["anyone", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")], capture_queue=True)
    header = result.queued[0].message.split(b"\n\n", 1)[0].decode()
    ours = next(line for line in header.splitlines() if line.startswith("Authentication-Results:"))
    assert ours.count(";") == 1, ours
    assert ours.endswith("smtp.auth=joe??dkim=pass?header.d=bank.test"), ours  # one value, not a new entry
