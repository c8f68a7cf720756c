"""Invented but realistic-looking identifiers: names, patient IDs, accessions.

Nothing here refers to a real person.  UK patient IDs use the NHS number
range starting 999, which the NHS reserves for test data, with a valid
modulus-11 check digit so that validators accept them.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .vendors import Unit

_SURNAMES = {
    "en": (
        "SMITH JONES TAYLOR BROWN WILLIAMS WILSON JOHNSON DAVIES ROBINSON WRIGHT "
        "THOMPSON EVANS WALKER WHITE ROBERTS GREEN HALL WOOD JACKSON CLARKE "
        "PATEL KHAN LEWIS JAMES PHILLIPS MASON MITCHELL ROSE DAVIS RODRIGUEZ COX "
        "ALEXANDER MORGAN MOORE MARTIN PRICE BELL KING HUGHES TURNER HILL COOPER "
        "WARD MORRIS CAMPBELL EDWARDS BAILEY STEWART MURPHY REID HARRIS PARKER "
        "ATKINSON LEE FOSTER OWEN GRAHAM SHAW KELLY SIMPSON MARSHALL CHAPMAN"
    ).split(),
    "it": (
        "ROSSI RUSSO FERRARI ESPOSITO BIANCHI ROMANO COLOMBO RICCI MARINO GRECO "
        "BRUNO GALLO CONTI DE_LUCA MANCINI COSTA GIORDANO RIZZO LOMBARDI MORETTI "
        "BARBIERI FONTANA SANTORO MARIANI RINALDI CARUSO FERRARA GALLI MARTINI LEONE"
    ).split(),
}
_FEMALE = {
    "en": (
        "JANE SUSAN MARGARET ELIZABETH SARAH KAREN PATRICIA LINDA JULIE HELEN "
        "ALISON JACQUELINE CAROL ANNE GILLIAN DEBORAH AMANDA TRACEY NICOLA CLAIRE "
        "JOANNE LISA SHARON DAWN WENDY CHRISTINE PAULINE DIANE ANGELA JANET "
        "CATHERINE FIONA LORRAINE SANDRA MAUREEN RUTH FARAH PRIYA AMINA GRACE"
    ).split(),
    "it": (
        "MARIA ANNA GIUSEPPINA ROSA ANGELA GIOVANNA TERESA LUCIA CARMELA CATERINA "
        "FRANCESCA ANTONIETTA PAOLA LAURA ELENA SILVIA MONICA BARBARA CRISTINA DANIELA"
    ).split(),
}
_MALE = {
    "en": "JOHN DAVID PETER RICHARD ANDREW MARK PAUL JAMES SIMON STEPHEN".split(),
    "it": "MARCO GIUSEPPE ANTONIO LUCA FRANCESCO ANDREA PAOLO STEFANO".split(),
}
_MIDDLE = "A B C D E F G H J K L M N P R S T".split()


def make_person_name(rng: np.random.Generator, locale: str = "en", female: bool | None = True) -> str:
    """Return a DICOM PN such as ``"SMITH^JANE"`` or ``"TAYLOR^SUSAN^M"``.

    ``female=None`` draws either sex (staff names).
    """
    loc = locale if locale in _SURNAMES else "en"
    if female is None:
        female = bool(rng.random() < 0.6)
    surname = str(rng.choice(_SURNAMES[loc])).replace("_", " ")
    given = str(rng.choice(_FEMALE[loc] if female else _MALE[loc]))
    if loc == "en" and rng.random() < 0.3:
        return f"{surname}^{given}^{rng.choice(_MIDDLE)}"
    return f"{surname}^{given}"


def nhs_check_digit(nine: str) -> int | None:
    """Modulus-11 check digit of a 9-digit NHS number stem (None if invalid)."""
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def make_patient_id(rng: np.random.Generator, locale: str = "en") -> str:
    """Return a patient ID.

    ``"en"``: ``"NHS"`` + a 10-digit NHS number in the 999 test range.
    ``"it"``: a hospital number ``"PZ"`` + 8 digits.
    """
    if locale == "it":
        return "PZ" + "".join(str(int(d)) for d in rng.integers(0, 10, size=8))
    while True:
        stem = "999" + "".join(str(int(d)) for d in rng.integers(0, 10, size=6))
        check = nhs_check_digit(stem)
        if check is not None:
            return f"NHS{stem}{check}"


def make_accession(rng: np.random.Generator, unit: Unit, when: _dt.datetime) -> str:
    """Return an accession number in the unit's site style (at most 16 chars)."""
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, size=7))
    return f"{unit.accession_prefix}{when.year % 100:02d}{digits}"[:16]
