"""Error classes, each carrying the process exit code the CLI returns for it.

Exit codes: 0 ok, 1 gate or check failed, 2 bad input or config, 3 missing runtime or environment.
The CLI prints ``str(error)`` as one line; raise with a message that names the file, the value and what
would be valid.
"""

from __future__ import annotations


class EdgecnnError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2


class BadInputError(EdgecnnError):
    """A file, option or value the user gave cannot be used (exit 2)."""

    exit_code = 2


class ModelError(BadInputError):
    """The ONNX model is missing, unreadable or invalid (exit 2)."""


class ConfigError(BadInputError):
    """A TOML spec, policy or preprocess file is malformed (exit 2)."""


class DataError(BadInputError):
    """Calibration or evaluation data cannot be used with this model (exit 2)."""


class MissingRuntimeError(EdgecnnError):
    """A runtime or optional dependency is not installed (exit 3)."""

    exit_code = 3

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed; install it with: {install}")
        self.install = install


class CheckFailedError(EdgecnnError):
    """A gate or strict check did not pass (exit 1)."""

    exit_code = 1


class InterruptedError_(EdgecnnError):
    """The user interrupted a long run (exit 130, like a shell)."""

    exit_code = 130
