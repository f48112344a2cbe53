"""Errors that the CLI reports as one line instead of a traceback."""


class DiatError(Exception):
    """A problem the user can fix (bad file, bad option, missing data)."""


class ConfigError(DiatError):
    """An invalid setting; the CLI reports it as a usage error (exit status 2)."""


class ImageReadError(DiatError):
    """A file that cannot be read as an image; the message names the file and the cause."""
