"""Every plugin documents itself, and docs/plugins/ is rendered from those docstrings."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import render_plugin_docs  # noqa: E402

PLUGINS = render_plugin_docs.plugin_files()


@pytest.mark.parametrize("name,path", PLUGINS, ids=[name for name, _ in PLUGINS])
def test_plugin_has_documentation(name, path):
    doc = render_plugin_docs.docstring(path)
    assert len(doc.split()) >= 15, f"plugins/{name}.py needs a real docstring (what it does, arguments, config)"


def test_rendered_pages_are_current():
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "render_plugin_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_hook_reply_table_in_docs_is_current():
    """docs/hooks.md's reply table is generated from lib/qpsmtpd/replies.py (the table the engine answers from)."""
    tool = os.path.join(REPO, "tools", "render_hook_table.py")
    done = subprocess.run([sys.executable, tool, "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
