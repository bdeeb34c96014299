"""Errors named for what the caller should do next. The CLI translates each into one line and an exit code."""


class OrchestratorError(Exception):
    """Base class. exit_code is what the CLI exits with."""

    exit_code = 1


class ConfigError(OrchestratorError):
    """A config file, flag or infra setting is wrong: fix it and run again. Nothing was launched. Exit 2."""

    exit_code = 2


class SwarmFailed(OrchestratorError):
    """The swarm ran but produced nothing usable: every trial of a round failed (or diverged), or
    max_failed_trials was reached. The message names which and the first failure's reason. Exit 5."""

    exit_code = 5


class Interrupted(OrchestratorError):
    """Ctrl-C: the message says what is left running and how to pick it up. Exit 130."""

    exit_code = 130


class RetryableCloudError(OrchestratorError):
    """A transient cloud error (429, RESOURCE_EXHAUSTED, 503): back off and call again."""


class PermanentJobError(OrchestratorError):
    """A job can never succeed as specified (bad image, bad args, permission): do not retry it."""
