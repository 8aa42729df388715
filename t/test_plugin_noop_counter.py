"""noop_counter: consecutive NOOPs, reset by other commands."""

from policy_support import replies, session


def test_third_noop_disconnects():
    got = replies(session(["noop_counter"], ["NOOP", "NOOP", "NOOP", "NOOP"], quit=False))
    assert got[1:] == ["250 OK", "250 OK", "500 Stop wasting my time, too many consecutive NOOPs"]


def test_other_commands_reset():
    got = replies(session(["noop_counter 2"], ["NOOP", "HELO c.test", "NOOP", "RSET", "NOOP", "NOOP", "NOOP"],
                          quit=False))
    assert got[1:] == ["250 OK", got[2], "250 OK", "250 OK", "250 OK",
                       "500 Stop wasting my time, too many consecutive NOOPs"]
