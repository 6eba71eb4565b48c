"""Errors the CLI maps to exit codes: 2 for usage or configuration, 1 for run time."""


class KinestreamError(Exception):
    """A failure at run time (exit code 1); the message is one line for the user."""


class UsageError(KinestreamError):
    """Bad arguments or configuration (exit code 2); the message names the key and problem."""
