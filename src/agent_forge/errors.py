"""User-facing errors.

Anything a user can cause (bad config, missing file, models that cannot be merged, corrupted checkpoint)
raises `ForgeError` with a one-line message; the CLI prints it as `error: <message>` and exits non-zero
without a traceback. Programming errors stay ordinary exceptions.
"""


class ForgeError(Exception):
    """An error caused by the user's input, reported as one line."""
