"""rcpt_map: map file, domain, default, load errors."""

from policy_support import MAIL, replies, session

MAP = "me@example.org OK\nInfo@Example.org DENY User not found.\n# comment\nsoft@example.org DENYSOFT\nbad line\n"


def run(plugin, *recipients, map_text=MAP):
    config = {"map_example_org": map_text, "rcpthosts": ["example.org", "example.test"]}
    return replies(session([plugin], MAIL + [f"RCPT TO:{r}" for r in recipients], **config))


def test_map_answers():
    got = run("rcpt_map domain example.org file map_example_org", "<me@example.org>", "<info@example.org>",
              "<soft@example.org>", "<unknown@example.org>", "<x@example.test>")
    assert got[3:8] == ["250 <me@example.org>, recipient ok", "550 User not found.", "450 No such user.",
                        "550 No such user.", "250 <x@example.test>, recipient ok"]


def test_default_argument():
    got = run("rcpt_map domain example.org file map_example_org default DENYSOFT=Try_later", "<who@example.org>")
    assert got[3] == "450 Try later"


def test_missing_arguments_or_empty_map_fail_to_load():
    assert run("rcpt_map domain example.org", "<me@example.org>")[0].startswith("421")
    assert run("rcpt_map file map_example_org", "<me@example.org>")[0].startswith("421")
    assert run("rcpt_map domain example.org file map_example_org", "<me@example.org>",
               map_text="# nothing\n")[0].startswith("421")
    assert run("rcpt_map domain example.org file map_example_org default NOPE", "<me@example.org>")[0] \
        .startswith("421")
