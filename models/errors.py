"""Errors a person fixes by changing a flag or a file: a trainer's ``main`` says them in one
line and exits with status 2, instead of a traceback."""


class SetupError(RuntimeError):
    """A missing data set, a run folder or memory in use by another run, a flag out of range."""
