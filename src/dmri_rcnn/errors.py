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
