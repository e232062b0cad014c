"""User-facing errors: one line that names the culprit and what would be valid."""

import difflib
import re
from pathlib import Path
from typing import Optional


class UserError(Exception):
    """A mistake in the user's input (config, data, options). Printed as one line, exit code 2."""


class NonFiniteLossError(UserError):
    """Training produced a NaN/inf loss; the run stops and keeps the last good state."""


def suggest(name: str, known) -> str:
    """' did you mean X?' for the closest known name, or ''."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""


# what ``from_pretrained`` takes for a Hugging Face hub id: ``name`` or ``namespace/name``
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def check_local_path(key: str, path: Optional[str]) -> None:
    """One UserError naming ``key`` when ``path`` names a local file or directory that does not exist.

    A path not on disk is taken for a Hugging Face hub id when it has a hub id's form (``name`` or
    ``namespace/name``: letters, digits, ``-``, ``_``, ``.``), and left to the loader; any other (absolute,
    ``./``, ``../``, ``~``, or more than one ``/``) must exist."""
    if path and not Path(path).exists() and not HUB_ID.fullmatch(str(path)):
        raise UserError(f"{key} '{path}' does not exist")
