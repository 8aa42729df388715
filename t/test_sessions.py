"""Replay every golden session under t/sessions/ through the real qpsmtpd.py.

A session that runs a private dnsmasq, spamd or clamd (a top-level
`dnsmasq = [...]`, `spamd = true`, `clamd = true`) or says
`components = true` (it needs an optional library such as dnspython) carries
the `components` marker, so `pytest -m "not components"` leaves it out.
"""

import glob
import os
import tomllib

import pytest

from sessionfile import run_session_file

SESSIONS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "sessions", "**", "*.toml"), recursive=True))


def _needs_components(path: str) -> bool:
    with open(path, "rb") as handle:
        spec = tomllib.load(handle)
    return any(key in spec for key in ("dnsmasq", "spamd", "clamd")) or spec.get("components", False) is True


def _session_param(path: str):
    marks = [pytest.mark.components] if _needs_components(path) else []
    return pytest.param(path, marks=marks, id=os.path.relpath(path, os.path.dirname(__file__)))


@pytest.mark.parametrize("path", [_session_param(path) for path in SESSIONS])
def test_golden_session(path):
    run_session_file(path)
