"""quit_fortune: the fortune program's output in the 221 reply after HELO."""

import os

from policy_support import replies, session


def fake_fortune(tmp_path):
    program = tmp_path / "fortune"
    program.write_text("#!/bin/sh\n[ \"$1\" = -s ] || exit 1\necho 'Today is what happened to yesterday.'\necho 'Bye.'\n")
    os.chmod(program, 0o755)
    return program


def test_fortune_after_helo(tmp_path):
    got = replies(session([f"quit_fortune fortune {fake_fortune(tmp_path)}"], ["HELO c.test"]))
    assert got[-1] == ("221 mx.example.test closing connection. |   / Today is what happened to yesterday. | "
                       "  / Bye.")


def test_no_fortune_after_ehlo(tmp_path):
    got = replies(session([f"quit_fortune fortune {fake_fortune(tmp_path)}"], ["EHLO c.test"]))
    assert got[-1] == "221 mx.example.test closing connection. Have a wonderful day."


def test_missing_program_does_nothing(tmp_path):
    got = replies(session([f"quit_fortune fortune {tmp_path}/none"], ["HELO c.test"]))
    assert got[-1] == "221 mx.example.test closing connection. Have a wonderful day."
