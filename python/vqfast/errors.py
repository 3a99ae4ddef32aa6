"""Typed exceptions for user errors. Every message names the bad value and what is allowed."""


class VQFastError(Exception):
    """Base class of every error vqfast raises on purpose."""


class InputError(VQFastError, ValueError):
    """A tensor argument has the wrong rank, shape, dtype or device, or holds non-finite values."""


class BackendError(VQFastError, ValueError):
    """An unknown backend was requested, or the requested backend cannot run these inputs."""
