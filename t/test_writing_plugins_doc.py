"""docs/writing-plugins.md cannot rot: its example plugin and that plugin's tests are files
in docs/examples/, the guide's code excerpts must be found in them verbatim, and the
example's tests run here."""

import importlib.util
import os
import re

import pytest

from qpsmtpd.testing import REPO_DIR

GUIDE = os.path.join(REPO_DIR, "docs", "writing-plugins.md")
EXAMPLE_TESTS = os.path.join(REPO_DIR, "docs", "examples", "test_message_limits.py")


def example_tests():
    spec = importlib.util.spec_from_file_location("docs_example_message_limits", EXAMPLE_TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: value for name, value in vars(module).items() if name.startswith("test_") and callable(value)}


TESTS = example_tests()


@pytest.mark.parametrize("name", sorted(TESTS))
def test_example_plugin(name):
    TESTS[name]()


def excerpts():
    """Code blocks of the guide that start with `# docs/examples/<file>`: (file, code)."""
    text = open(GUIDE).read()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        first, _newline, code = block.partition("\n")
        if first.startswith("# docs/examples/"):
            yield first[2:].strip(), code


def test_guide_quotes_the_example_files_verbatim():
    quoted = list(excerpts())
    assert {name for name, _code in quoted} == {"docs/examples/plugins/message_limits.py",
                                                 "docs/examples/test_message_limits.py"}
    for name, code in quoted:
        assert code.strip() in open(os.path.join(REPO_DIR, name)).read(), f"excerpt of {name} is stale"
