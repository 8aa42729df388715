"""The Perl spellings of the plugin API, in one place.

Plugins ported from the Perl qpsmtpd (or written by admins who know it)
use names that read oddly in Python.  They keep working; new code should
use the Python names beside them:

| Perl spelling | Python spelling |
| --- | --- |
| `self.is_naughty()` (getter) | `self.naughty` (the pending rejection message, or None) |
| `self.is_naughty(reason)` (setter) | `self.mark_naughty(reason)` |
| `self.is_naughty(0)` | `self.clear_naughty()` |
| `self.SUPER.hook_rcpt(...)` after `isa_plugin` | `super().hook_rcpt(...)` in a class-style plugin |
| `notes("key")` | `notes.get("key")` or `notes["key"]` |
| `notes("key", value)` | `notes["key"] = value` |

`PerlPluginNames` is a base of `qpsmtpd.plugin.Plugin`, `PerlNotes` of
`qpsmtpd.notes.Notes`; nothing else in the engine uses these names.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

_MISSING = object()


class PerlPluginNames:
    """Perl-style plugin methods, each an alias of a Python one."""

    def is_naughty(self: Any, setit: Any = None) -> Any:
        """Perl's getter and setter in one: without an argument `self.naughty`;
        with a false value `self.clear_naughty()`; else `self.mark_naughty(setit)`."""
        if setit is None:
            return self.naughty
        if not setit:
            self.clear_naughty(setit)
            return False
        return self.mark_naughty(setit)

    @property
    def SUPER(self: Any) -> Any:  # noqa: N802 - the name Perl plugin writers know
        """The parent plugin's methods, bound to this plugin (after `isa_plugin`);
        in a class-style plugin `super()` does the same."""
        from .plugin import PluginError

        child = getattr(self, "_isa_child", None)
        if child is None:
            raise PluginError(f"{self.plugin_name}: SUPER used without isa_plugin()")
        return super(child, self)


class PerlNotes:
    """Notes called the qpsmtpd way: `notes(key)` reads, `notes(key, value)` writes."""

    def __call__(self: Any, key: str, value: Any = _MISSING) -> Any:
        if value is _MISSING:
            return self.get(key)
        self[key] = value
        return value
