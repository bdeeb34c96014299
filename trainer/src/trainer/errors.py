"""Errors named for what the caller should do. The CLI turns them into one line and an exit code."""


class TrainerError(Exception):
    """Base class. exit_code is what the CLI exits with."""

    exit_code = 1


class InputError(TrainerError):
    """Bad input from the user (a file, a flag, a config): fix the input and run again. Exit 2."""

    exit_code = 2


class DataError(InputError):
    """A zeros dataset or source file is missing, malformed or inconsistent."""


class ConfigError(InputError):
    """A training config is invalid (unknown key, wrong type, impossible value)."""


class UnsafePickleError(DataError):
    """A pickle asked for anything beyond a list of floats (a global, a reduce, an object)."""
