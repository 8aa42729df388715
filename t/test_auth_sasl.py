"""SMTP AUTH in-process: PLAIN, LOGIN, CRAM-MD5, every failure path, the
failure counter, the hooks' arguments, and the headers AUTH produces."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time

import pytest
from qpsmtpd.testing import run_session

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins")
GOOD = "good@example.test"
IP = "192.0.2.1"
PLAIN_OK = base64.b64encode(f"\0{GOOD}\0secret".encode()).decode()
MESSAGE = ["DATA", "Subject: hi", "", "body", "."]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def config(**extra) -> dict:
    plugins = extra.pop("plugins", ["auth/auth_flat_file", "rcpt_ok"])
    return {"plugins": plugins, "flat_auth_pw": [f"{GOOD}:secret", "Other@Example.test:pa:ss"],
            "me": "mx.example.test", "rcpthosts": ["example.test"], "loglevel": "7", **extra}


def session(lines, **extra):
    return run_session(["EHLO client.test", *lines, "QUIT"], config=config(**extra), capture_queue=True)


def replies_after_ehlo(result) -> list[str]:
    """Each reply after the EHLO one, as 'code text' (multi-line joined with |)."""
    return [f"{code} {'|'.join(lines)}" for code, lines in result.replies()[2:-1]]


# -- advertising ----------------------------------------------------------------
def test_mechanisms_advertised_from_registered_hooks():
    result = session([])
    assert result.replies()[1][1][-1] == "AUTH PLAIN LOGIN CRAM-MD5"


def test_bare_auth_hook_offers_all_three():
    result = session([], plugins=["auth/authdeny"])
    assert result.replies()[1][1][-1] == "AUTH PLAIN CRAM-MD5 LOGIN"


def test_no_auth_plugin_no_auth():
    result = session([f"AUTH PLAIN {PLAIN_OK}"], plugins=["rcpt_ok"])
    assert all(not line.startswith("AUTH") for line in result.replies()[1][1])
    assert replies_after_ehlo(result) == ["500 Unrecognized command"]


def test_auth_before_ehlo_and_after_helo_is_unknown():
    result = run_session([f"AUTH PLAIN {PLAIN_OK}", "HELO client.test", f"AUTH PLAIN {PLAIN_OK}", "QUIT"],
                         config=config())
    assert result.codes() == [220, 500, 250, 500, 221]


# -- PLAIN --------------------------------------------------------------------------
def test_plain_initial_response_success_and_relay():
    result = session([f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<a@b.test>", "RCPT TO:<x@elsewhere.test>", *MESSAGE])
    assert replies_after_ehlo(result)[:3] == [
        "235 2.7.0 PLAIN authentication successful for good@example.test - auth_flat_file",
        "250 <a@b.test>, sender OK - how exciting to get mail from you!",
        "250 <x@elsewhere.test>, recipient ok"]
    assert result.smtp.auth_user == GOOD and result.smtp.auth_mechanism == "plain"
    assert len(result.queued) == 1


def test_plain_continuation_success():
    result = session(["AUTH PLAIN", PLAIN_OK])
    assert result.output.count(b"\r\n334 \r\n") == 1
    assert replies_after_ehlo(result) == [
        "334 ", "235 2.7.0 PLAIN authentication successful for good@example.test - auth_flat_file"]


def test_plain_lower_case_mechanism_and_authzid_equal_user():
    result = session(["AUTH plain " + b64(f"{GOOD}\0{GOOD}\0secret")])
    assert replies_after_ehlo(result)[0].startswith("235 2.7.0 PLAIN authentication successful")


def test_user_names_compared_literally_not_as_regexp():
    result = session(["AUTH PLAIN " + b64("\0g..d@example.test\0secret"),
                      "AUTH PLAIN " + b64("\0.*@example.test\0secret")])
    assert replies_after_ehlo(result) == [
        f"535 5.7.8 PLAIN authentication failed for g..d@example.test from {IP}",
        f"535 5.7.8 PLAIN authentication failed for .*@example.test from {IP}"]


def test_user_name_case_and_colon_in_password():
    result = session(["AUTH PLAIN " + b64("\0other@example.TEST\0pa:ss")])
    assert replies_after_ehlo(result)[0] == \
        "235 2.7.0 PLAIN authentication successful for other@example.TEST - auth_flat_file"


@pytest.mark.parametrize("payload, reply", [
    (b64(f"\0{GOOD}\0wrong"),
     f"535 5.7.8 PLAIN authentication failed for {GOOD} from {IP} - auth_flat_file - wrong password"),
    (b64("\0nobody@example.test\0secret"), f"535 5.7.8 PLAIN authentication failed for nobody@example.test from {IP}"),
    (b64("\0nodomain\0secret"), f"535 5.7.8 PLAIN authentication failed for nodomain from {IP}"),
    (b64(f"x\0{GOOD}\0secret"), f"535 5.7.8 Authentication invalid for {GOOD}"),
    (b64("\0\0secret"), "535 5.7.8 Authentication invalid"),
    (b64("x\0\0secret"), "535 5.7.8 Authentication invalid (x)"),
    (b64(f"\0{GOOD}\0"), "535 5.7.8 Authentication invalid"),
    (b64(f"{GOOD}secret"), "535 5.7.8 Authentication invalid"),
    (b64(f"\0{GOOD}\0secret\0more"), "535 5.7.8 Authentication invalid"),
    ("=", "535 5.7.8 Authentication invalid"),
    ("!!!!", "501 5.5.2 Cannot decode response"),
    ("AGdvb2Q", "501 5.5.2 Cannot decode response"),
    (b64("\0a\r\nb@x\0y"), "535 5.7.8 PLAIN authentication failed for a??b@x from 192.0.2.1"),
])
def test_plain_failures(payload, reply):
    result = session([f"AUTH PLAIN {payload}", "NOOP"])
    assert replies_after_ehlo(result) == [reply, "250 OK"]
    assert not result.smtp.authenticated() and not result.smtp.connection.relay_client


def test_plain_continuation_failures():
    result = session(["AUTH PLAIN", "*", "AUTH PLAIN", "%%%", "AUTH PLAIN", b64(f"\0{GOOD}\0bad")],
                     max_auth_failures="0")
    assert replies_after_ehlo(result) == [
        "334 ", "501 5.7.0 Authentication canceled",
        "334 ", "501 5.5.2 Cannot decode response",
        "334 ", f"535 5.7.8 PLAIN authentication failed for {GOOD} from {IP} - auth_flat_file - wrong password"]


# -- LOGIN --------------------------------------------------------------------------
def test_login_two_steps():
    result = session(["AUTH LOGIN", b64(GOOD), b64("secret")])
    assert replies_after_ehlo(result) == [
        "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6",
        "235 2.7.0 LOGIN authentication successful for good@example.test - auth_flat_file"]


def test_login_initial_response():
    result = session([f"AUTH LOGIN {b64(GOOD)}", b64("secret")])
    assert replies_after_ehlo(result) == [
        "334 UGFzc3dvcmQ6", "235 2.7.0 LOGIN authentication successful for good@example.test - auth_flat_file"]


@pytest.mark.parametrize("lines, replies", [
    (["AUTH LOGIN", "*"], ["334 VXNlcm5hbWU6", "501 5.7.0 Authentication canceled"]),
    (["AUTH LOGIN", b64(GOOD), "*"], ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "501 5.7.0 Authentication canceled"]),
    (["AUTH LOGIN", "@@"], ["334 VXNlcm5hbWU6", "501 5.5.2 Cannot decode response"]),
    (["AUTH LOGIN", b64(GOOD), "@@"], ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "501 5.5.2 Cannot decode response"]),
    (["AUTH LOGIN", ""], ["334 VXNlcm5hbWU6", "535 5.7.8 Authentication invalid"]),
    (["AUTH LOGIN", b64(GOOD), ""], ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "535 5.7.8 Authentication invalid"]),
    (["AUTH LOGIN ***"], ["501 5.5.2 Cannot decode response"]),
    ([f"AUTH LOGIN {b64(GOOD)}", b64("nope")],
     ["334 UGFzc3dvcmQ6",
      f"535 5.7.8 LOGIN authentication failed for {GOOD} from {IP} - auth_flat_file - wrong password"]),
])
def test_login_failures(lines, replies):
    result = session([*lines, "NOOP"])
    assert replies_after_ehlo(result) == [*replies, "250 OK"]


# -- CRAM-MD5 -----------------------------------------------------------------------
@pytest.fixture
def fixed_ticket(monkeypatch):
    monkeypatch.setattr(secrets, "randbelow", lambda n: 0xABCDEF)
    monkeypatch.setattr(time, "time", lambda: 0x6B000000)
    return "<abcdef.6b000000@mx.example.test>"


def cram_answer(ticket: str, user: str, password: str) -> str:
    digest = hmac.new(password.encode(), ticket.encode(), hashlib.md5).hexdigest()
    return b64(f"{user} {digest}")


def test_cram_md5_success(fixed_ticket):
    result = session(["AUTH CRAM-MD5", cram_answer(fixed_ticket, GOOD, "secret")])
    assert replies_after_ehlo(result) == [
        "334 " + b64(fixed_ticket),
        "235 2.7.0 CRAM-MD5 authentication successful for good@example.test - auth_flat_file"]


def test_cram_md5_ticket_is_fresh():
    first, second = (session(["AUTH CRAM-MD5", "*"]).replies()[2][1][0] for _ in range(2))
    assert first != second
    assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]+@mx\.example\.test>", base64.b64decode(first).decode())


@pytest.mark.parametrize("answer, reply", [
    ("*", "501 5.7.0 Authentication canceled"),
    ("%%", "501 5.5.2 Cannot decode response"),
    (b64(GOOD), "504 5.5.2 Invalid authentication string"),
    (b64(f"{GOOD} nothex"), "504 5.5.2 Invalid authentication string"),
    (b64(" " + "0" * 32), "504 5.5.2 Invalid authentication string"),
    (b64(f"{GOOD} " + "0" * 32),
     f"535 5.7.8 CRAM-MD5 authentication failed for {GOOD} from {IP} - auth_flat_file - wrong password"),
])
def test_cram_md5_failures(fixed_ticket, answer, reply):
    result = session(["AUTH CRAM-MD5", answer, "NOOP"])
    assert replies_after_ehlo(result) == ["334 " + b64(fixed_ticket), reply, "250 OK"]


def test_cram_md5_wrong_password_digest(fixed_ticket):
    result = session(["AUTH CRAM-MD5", cram_answer(fixed_ticket, GOOD, "secreT")])
    assert replies_after_ehlo(result)[1].startswith("535 5.7.8 CRAM-MD5 authentication failed")


# -- state -------------------------------------------------------------------------
def test_auth_twice_and_unknown_mechanisms():
    result = session(["AUTH", "AUTH FOO", f"AUTH PLAIN {PLAIN_OK}", "AUTH LOGIN"])
    assert replies_after_ehlo(result) == [
        "504 Unimplemented authentication mechanism: ",
        "504 Unimplemented authentication mechanism: foo",
        "235 2.7.0 PLAIN authentication successful for good@example.test - auth_flat_file",
        "503 but you already said AUTH ..."]


def test_auth_inside_a_mail_transaction_is_503():
    result = session(["MAIL FROM:<a@b.test>", f"AUTH PLAIN {PLAIN_OK}", "RSET", f"AUTH PLAIN {PLAIN_OK}"])
    assert replies_after_ehlo(result)[1:] == [
        "503 5.5.1 AUTH not permitted during a mail transaction", "250 OK",
        "235 2.7.0 PLAIN authentication successful for good@example.test - auth_flat_file"]


def test_mechanism_without_plugin_is_504():
    result = session(["AUTH CRAM-MD5"], plugins=["auth/auth_checkpassword checkpw /bin/true true /bin/true"])
    assert replies_after_ehlo(result) == ["504 Unimplemented authentication mechanism: cram-md5"]


def test_eof_during_exchange_ends_session_quietly():
    result = run_session(["EHLO client.test", "AUTH LOGIN"], config=config())
    assert result.codes() == [220, 250, 334]
    assert not any("Traceback" in line or "FATAL" in line for line in result.log)


def test_overlong_continuation_line():
    result = session(["AUTH PLAIN", "A" * 20000, "NOOP"])
    assert replies_after_ehlo(result) == ["334 ", "500 5.5.6 Authentication exchange line too long", "250 OK"]


# -- failure counter -------------------------------------------------------------------
def test_three_failures_disconnect():
    bad = "AUTH PLAIN " + b64(f"\0{GOOD}\0bad")
    result = session([bad, bad, bad, "NOOP"])
    assert replies_after_ehlo(result) + [f"{c}" for c, _ in result.replies()[-1:]] == [
        f"535 5.7.8 PLAIN authentication failed for {GOOD} from {IP} - auth_flat_file - wrong password"] * 2 + [
        "421"]
    assert result.replies()[-1] == (421, ["4.7.0 mx.example.test Too many failed authentication attempts; "
                                          "closing connection"])
    assert result.codes().count(250) == 1  # the NOOP was never answered


def test_failure_limit_is_configurable_and_cancels_do_not_count():
    bad = "AUTH PLAIN " + b64(f"\0{GOOD}\0bad")
    result = session(["AUTH LOGIN", "*"] * 4 + [bad] * 4 + [f"AUTH PLAIN {PLAIN_OK}"], max_auth_failures="5")
    assert result.codes()[-2:] == [235, 221]
    result = session([bad] * 6 + ["NOOP"], max_auth_failures="0")
    assert result.codes()[-2:] == [250, 221]
    result = session([bad], max_auth_failures="1")
    assert result.codes()[-1] == 421


# -- hooks -------------------------------------------------------------------------------
RECORDER = '''
seen = []
def hook_auth_plain(self, transaction, *args):
    seen.append(("auth-plain",) + args)
    return DECLINED, "plain declined"
def hook_auth(self, transaction, *args):
    seen.append(("auth",) + args)
    if args[1] == "vip@example.test":
        return OK, "welcome"
    if args[1] == "boom@example.test":
        raise RuntimeError("plugin bug")
    return DENY
def hook_mail(self, transaction, sender, *args):
    seen.append(("mail", self.auth_user, self.auth_mechanism, self.connection.relay_client))
'''


@pytest.fixture
def recorder(tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    return str(tmp_path)


def run_recorder(recorder, lines, **extra):
    return run_session(["EHLO client.test", *lines, "QUIT"],
                       config=config(plugins=["recorder", "rcpt_ok"], **extra),
                       plugin_dirs=[recorder, PLUGIN_DIR])


def test_hook_arguments_and_order(recorder, fixed_ticket):
    result = run_recorder(recorder, ["AUTH PLAIN " + b64("\0vip@example.test\0pw"), "MAIL FROM:<a@b.test>"],
                          relayclients="")
    plugin = next(p for p in result.smtp.plugins if p.plugin_name == "recorder")
    seen = plugin.hook_auth.__globals__["seen"]
    assert seen == [("auth-plain", "plain", "vip@example.test", "pw", None, None),
                    ("auth", "plain", "vip@example.test", "pw", None, None),
                    ("mail", "vip@example.test", "plain", 1)]
    assert result.replies()[2] == (235, ["2.7.0 PLAIN authentication successful for vip@example.test - welcome"])


def test_cram_hook_gets_digest_and_ticket(recorder, fixed_ticket):
    answer = cram_answer(fixed_ticket, "u@example.test", "pw")
    result = run_recorder(recorder, ["AUTH CRAM-MD5", answer])
    plugin = next(p for p in result.smtp.plugins if p.plugin_name == "recorder")
    digest = base64.b64decode(answer).decode().split()[1]
    assert plugin.hook_auth.__globals__["seen"][-1] == ("auth", "cram-md5", "u@example.test", None, digest,
                                                        fixed_ticket)
    assert result.replies()[3] == (535, [f"5.7.8 CRAM-MD5 authentication failed for u@example.test from {IP}"])


def test_plugin_fault_in_auth_is_451_not_success(recorder):
    result = run_recorder(recorder, ["AUTH PLAIN " + b64("\0boom@example.test\0pw"), "MAIL FROM:<a@b.test>",
                                     "RCPT TO:<x@elsewhere.test>"])
    assert result.replies()[2] == (451, ["Internal error - try again later"])
    assert not result.smtp.authenticated()
    assert result.replies()[-2] == (550, ["Relaying denied (#5.7.1)"])


def test_auth_success_clears_naughty():
    plugin = "def hook_connect(self, t):\n    self.connection.notes['naughty'] = 1\n"
    import tempfile
    directory = tempfile.mkdtemp()
    with open(os.path.join(directory, "mark_naughty.py"), "w") as handle:
        handle.write(plugin)
    result = run_session(["EHLO client.test", f"AUTH PLAIN {PLAIN_OK}", "QUIT"],
                         config=config(plugins=["mark_naughty", "auth/auth_flat_file"]),
                         plugin_dirs=[directory, PLUGIN_DIR])
    assert result.smtp.connection.notes.get("naughty") in (0, None)


# -- credentials never logged ------------------------------------------------------------------
def test_no_credentials_in_log(fixed_ticket):
    answer = cram_answer(fixed_ticket, GOOD, "secret")
    result = session([f"AUTH PLAIN {PLAIN_OK}"])
    result2 = session(["AUTH LOGIN", b64(GOOD), b64("secret")])
    result3 = session(["AUTH CRAM-MD5", answer])
    text = "\n".join(result.log + result2.log + result3.log)
    assert "secret" not in text
    for needle in (PLAIN_OK, b64("secret"), answer):
        assert needle not in text
    assert "AUTH PLAIN <hidden credentials>" in text
    assert result.smtp.connection.notes.get("original_string", "").find(PLAIN_OK) < 0


# -- tls_before_auth without TLS ----------------------------------------------------------------
def test_tls_before_auth_hides_and_refuses_auth():
    result = session([f"AUTH PLAIN {PLAIN_OK}"], tls_before_auth="1")
    assert all(not line.startswith("AUTH") for line in result.replies()[1][1])
    assert replies_after_ehlo(result) == ["503 SSL/TLS required before AUTH"]
    result = session([f"AUTH PLAIN {PLAIN_OK}"], tls_before_auth="0")
    assert replies_after_ehlo(result)[0].startswith("235 ")


# -- headers ---------------------------------------------------------------------------------------
DATE = r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}"


def header_block(result) -> str:
    return result.queued[0].message.decode().split("\n\n", 1)[0]


def test_headers_after_successful_auth():
    result = session([f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", *MESSAGE])
    assert re.fullmatch(
        r"Authentication-Results: mx\.example\.test; auth=pass \(plain\) smtp\.auth=good@example\.test\n"
        r"Received: from \[192\.0\.2\.1\] \(HELO client\.test\) \(192\.0\.2\.1\)\n"
        rf" by mx\.example\.test \(qpsmtpd/[^)]+\) with ESMTPA ; {DATE}\n"
        r"Subject: hi", header_block(result))


def test_headers_after_failed_auth_and_without_auth():
    bad = "AUTH PLAIN " + b64(f"\0{GOOD}\0bad")
    failed = session([bad, "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", *MESSAGE])
    assert header_block(failed).split("\n")[0] == \
        "Authentication-Results: mx.example.test; auth=fail (plain) smtp.auth="
    assert " with ESMTP ; " in header_block(failed)
    plain = run_session(["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", *MESSAGE, "QUIT"],
                        config=config(), capture_queue=True)
    lines = header_block(plain).split("\n")
    assert lines[0] == "Authentication-Results: mx.example.test; auth=none"
    assert re.fullmatch(rf" by mx\.example\.test \(qpsmtpd/[^)]+\) with SMTP ; {DATE}", lines[2])


def test_authentication_results_after_invalid_and_cancelled_exchanges():
    invalid = session(["AUTH PLAIN " + b64("x\0\0y"), "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", *MESSAGE])
    assert header_block(invalid).split("\n")[0] == \
        "Authentication-Results: mx.example.test; auth=fail (plain) smtp.auth="
    cancelled = session(["AUTH LOGIN", "*", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", *MESSAGE])
    assert header_block(cancelled).split("\n")[0] == "Authentication-Results: mx.example.test; auth=none"


def test_validate_password_paths():
    import warnings

    from qpsmtpd.auth import cram_md5_digest, validate_password
    from qpsmtpd.constants import DECLINED, DENY, DENYSOFT, OK
    from qpsmtpd.plugin import Plugin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    plugin = Plugin()
    plugin._name = "auth::auth_test"
    plugin._qp = run_session([], config=config()).smtp
    stored = crypt.crypt("pw", "$6$saltsalt$")
    assert validate_password(plugin, src_crypt=stored, attempt_clear="pw", method="plain") == (OK, "auth_test")
    assert validate_password(plugin, src_crypt=stored, attempt_clear="pW", method="plain") == \
        (DENY, "auth_test - wrong password")
    assert validate_password(plugin, src_clear="pw", attempt_clear="pw", method="login") == (OK, "auth_test")
    assert validate_password(plugin, method="plain", attempt_clear="x", deny=DENYSOFT) == \
        (DENYSOFT, "auth_test - no such user")
    assert validate_password(plugin, src_crypt=stored, attempt_hash="00", method="cram-md5") == (DECLINED, "auth_test")
    assert validate_password(plugin, src_clear="pw", attempt_hash="00", method="cram-md5") == (DECLINED, "auth_test")
    digest = cram_md5_digest("<t@x>", "pw")
    assert digest == hmac.new(b"pw", b"<t@x>", hashlib.md5).hexdigest()
    assert validate_password(plugin, src_clear="pw", attempt_hash=digest.upper(), method="cram-md5",
                             ticket="<t@x>") == (OK, "auth_test")
