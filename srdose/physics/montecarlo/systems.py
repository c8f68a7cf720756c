"""Beams and DBT sweeps the factor tables are computed for (pure data).

Every entry names its source. Where a value could not be confirmed from a
public source it is marked ``verified=False`` and the tables carry that flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sweeps import DOCUMENTED_SWEEPS
from . import spectra

#: HVL rows of the published g table (Dance 2000 as copied in
#: the bundled public copy, physics/data/dance_public_factors.json, "g_factor").
G_TABLE_HVL_MM_AL = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
#: Thickness columns of the published g table (cm).
G_TABLE_THICKNESS_CM = (2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0)
#: HVL rows (mm Al) of the extended tables: the published rows and beyond, to
#: cover the beams real units produce (tomosynthesis W/Al, W/Ag at high kV reach
#: 0.8-0.9 mm Al; Mo/Mo at 24-25 kV about 0.25-0.28 mm Al).
EXT_HVL_MM_AL = tuple(round(0.25 + 0.05 * i, 2) for i in range(14))  # 0.25 ... 0.90
#: Thickness columns (cm) of the extended tables. 1.5 cm is the thinnest breast
#: the Dance model holds: below 1 cm the two 5 mm adipose layers leave no central
#: glandular region, so 1.0 cm cannot be computed and stays outside every table.
EXT_THICKNESS_CM = (1.5,) + G_TABLE_THICKNESS_CM + (12.0,)
#: Projection angles (degrees, absolute) of the t(theta) grid: every sweep a
#: unit reports (Hologic +-7.5, Giotto +-13.7, GE +-12.5, Fujifilm +-20,
#: Siemens +-25) lies inside; t is smooth in angle, so 2.5 degree steps
#: interpolate linearly to well under the statistical uncertainty.
T_THETA_ANGLES_DEG = tuple(2.5 * i for i in range(13))  # 0 ... 30
#: Glandularities (by mass) for the c table; Dance et al. 2000 tabulate c for
#: 0.1 %, 25 %, 50 %, 75 % and 100 % glandular breasts; 10 % added for
#: interpolation at the low end, where most large breasts lie.
C_TABLE_GLANDULARITY = (0.001, 0.10, 0.25, 0.50, 0.75, 1.00)

#: Mo/Mo reference beam: Mo target, 0.03 mm Mo (Dance 1990; Dance et al. 2000).
#: For a given HVL the g table, c table and the s reference use one uniform
#: family, fixed before comparing with the published table: 28 kV (the
#: reference Mo/Mo beam quality of the UK/European QC protocols) plus the
#: aluminium that gives the HVL, 1 mm Be window, no paddle. Without the paddle
#: 28 kV Mo/Mo has HVL 0.29 mm Al, so every row of the g table (0.30-0.60)
#: is reached with added Al; with a 3 mm PMMA paddle 28 kV is already 0.34 mm
#: Al and HVL 0.30 would need an unrealistic 24 kV. At fixed HVL the paddle
#: itself changes g by < 0.1 % (validation report). Dance's exact kV/Al per HVL
#: row is not in the public material; the validation report shows g for
#: 24-32 kV. Below 0.29 mm Al the highest whole kV that reaches the HVL without
#: Al is used.
MOMO_REFERENCE_KV = 28.0
MOMO_REFERENCE_PADDLE_MM = 0.0


def momo_spectrum_for_hvl(hvl_mm_al: float, kv: float = MOMO_REFERENCE_KV) -> spectra.Spectrum:
    """Mo/Mo 0.03 mm spectrum of the given HVL (rule above)."""
    k = float(kv)
    while k >= 20.0:
        try:
            return spectra.spectrum_for_hvl("Mo", "Mo", 0.03, k, hvl_mm_al, paddle_pmma_mm=MOMO_REFERENCE_PADDLE_MM)
        except ValueError:
            k -= 1.0
    raise ValueError(f"no Mo/Mo spectrum of HVL {hvl_mm_al} mm Al at or below {kv} kV")


@dataclass(frozen=True)
class Beam:
    """A target/filter combination and the tube voltages tabulated for it."""

    target: str
    filter_material: str
    filter_mm: float
    kvs: tuple
    source: str

    @property
    def name(self) -> str:
        return f"{self.target}/{self.filter_material}"


#: Target/filter combinations for s. Filter thicknesses are the usual
#: clinical ones; the s values of Dance et al. 2000 (Mo/Mo, Mo/Rh, Rh/Rh,
#: Rh/Al, W/Rh) and Dance et al. 2009 (W/Ag, W/Al) are for such beams.
S_BEAMS = (
    Beam("Mo", "Mo", 0.030, (24, 25, 26, 27, 28, 29, 30, 31, 32, 34), "Dance 1990/2000 reference"),
    Beam("Mo", "Rh", 0.025, (26, 28, 30, 32, 34, 36), "Dance 2000"),
    Beam("Rh", "Rh", 0.025, (26, 28, 30, 32, 34, 36), "Dance 2000"),
    Beam("Rh", "Al", 1.000, (28, 30, 32, 34, 36), "Dance 2000 (Al thickness assumed 1 mm)"),
    # Tungsten and rhodium anodes run to 49 kV: a unit's reported HVL at a given kV is often a few
    # per cent above the spectrum model's, so the HVL axis must reach past the kV range used
    Beam("W", "Rh", 0.050, (25, 27, 29, 31, 33, 35, 37, 39, 42, 45, 49), "Dance 2000/2009; Siemens, Hologic 2D"),
    Beam("W", "Ag", 0.050, (25, 27, 29, 31, 33, 35, 37, 39, 41, 45, 49), "Dance 2009; Hologic 2D, IMS Giotto"),
    Beam("W", "Al", 0.500, (25, 28, 31, 34, 37, 40, 43, 46, 49), "Dance 2009"),
    Beam("W", "Al", 0.700, (25, 28, 31, 34, 37, 40, 43, 46, 49), "Dance 2009; Hologic DBT (RDSR: 0.7 mm Al)"),
    Beam("Rh", "Ag", 0.030, (26, 28, 30, 32, 34, 36, 38, 40, 43, 46, 49), "GE Pristina (Ag thickness assumed 0.03 mm)"),
    Beam("Mo", "Ag", 0.030, (26, 28, 30, 32, 34, 36, 38), "other (Ag thickness assumed 0.03 mm)"),
)

#: Beams the tomosynthesis t(theta) grid is folded for (the DBT beams of the
#: systems below and of the RDSRs seen: Hologic and Fujifilm W/Al 0.7, Siemens
#: W/Rh, IMS Giotto W/Ag, GE Rh/Ag; W/Al 0.5 for other W/Al units).
T_THETA_BEAMS = tuple(
    b
    for b in S_BEAMS
    if (b.target, b.filter_material, b.filter_mm)
    in {("W", "Al", 0.7), ("W", "Al", 0.5), ("W", "Rh", 0.05), ("W", "Ag", 0.05), ("Rh", "Ag", 0.03)}
)


@dataclass(frozen=True)
class Sweep:
    """A DBT acquisition: projection angles and tube-loading weights."""

    system: str
    angles_deg: tuple
    weights: tuple
    beam: Beam
    source: str
    verified: bool

    @property
    def arc_deg(self) -> float:
        return float(max(self.angles_deg) - min(self.angles_deg))


def _even(arc: float, n: int) -> tuple:
    return tuple(float(a) for a in np.linspace(-arc / 2.0, arc / 2.0, n))


def _documented(key: str, beam: Beam) -> Sweep:
    d = DOCUMENTED_SWEEPS[key]
    return Sweep(
        d.name,
        _even(d.arc_deg, d.projections),
        (d.first_weight,) + (1.0,) * (d.projections - 1),
        beam,
        d.source,
        d.verified,
    )


#: The documented sweeps (srdose.physics.sweeps) with the beam each system uses
#: for tomosynthesis; their T is tabulated in dbt_T.csv from the t(theta) grid.
DBT_SWEEPS = (
    _documented("hologic", Beam("W", "Al", 0.700, (26, 29, 32, 35, 38, 41, 44, 47, 49), "RDSR")),
    _documented("ge", Beam("Rh", "Ag", 0.030, (26, 28, 30, 32, 34, 36, 38, 40), "assumed")),
    _documented("siemens", Beam("W", "Rh", 0.050, (26, 28, 30, 32, 34, 36, 38), "Siemens")),
    _documented("giotto", Beam("W", "Ag", 0.050, (25, 27, 29, 31, 33, 35, 37, 39), "RDSR")),
    _documented("fujifilm", Beam("W", "Al", 0.700, (26, 29, 32, 35, 38, 41, 44, 47, 49), "assumed")),
)


#: Typical glandularity (%) by thickness (cm) and age group: Dance et al. 2000
#: as copied in physics/data/dance_public_factors.json ("typical_glandularity_pct",
#: single secondary source, realigned to 2-11 cm).
def typical_glandularity(shared: dict) -> dict[str, dict[float, float]]:
    """Read the typical-glandularity table from the bundled data dict."""
    tg = shared["typical_glandularity_pct"]
    out = {}
    for key, label in (("age_40_49", "40-49"), ("age_50_64", "50-64")):
        out[label] = {float(t): float(v) / 100.0 for t, v in zip(tg["thickness_cm"], tg[key])}
    return out
