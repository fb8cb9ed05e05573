"""Exit codes of the ``blockout`` command line, shared by :mod:`blockout.cli` and its ``cmd_*`` modules."""

#: A user mistake (bad flag, missing run folder, malformed file): one ``blockout: error:`` line.
EXIT_USER_ERROR = 2
#: Training interrupted (Ctrl-C, SIGTERM) or aborted; the run folder stays resumable.
EXIT_INTERRUPTED = 130
