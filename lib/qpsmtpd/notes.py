"""Notes: a dict that plugins can also call the qpsmtpd way.

`notes["key"] = value` and `notes.get("key")` are the Python spelling;
`notes("key")` reads and `notes("key", value)` writes, as in qpsmtpd.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


_MISSING = object()


class Notes(dict):
    """A dict whose call form is get (one argument) or set (two)."""

    def __call__(self, key: str, value: Any = _MISSING) -> Any:
        if value is _MISSING:
            return self.get(key)
        self[key] = value
        return value
