"""Test plugin: `reply HOOK CODE [ESC|-] [text words...]` returns Reply(CODE, text, esc=ESC) from HOOK."""

from qpsmtpd.replies import Reply


def register(self, qp, hook, code, esc="-", *words):
    self.reply = Reply(int(code), *([" ".join(words)] if words else []), esc=None if esc == "-" else esc)
    self.register_hook(hook, "answer")


def answer(self, transaction, *args):
    return self.reply
