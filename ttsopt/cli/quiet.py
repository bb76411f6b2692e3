"""The terminal shows what the user asked for; libraries' warnings go to a log file.

Importing chatterbox and its stack raises deprecation and advisory warnings (diffusers, torch's
weight_norm, transformers' attention notes) that say nothing about the user's synthesis or suite.
Without `-v` they are written to a log file — the results folder's `logs/ttsopt.log` for `run`,
`~/.cache/ttsopt/logs/COMMAND.log` otherwise (`TTSOPT_LOG_DIR` moves it) — and the libraries
that log through their own handlers are told to keep to errors. `-v` leaves everything as the
libraries print it. Errors of our own are never routed here: they end the command on stderr.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

LOG_DIR_ENV = "TTSOPT_LOG_DIR"
# Libraries that print through a handler of their own, and the variable that quiets each.
VERBOSITY_ENV = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}


class _LazyFile(logging.FileHandler):
    """A log file (and its folder) made at the first message: a quiet command leaves nothing."""

    def __init__(self, path: Path):
        super().__init__(path, delay=True, encoding="utf-8")

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def default_log(command: str) -> Path:
    root = os.environ.get(LOG_DIR_ENV) or Path.home() / ".cache" / "ttsopt" / "logs"
    return Path(root).expanduser() / f"{command}.log"


@contextlib.contextmanager
def libraries_to(log_file: Path, verbose: bool = False):
    """While inside, Python warnings go to LOG_FILE (unless VERBOSE); everything is restored after."""
    if verbose:
        yield
        return
    handler = _LazyFile(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("py.warnings")
    kept_env = {k: os.environ.get(k) for k in VERBOSITY_ENV}
    kept_propagate = logger.propagate
    for key, value in VERBOSITY_ENV.items():
        os.environ.setdefault(key, value)
    logger.addHandler(handler)
    logger.propagate = False
    with warnings.catch_warnings():  # the filters stay Python's (and PYTHONWARNINGS)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            logger.removeHandler(handler)
            logger.propagate = kept_propagate
            handler.close()
            for key, value in kept_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
