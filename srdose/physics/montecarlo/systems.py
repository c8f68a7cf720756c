"""Beams and DBT sweeps the factor tables are computed for (pure data).

Every entry names its source. Where a value could not be confirmed from a
public source it is marked ``verified=False`` and the tables carry that flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spectra

#: HVL rows of the published g table (Dance 2000 as copied in
#: ../shared/physics/factors.json, "g_factor").
G_TABLE_HVL_MM_AL = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
#: Thickness columns of the published g table (cm).
G_TABLE_THICKNESS_CM = (2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0)
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
            return spectra.spectrum_for_hvl("Mo", "Mo", 0.03, k, hvl_mm_al,
                                            paddle_pmma_mm=MOMO_REFERENCE_PADDLE_MM)
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
    Beam("Mo", "Mo", 0.030, (25, 26, 27, 28, 29, 30, 31, 32), "Dance 1990/2000 reference"),
    Beam("Mo", "Rh", 0.025, (26, 28, 30, 32, 34), "Dance 2000"),
    Beam("Rh", "Rh", 0.025, (26, 28, 30, 32, 34), "Dance 2000"),
    Beam("Rh", "Al", 1.000, (28, 30, 32, 34), "Dance 2000 (Al thickness assumed 1 mm)"),
    Beam("W", "Rh", 0.050, (25, 27, 29, 31, 33, 35), "Dance 2000/2009; Siemens, Hologic 2D"),
    Beam("W", "Ag", 0.050, (25, 27, 29, 31, 33, 35), "Dance 2009; Hologic 2D, IMS Giotto"),
    Beam("W", "Al", 0.500, (25, 28, 31, 34, 37, 40), "Dance 2009"),
    Beam("W", "Al", 0.700, (25, 28, 31, 34, 37, 40, 43, 46, 49), "Dance 2009; Hologic DBT (RDSR: 0.7 mm Al)"),
    Beam("Rh", "Ag", 0.030, (26, 28, 30, 32, 34, 36), "GE Pristina (Ag thickness assumed 0.03 mm)"),
    Beam("Mo", "Ag", 0.030, (26, 28, 30, 32), "other (Ag thickness assumed 0.03 mm)"),
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


DBT_SWEEPS = (
    # Hologic Selenia Dimensions: 15 projections over a 15 degree arc
    # (manufacturer's description, e.g. breasttomo.co.uk "How it works"; the
    # public RDSR gives -7.4 to +7.6 degrees), W/Al 0.7 mm (public RDSR).
    Sweep("Hologic Selenia Dimensions", _even(15.0, 15), (1.0,) * 15,
          Beam("W", "Al", 0.700, (26, 29, 32, 35, 38, 41, 44, 47, 49), "RDSR"),
          "15 projections, 15 degree arc (Hologic)", True),
    # GE SenoClaire/Pristina: 9 projections over 25 degrees (issue 5); Rh/Ag.
    Sweep("GE SenoClaire/Pristina", _even(25.0, 9), (1.0,) * 9,
          Beam("Rh", "Ag", 0.030, (26, 28, 30, 32, 34, 36), "assumed"),
          "9 projections, 25 degree arc (issue 5)", True),
    # Siemens Mammomat Inspiration: 25 projections over 50 degrees, one every
    # ~2 degrees (Siemens press release, FDA approval 2015); W/Rh 0.05 mm.
    Sweep("Siemens Mammomat Inspiration", _even(50.0, 25), (1.0,) * 25,
          Beam("W", "Rh", 0.050, (26, 28, 30, 32, 34), "Siemens"),
          "25 projections, 50 degree arc (Siemens)", True),
    # IMS Giotto Class: 11 projections per sweep and the first at about half
    # the uAs of the others (public RDSR: 6220 vs ~13370 uAs), W/Ag 0.05 mm
    # (RDSR). The angular range is NOT confirmed by a public source found so
    # far: a 40 degree arc is assumed and flagged.
    Sweep("IMS Giotto Class", _even(40.0, 11), (0.465,) + (1.0,) * 10,
          Beam("W", "Ag", 0.050, (25, 27, 29, 31, 33, 35), "RDSR"),
          "11 projections (RDSR), first at 6220/13370 of the others' uAs (RDSR); "
          "40 degree arc ASSUMED", False),
)


def dbt_unique_angles() -> list[float]:
    """All |angle| values the sweeps need (degrees, rounded to 1e-6)."""
    out = {0.0}
    for sw in DBT_SWEEPS:
        out.update(round(abs(a), 6) for a in sw.angles_deg)
    return sorted(out)


#: Typical glandularity (%) by thickness (cm) and age group: Dance et al. 2000
#: as copied in ../shared/physics/factors.json ("typical_glandularity_pct",
#: single secondary source, realigned to 2-11 cm).
def typical_glandularity(shared: dict) -> dict[str, dict[float, float]]:
    """Read the typical-glandularity table from the bundled data dict."""
    tg = shared["typical_glandularity_pct"]
    out = {}
    for key, label in (("age_40_49", "40-49"), ("age_50_64", "50-64")):
        out[label] = {float(t): float(v) / 100.0 for t, v in zip(tg["thickness_cm"], tg[key])}
    return out
