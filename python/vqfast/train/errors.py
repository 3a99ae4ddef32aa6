"""Typed errors of the training front end. Messages name the bad value, where it came from, and what is allowed."""


class ConfigError(ValueError):
    """A config file or ``--set`` override is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model/optimizers built from the config."""


class FamilyNotImplementedError(NotImplementedError):
    """The model_type names a family vqfast registers but has not implemented yet."""
