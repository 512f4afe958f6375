"""Errors caused by the user's input (configs, arguments, files): the CLI prints them as one line."""


class UserError(ValueError):
    pass
