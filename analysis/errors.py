"""The one error type user mistakes raise.

The command line and the dashboard catch :class:`UserError` and show its message as one line
(exit code 2 on the command line); anything else is a bug and keeps its traceback.
It lives in ``analysis`` (which never imports torch) so that both the training core and the
analysis package can raise it without the analysis package importing the training core.
"""


class UserError(Exception):
    """A problem with the user's input: a bad path, a malformed file, an impossible option."""


class RunFormatError(UserError):
    """A file the project reads (run folder, snapshot, config, hierarchy or WordNet data) is
    missing, truncated or malformed."""
