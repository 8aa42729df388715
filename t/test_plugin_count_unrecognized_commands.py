"""count_unrecognized_commands: the limit argument and the 521 reply."""

from policy_support import HELO, replies, session


def test_default_four():
    got = replies(session(["count_unrecognized_commands"], HELO + ["FOO1", "FOO2", "FOO3", "FOO4", "FOO5"],
                          quit=False))
    assert got[2:] == ["500 Unrecognized command"] * 3 + [
        "521 Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?"]


def test_custom_limit_and_known_commands_not_counted():
    got = replies(session(["count_unrecognized_commands 2"], HELO + ["FOO", "NOOP", "BAR", "NOOP"], quit=False))
    assert got[2:] == ["500 Unrecognized command", "250 OK",
                       "521 Closing connection, 2 unrecognized commands. Perhaps you should read RFC 2821?"]


def test_below_limit_session_goes_on():
    got = replies(session(["count_unrecognized_commands 4"], HELO + ["FOO", "BAR"]))
    assert got[-1].startswith("221")
