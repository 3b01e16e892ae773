"""The command-line tools' one error type for user mistakes (`experiments.run`, `experiments.reconstruct`)."""


class UsageError(ValueError):
    """A user mistake; its message is one line and says what to do."""
