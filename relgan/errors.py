"""User-facing errors: each one is reported by the CLI as a single line, without a traceback."""


class RelganError(Exception):
    """Base class for problems the user can fix (bad input, bad config, bad checkpoint)."""


class ConfigError(RelganError):
    """An invalid configuration key or value."""


class DataError(RelganError):
    """A data file or dataset that cannot be used."""


class CheckpointError(RelganError):
    """A run directory or checkpoint that is missing, incomplete or incompatible."""


class OutputError(RelganError):
    """A file that cannot be written (a full disk, a read-only place); nothing partial of it is left."""


class NonFiniteLossError(RelganError):
    """Training produced a NaN or infinite loss."""


class TrainingInterrupted(RelganError):
    """A stop signal arrived; a checkpoint was written. ``exit_code`` follows the shell's 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
