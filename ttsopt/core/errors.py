"""The one exception type the command line turns into a single readable line."""


class UserError(ValueError):
    """Bad input from the user: the message says what is wrong and what to do instead."""
