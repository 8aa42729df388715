"""rcpt_ok: rcpthosts, morercpthosts.cdb, me, localiphost, bare postmaster, immunity."""


from qpsmtpd.cdb import write_cdb

from policy_support import MAIL, replies, session


def rcpt(address, **config):
    return replies(session(["rcpt_ok"], MAIL + [f"RCPT TO:{address}"], **config))[3]


def test_rcpthosts_exact_and_case():
    assert rcpt("<x@example.test>") == "250 <x@example.test>, recipient ok"
    assert rcpt("<x@EXAMPLE.Test>") == "250 <x@EXAMPLE.Test>, recipient ok"
    assert rcpt("<x@foreign.test>") == "550 Relaying denied (#5.7.1)"


def test_leading_dot_accepts_subdomains_only():
    assert rcpt("<x@mx.sub.test>", rcpthosts=[".sub.test"]).startswith("250")
    assert rcpt("<x@sub.test>", rcpthosts=[".sub.test"]).startswith("550")


def test_me_is_always_accepted():
    assert rcpt("<x@mx.example.test>", rcpthosts=["other.test"]).startswith("250")


def test_bare_postmaster_counts_as_me():
    assert rcpt("<postmaster>") == "250 <postmaster>, recipient ok"


def test_morercpthosts_cdb(tmp_path):
    result = session(["rcpt_ok"], MAIL + ["RCPT TO:<x@more.test>", "RCPT TO:<x@less.test>"],
                     rcpthosts=["example.test"], morercpthosts=[])
    assert replies(result)[3].startswith("550")
    cdb = tmp_path / "morercpthosts.cdb"
    write_cdb(str(cdb), [(b"more.test", b"")])
    result = session(["rcpt_ok"], MAIL + ["RCPT TO:<x@more.test>", "RCPT TO:<x@less.test>"],
                     env={"QPSMTPD_CONFIG": str(tmp_path)})
    assert replies(result)[3] == "250 <x@more.test>, recipient ok"
    assert replies(result)[4] == "550 Relaying denied (#5.7.1)"


def test_localiphost_literal():
    assert rcpt("<x@[192.0.2.25]>", rcpthosts=["example.test"]).startswith("250")
    assert rcpt("<x@[192.0.2.25]>", rcpthosts=["example.test"], localiphost="other.test").startswith("550")
    assert rcpt("<x@[192.0.2.25]>", rcpthosts=["lit.test"], localiphost="lit.test").startswith("250")
    assert rcpt("<x@[192.0.2.99]>").startswith("550")


def test_relay_client_is_immune():
    result = session(["relay", "rcpt_ok"], MAIL + ["RCPT TO:<x@foreign.test>"], env={"RELAYCLIENT": ""})
    assert replies(result)[3] == "250 <x@foreign.test>, recipient ok"
