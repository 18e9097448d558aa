"""Exceptions with messages that name the offending value.

Every layer maps these the same way: the service to HTTP 422, the CLI to exit status 2,
the ingester to the dead-letter topic.
"""


class InvalidInput(ValueError):
    """Bad input from a user: wrong dimension, NaN, unknown field, kind clash, bad id."""


class FilterError(InvalidInput):
    """A filter that cannot be parsed or does not fit the index's fields."""
