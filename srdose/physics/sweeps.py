"""Documented tomosynthesis sweeps per system (pure data).

A DBT event's T factor is computed from the sweep its own RDSR describes
(positioner start and end angles, number of projections, tube loading per
projection). Only when the RDSR lacks them does the recalculation fall back
to the system's documented sweep below, and flags it
(``assumed:sweep_geometry``). Each entry names its source; ``verified`` is
False where the geometry rests on a description not checked against an RDSR.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentedSweep:
    """A system's nominal sweep: ``projections`` evenly spaced over ``arc_deg``."""

    system: str  # system key (srdose.physics.factors.system_key)
    name: str
    arc_deg: float
    projections: int
    first_weight: float  # tube loading of the first projection relative to the others
    source: str
    verified: bool


DOCUMENTED_SWEEPS = {
    "hologic": DocumentedSweep(
        "hologic",
        "Hologic Selenia Dimensions / 3Dimensions",
        15.0,
        15,
        1.0,
        "15 projections over 15 degrees (manufacturer's description); a public RDSR gives -7.4 to +7.6 degrees",
        True,
    ),
    "ge": DocumentedSweep(
        "ge",
        "GE SenoClaire / Senographe Pristina",
        25.0,
        9,
        1.0,
        "9 projections over 25 degrees (manufacturer's description); not checked against a DBT RDSR",
        False,
    ),
    "siemens": DocumentedSweep(
        "siemens",
        "Siemens Mammomat Inspiration / Revelation",
        50.0,
        25,
        1.0,
        "25 projections over 50 degrees (manufacturer's description)",
        True,
    ),
    "giotto": DocumentedSweep(
        "giotto",
        "IMS Giotto Class",
        27.46,
        11,
        0.465,
        "11 projections over 27.46 degrees, the first at 6220/13370 of the others' tube loading "
        "(a public Giotto RDSR: positioner -13.73 to +13.73 degrees, per-projection uAs)",
        True,
    ),
    "fujifilm": DocumentedSweep(
        "fujifilm",
        "Fujifilm Amulet Innovality (ST mode)",
        15.0,
        15,
        1.0,
        "15 projections over 15 degrees in standard mode (manufacturer's description; the HR mode "
        "sweeps 40 degrees); not checked against a DBT RDSR",
        False,
    ),
}


def documented_sweep(system: str | None) -> DocumentedSweep | None:
    """The documented sweep of a system key, or None."""
    return DOCUMENTED_SWEEPS.get(system or "")
