"""The one exception type for user-facing mistakes; the CLI turns it into a one-line message and exit code 2."""


class KnowUndoError(Exception):
    """Bad input or settings: the message must say what is wrong and where, in one line."""


class Interrupted(Exception):
    """The user stopped a run (Ctrl-C); what finished is kept and the same command resumes. Exit code 130."""
