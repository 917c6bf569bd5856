"""Exceptions shared by the package and its command-line tools."""


class InputError(ValueError):
    """Bad user input: a file, shape, value or flag that cannot be used.

    The message is one line naming the file (or flag), what was expected and what was found, e.g.
    ``bvec_in.txt has 3 rows and 7 columns; q_in must be one of 6, 10, 30``. Command-line tools print
    it to stderr without a traceback and exit non-zero.
    """


class ConfigError(ValueError):
    """A workflow config value the schema accepts but the study cannot use; ``str()`` names the key.

    ``invalid config: models.width: the published weights are full width (1.0); models.width is 0.25``.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"invalid config: {key}: {message}")
        self.key = key


#: Exit status of every command-line tool of the package (documented in docs/guide/errors.md).
EXIT_OK = 0
#: An internal error (a bug): Python's own status for an uncaught exception, with its traceback.
EXIT_INTERNAL_ERROR = 1
#: Bad input: a file, flag or output location that cannot be used; one line on stderr, nothing written.
EXIT_BAD_INPUT = 2
#: Interrupted by Ctrl-C (SIGINT): one line on stderr, nothing written (128 + SIGINT, the shell convention).
EXIT_INTERRUPTED = 130
