"""The one base of every error caused by what a user gave automl (a setting, a file, a bank entry, an
image): its message names the culprit, so the command line prints that message alone, not a traceback."""


class AutomlError(ValueError):
    """Bad input: the message names the setting, file, class or entry, and says what would fix it."""
