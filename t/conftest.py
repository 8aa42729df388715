"""pytest set-up: make lib/ and t/ importable; fixtures shared by several test files."""

import os
import sys

import pytest

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TEST_DIR)
for path in (os.path.join(REPO_DIR, "lib"), TEST_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "components: needs root, Debian packages, real daemons or optional libraries "
        "(deselect with -m 'not components')")


@pytest.fixture
def pf(postfix):
    """The module's private Postfix (its own `postfix` fixture) with an empty queue."""
    postfix.clear_queue()
    yield postfix
    postfix.clear_queue()
