"""Not-a-patient: test and QA phantom studies, recognised before pseudonymisation.

A study is not a patient's when its patient ID or patient name holds one of
the configured patterns (``[curation] not_patient_patterns``). A plain
pattern is a word matched case-insensitively as a whole word: ``QA`` matches
``QA^PHANTOM``, ``ACR qa`` and ``QA_2024`` but not ``AQUA``; ``TEST`` does not
match ``TESTPERSON``. A pattern starting ``re:`` is a regular expression
(case-insensitive, searched anywhere). The identifiers themselves go no
further than this check: only the boolean ``studies.not_patient`` is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# letters and digits make words; ^ _ - space . and the rest separate them
_WORD = r"(?<![A-Za-z0-9]){}(?![A-Za-z0-9])"


@lru_cache(maxsize=16)
def compile_patterns(patterns: tuple[str, ...]) -> re.Pattern | None:
    parts = []
    for p in patterns:
        p = str(p).strip()
        if not p:
            continue
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except re.error as exc:
                raise ValueError(f"not_patient_patterns: {p!r} is not a valid regular expression: {exc}") from None
            parts.append(f"(?:{p[3:]})")
        else:
            parts.append(_WORD.format(re.escape(p)))
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def is_not_patient(patient_id: str | None, patient_name: str | None, patterns: Iterable[str]) -> bool:
    """True when the ID or name marks a test / QA phantom study."""
    rx = compile_patterns(tuple(patterns))
    if rx is None:
        return False
    return any(v and rx.search(str(v)) for v in (patient_id, patient_name))
