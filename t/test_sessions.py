"""Replay every golden session under t/sessions/ through the real qpsmtpd.py."""

import glob
import os

import pytest

from sessionfile import run_session_file

SESSIONS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "sessions", "**", "*.toml"), recursive=True))


@pytest.mark.parametrize("path", SESSIONS, ids=[os.path.relpath(p, os.path.dirname(__file__)) for p in SESSIONS])
def test_golden_session(path):
    run_session_file(path)
