"""User-facing errors."""


class CirflowError(Exception):
    """A problem the user can fix: the message names the file or config key and what is wrong."""
