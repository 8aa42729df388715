"""loadcheck: max_load, cache_time, the uptime fallback."""

import os

from policy_support import HELO, load_plugin, replies, session


def test_load_above_max_refused():
    assert replies(session(["loadcheck max_load -1"], HELO)) == ["450 Server load too high, please try again later."]


def test_load_below_max_passes():
    assert replies(session(["loadcheck max_load 100000"], HELO))[0].startswith("220")


def test_uptime_parsing_and_cache(tmp_path):
    program = tmp_path / "uptime"
    program.write_text("#!/bin/sh\necho ' 12:30am  up 5 days, 12:43,  1 user,  load average: 8.25, 0.00, 0.00'\n")
    os.chmod(program, 0o755)
    plugin = load_plugin(f"loadcheck uptime {program}")
    plugin.load_from_uptime()
    assert plugin.load == 8.25
    plugin.load_method = plugin.load_from_uptime
    assert plugin.loadcheck(None)[0] == DENYSOFT_CODE
    plugin.load_method = lambda: setattr(plugin, "load", 0.0)
    assert plugin.loadcheck(None)[0] == DENYSOFT_CODE  # the measurement is reused for cache_time seconds
    plugin.load_time = 0
    assert plugin.loadcheck(None)[0] != DENYSOFT_CODE


DENYSOFT_CODE = 902
