"""Errors that the command line reports as one line with exit code 2."""

from analysis.errors import UserError

__all__ = ["UserError"]
