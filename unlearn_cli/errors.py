"""User-facing errors: one line that names the culprit and what would be valid."""

import difflib


class UserError(Exception):
    """A mistake in the user's input (config, data, options). Printed as one line, exit code 2."""


class NonFiniteLossError(UserError):
    """Training produced a NaN/inf loss; the run stops and keeps the last good state."""


def suggest(name: str, known) -> str:
    """' did you mean X?' for the closest known name, or ''."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""
