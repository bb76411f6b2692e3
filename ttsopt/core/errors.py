"""The exceptions the command line turns into a single readable line and a documented exit code."""
from __future__ import annotations

import signal


class UserError(ValueError):
    """Bad input from the user: the message says what is wrong and what to do instead."""


class StorageError(UserError):
    """A results file could not be written (disk full, no permission): nothing half-written is left."""


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (what `timeout` and batch schedulers send) arrived."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def raise_on_sigterm():
    """Make SIGTERM end the program the way Ctrl-C does, so `finally` blocks and clean-up run.
    Returns the handler it replaced, for the caller to put back."""
    def handler(signum, frame):
        raise Interrupted(signum)
    return signal.signal(signal.SIGTERM, handler)


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(signal name, exit code) of an interruption: SIGTERM through `raise_on_sigterm`, else Ctrl-C."""
    return (exc.args[0], exc.exit_code) if isinstance(exc, Interrupted) else ("SIGINT", 128 + signal.SIGINT)
