"""Test plugin: `bad HOOK KIND` returns a value that is not a hook result from HOOK.

KIND: `string` ("DENY", "no"), `smtpcode` (550, "no"), `bool` (True), `object`, `empty` (()),
`bigint` (12345), `badreply` (Reply(999)).
"""

from qpsmtpd.replies import Reply

VALUES = {
    "string": ("DENY", "no"),
    "smtpcode": (550, "no"),
    "bool": True,
    "object": object(),
    "empty": (),
    "bigint": 12345,
    "badreply": Reply(999, "nonsense"),
}


def register(self, qp, hook, kind):
    self.value = VALUES[kind]
    self.register_hook(hook, "answer")


def answer(self, transaction, *args):
    return self.value
