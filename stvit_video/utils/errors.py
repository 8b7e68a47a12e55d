"""Exceptions with messages that name the culprit (a config key, a file, a line)."""


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and the fix."""


class DataError(RuntimeError):
    """A dataset list, video file or sample is unusable; the message names the file."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded into a model; the message names the keys."""

