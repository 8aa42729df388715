"""connection_time: one log line with the duration."""

import re

from policy_support import HELO, session


def test_duration_logged_at_info():
    result = session(["connection_time"], HELO, loglevel="6")
    lines = [line for line in result.log if "(post-connection) connection_time:" in line]
    assert len(lines) == 1 and re.search(r"connection_time: \d+\.\d{3} s\.$", lines[0])


def test_hidden_at_default_level_and_old_style_level_argument():
    assert not any("connection_time:" in line for line in session(["connection_time"], HELO).log)
    result = session(["connection_time LOGWARN"], HELO)
    assert any("connection_time:" in line and " s." in line for line in result.log)
    result = session(["connection_time loglevel -2"], HELO)
    assert any("connection_time:" in line and " s." in line for line in result.log)
