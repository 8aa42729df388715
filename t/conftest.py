"""pytest set-up: make lib/ and t/ importable."""

import os
import sys

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TEST_DIR)
for path in (os.path.join(REPO_DIR, "lib"), TEST_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)
