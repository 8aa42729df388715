"""Notes: a dict that plugins can also call the qpsmtpd way.

`notes["key"] = value` and `notes.get("key")` are the Python spelling;
`notes("key")` reads and `notes("key", value)` writes, as in qpsmtpd
(the alias lives in `qpsmtpd.compat`).
"""

from __future__ import annotations

from .compat import PerlNotes


class Notes(PerlNotes, dict):
    """A dict; `PerlNotes` adds the call form, get (one argument) or set (two)."""
