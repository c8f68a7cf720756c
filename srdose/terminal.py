"""Text from the data made safe for a terminal.

A serial, a station name or an AE title comes from a modality or a user: printed as it is, a control
character would drive the terminal (escape sequences, bells) and a ``[/]`` would be read as rich markup.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 and C1 control characters and DEL: a terminal acts on them (escape sequences, bells)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain_text(value: object) -> str:
    """``value`` as one line of printable text (control characters become '?')."""
    return _CONTROL.sub("?", "" if value is None else str(value))


def esc(value: object) -> str:
    """Text from the data (a serial, a station, an AE title) for a rich table or message:
    printable, and taken literally, never as rich markup such as ``[/]``."""
    return escape(plain_text(value))
