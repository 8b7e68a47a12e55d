"""Exceptions with messages that name the culprit (a config key, a file, a line)."""


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and the fix."""


class DataError(RuntimeError):
    """A dataset list, video file or sample is unusable; the message names the file."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded into a model; the message names the keys."""


class TrainingError(RuntimeError):
    """A run went wrong while training (e.g. the loss became NaN); the message says where."""



class InvalidArgument(ValueError):
    """A constructor argument is invalid; ``arg`` names it so a builder can name the config key.

    Attributes:
        owner: the class whose argument it is (``STViTConfig``).
        arg: the argument's name (``num_units``), as written in the constructor.
        value: the value given.
        why: what is wrong with it.
    """

    def __init__(self, owner: str, arg: str, value: object, why: str) -> None:
        super().__init__(f"{owner}: {arg}={value!r}: {why}")
        self.owner, self.arg, self.value, self.why = owner, arg, value, why
