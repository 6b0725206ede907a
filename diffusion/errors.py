"""Errors that the command-line tools turn into one-line messages with exit status 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-supplied value is invalid; the message names the value and the valid choices."""


class CheckpointError(ConfigError):
    """A checkpoint is missing, corrupt, or belongs to another run."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


class StudyNotFound(ConfigError):
    """The storage has no study of that name (yet: a cluster worker may start before `init`)."""
