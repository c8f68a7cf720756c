"""Standard mammography view codes.

The parser already turns the DICOM view codes (CID 4014, SNOMED CT) and MG
ViewPosition terms into the abbreviations radiographers use
(:data:`srdose.codes.VIEW_LABELS`); this module is the curated list and the
lookup for any spelling found in older data or other systems.
"""

from __future__ import annotations

from srdose import codes as C

#: Standard view codes, with their meaning and SNOMED CT code.
STANDARD_VIEWS: dict[str, tuple[str, str]] = {
    label: (meaning, code)
    for (scheme, code), label in C.VIEW_LABELS.items()
    for meaning, lab in C.VIEW_MEANINGS.items()
    if lab == label and scheme == "SCT"
    if meaning == min((m for m, l2 in C.VIEW_MEANINGS.items() if l2 == label), key=len)
}


def standard_view(value: str | None) -> str | None:
    """The standard code of a view given as a code (``CC``), a SNOMED CT code
    value (``399162004``) or a meaning (``cranio-caudal``); None if unknown."""
    if not value:
        return None
    text = str(value).strip()
    if text.upper() in C.VIEW_POSITION_LABELS:
        return C.VIEW_POSITION_LABELS[text.upper()]
    for (_scheme, code), label in C.VIEW_LABELS.items():
        if text == code:
            return label
    return C.VIEW_MEANINGS.get(text.lower())
