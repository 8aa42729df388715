"""The lint step of .ci/run: `ruff check` (pyflakes rules, ruff.toml) finds nothing in lib/,
plugins/, qpsmtpd.py, tools/ and bench/ — and it would find an injected name in a plugin."""

import subprocess
import sys

import pytest

from qpsmtpd.testing import REPO_DIR

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components


def ruff(*args, cwd=REPO_DIR):
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_tree_is_lint_clean():
    result = ruff()
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_plugin_relying_on_injected_names_is_reported(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "short.py").write_text("def hook_connect(self, transaction):\n    return DENYSOFT\n")
    (tmp_path / "ruff.toml").write_text(open(f"{REPO_DIR}/ruff.toml").read())
    result = ruff(cwd=tmp_path)
    assert result.returncode == 1 and "F821" in result.stdout and "DENYSOFT" in result.stdout
