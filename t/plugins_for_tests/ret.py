"""Test plugin: `ret HOOK CODE [message words...]` returns CODE (a constant name) from HOOK."""


def register(self, qp, hook, code, *message):
    self.result_code = return_code(code)
    self.result_message = " ".join(message)
    self.register_hook(hook, "answer")


def answer(self, transaction, *args):
    if self.result_message:
        return self.result_code, self.result_message
    return self.result_code
