#!/usr/bin/env python3
"""Render the reply table of lib/qpsmtpd/replies.py into docs/hooks.md.

    python3 tools/render_hook_table.py          # rewrite the generated part of docs/hooks.md
    python3 tools/render_hook_table.py --check  # exit 1 if docs/hooks.md is stale

Only the text between the BEGIN/END markers is written; the rest of the
page is edited by hand.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))

from qpsmtpd.constants import return_code  # noqa: E402
from qpsmtpd.replies import ACCEPT, DONE_OWNED, REPLY_CLASSES, TABLE  # noqa: E402

DOC = os.path.join(REPO, "docs", "hooks.md")
BEGIN = "<!-- BEGIN reply table: generated from lib/qpsmtpd/replies.py by tools/render_hook_table.py -->"
END = "<!-- END reply table -->"


def _cell(text: str) -> str:
    return f"`{text}`" if text else '""'


def _then(rule) -> str:
    parts = []
    if rule.disconnect:
        parts.append("disconnect")
    if rule.reset:
        parts.append("transaction ends")
    return ", ".join(parts) or "session goes on"


def render() -> str:
    rows = ["| hook | result | reply | default text | enhanced code | then |",
            "| --- | --- | --- | --- | --- | --- |"]
    for hook, rules in TABLE.items():
        if hook == "ehlo":
            continue
        name = "helo, ehlo" if hook == "helo" else hook
        for code, rule in rules.items():
            rows.append(f"| `{name}` | `{return_code(code)}` | {rule.code} | {_cell(rule.text)} | "
                        f"{rule.esc or '—'} | {_then(rule)} |")
        accept = ACCEPT.get(hook)
        if accept is not None:
            reply = accept.code if accept.code is not None else "—"
            rows.append(f"| `{name}` | any other | {reply} | {_cell(accept.text)} | {accept.esc or '—'} | "
                        f"{'disconnect' if accept.disconnect else 'the step goes on'} |")
    done = ", ".join(f"`{hook}`" for hook in sorted(DONE_OWNED))
    classes = ["| hook | reply classes a `Reply` may use |", "| --- | --- |"]
    for hook, allowed in REPLY_CLASSES.items():
        classes.append(f"| `{hook}` | {', '.join(f'{digit}xx' for digit in sorted(allowed))} |")
    return "\n".join([
        BEGIN, "",
        "### Results and replies", "",
        *rows, "",
        "`{sender}` and `{rcpt}` stand for the address as the client gave it.  A plugin's own",
        "message replaces the default text.  `DONE` means the plugin answered; in "
        f"{done} a `DONE` with nothing written is a fault (451).", "",
        "### Explicit replies", "",
        *classes, "",
        END,
    ])


def updated(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: list[str]) -> int:
    with open(DOC, encoding="utf-8") as handle:
        current = handle.read()
    wanted = updated(current)
    if "--check" in argv:
        if wanted != current:
            print("docs/hooks.md is stale: run python3 tools/render_hook_table.py", file=sys.stderr)
            return 1
        return 0
    with open(DOC, "w", encoding="utf-8") as handle:
        handle.write(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
