"""Test plugin: `boom HOOK` raises from HOOK."""


def register(self, qp, hook):
    self.register_hook(hook, "explode")


def explode(self, transaction, *args):
    raise RuntimeError("boom from a test plugin")
