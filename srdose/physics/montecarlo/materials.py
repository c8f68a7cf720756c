"""Tissue compositions and photon interaction data for the Dance breast model.

Pure functions: everything here turns element compositions into numpy tables on
an energy grid. No file I/O.

Cross-section library: **xraylib** (Schoonjans et al., Spectrochim. Acta B 66
(2011) 776-784; maintained at github.com/tschoonj/xraylib). It is chosen over
xraydb because it provides, from one consistent data set, all four things the
transport needs: photoelectric, coherent and incoherent cross-sections
(``CS_Photo``, ``CS_Rayl``, ``CS_Compt``), the atomic form factors F(x,Z)
(``FF_Rayl``) and the incoherent scattering functions S(x,Z) (``SF_Compt``), both
from Hubbell et al. (J. Phys. Chem. Ref. Data 4 (1975) 471), The air kerma uses the NIST mass
energy-absorption coefficients of air (Hubbell & Seltzer, NISTIR 5632) as
shipped with spekpy, because xraylib's ``CS_Energy`` disagrees with that table
(see :func:`air_mass_energy_absorption`). xraydb (Elam tables) has no S(x). Using the integrated
incoherent cross-section that already includes S(x) with an angular sampler
that uses the same S(x) keeps total and differential data consistent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xraylib

#: h*c in keV*Angstrom (CODATA 2018: 12.398 419 84 keV*A); converts photon
#: energy to 1/wavelength for the momentum transfer x = sin(theta/2)/lambda.
HC_KEV_ANGSTROM = 12.39841984

#: Hammerstein GR, Miller DW, White DR et al. 1979, "Absorbed radiation dose in
#: mammography", Radiology 130:485-491 (their tissue compositions; the
#: numbers below are the widely reproduced ones, not re-read from the paper), as used by Dance 1990 and
#: Dance et al. 2000: fractions by mass of H, C, N, O. Hammerstein give the
#: remainder ("ash") as 0.1 % (adipose) and 0.5 % (glandular) of the mass
#: without naming its elements. It is represented here by phosphorus: the ash
#: of soft tissues is dominated by P, S, Na, Cl and K (ICRU Report 44, 1989,
#: tissue compositions; table not re-checked here) whose mean atomic
#: number is close to 15. This choice matters: the Monte Carlo shows g moving
#: by about +2 % (2 cm) if the ash is split equally over P, S, K, Ca and by
#: about -3 % if it is left out (reported in reports/mc-validation.md).
ADIPOSE_HAMMERSTEIN = {"H": 0.112, "C": 0.619, "N": 0.017, "O": 0.251, "P": 0.001}
GLANDULAR_HAMMERSTEIN = {"H": 0.102, "C": 0.184, "N": 0.032, "O": 0.677, "P": 0.005}
#: Alternative ash representations, for the sensitivity study only.
ASH_VARIANTS = {
    "P": {"P": 1.0},
    "P,S,K,Ca equal": {"P": 0.25, "S": 0.25, "K": 0.25, "Ca": 0.25},
    "none": {},
}
ADIPOSE_DENSITY_G_CM3 = 0.93  # Hammerstein et al. 1979
GLANDULAR_DENSITY_G_CM3 = 1.04  # Hammerstein et al. 1979

#: Dry air near sea level, fractions by mass (NIST ESTAR/XCOM material "Air,
#: Dry (near sea level)"); used only for the air kerma normalisation.
AIR_DRY = {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}

#: Aluminium for HVL (pure element, density 2.699 g/cm^3, NIST).
ALUMINIUM_DENSITY_G_CM3 = 2.699


def mixture_composition(glandularity: float) -> tuple[dict[str, float], float]:
    """Composition and density of a glandular/adipose mixture.

    Parameters
    ----------
    glandularity : float
        Glandular fraction **by mass** (Dance 1990 defines glandularity by
        weight), 0 <= glandularity <= 1.

    Returns
    -------
    composition : dict
        Element symbol -> mass fraction.
    density : float
        g/cm^3; volumes add (1/rho = w_g/rho_g + w_a/rho_a).
    """
    if not 0.0 <= glandularity <= 1.0:
        raise ValueError("glandularity must be within [0, 1]")
    w_g = float(glandularity)
    comp: dict[str, float] = {}
    for el, w in ADIPOSE_HAMMERSTEIN.items():
        comp[el] = comp.get(el, 0.0) + (1.0 - w_g) * w
    for el, w in GLANDULAR_HAMMERSTEIN.items():
        comp[el] = comp.get(el, 0.0) + w_g * w
    density = 1.0 / (w_g / GLANDULAR_DENSITY_G_CM3 + (1.0 - w_g) / ADIPOSE_DENSITY_G_CM3)
    return comp, density


def _z(el: str) -> int:
    return xraylib.SymbolToAtomicNumber(el)


def mass_coefficients(composition: dict[str, float], energies_kev: np.ndarray) -> dict[str, np.ndarray]:
    """Mass interaction coefficients (cm^2/g) by the mixture rule.

    Returns keys ``photo``, ``incoh``, ``coh`` and ``total``.
    """
    e = np.asarray(energies_kev, dtype=float)
    out = {k: np.zeros_like(e) for k in ("photo", "incoh", "coh")}
    for el, w in composition.items():
        z = _z(el)
        out["photo"] += w * np.array([xraylib.CS_Photo(z, x) for x in e])
        out["incoh"] += w * np.array([xraylib.CS_Compt(z, x) for x in e])
        out["coh"] += w * np.array([xraylib.CS_Rayl(z, x) for x in e])
    out["total"] = out["photo"] + out["incoh"] + out["coh"]
    return out


def _atoms_per_gram(composition: dict[str, float]) -> dict[int, float]:
    # Relative atom numbers per gram (Avogadro's number cancels in the ratios
    # used for sampling).
    return {_z(el): w / xraylib.AtomicWeight(_z(el)) for el, w in composition.items()}


@dataclass(frozen=True)
class ScatterTables:
    """Angular-sampling tables of one medium (independent-atom approximation).

    Attributes
    ----------
    x2_grid : ndarray
        Grid of x^2, x = sin(theta/2)/lambda in 1/Angstrom.
    ff2_cumulative : ndarray
        Cumulative integral of F^2(x) d(x^2) on ``x2_grid``, F^2 of the
        medium = sum_i n_i F_i^2 (Hubbell et al. 1975 form factors).
    x_grid : ndarray
        Grid of x for the incoherent scattering function.
    s_normalised : ndarray
        S(x)/S(inf) of the medium, S = sum_i n_i S_i(x) (Hubbell et al. 1975),
        a rejection probability in [0, 1].
    """

    x2_grid: np.ndarray
    ff2_cumulative: np.ndarray
    x_grid: np.ndarray
    s_normalised: np.ndarray


def scatter_tables(composition: dict[str, float], x_max: float = 6.0, n: int = 3000) -> ScatterTables:
    """Build F^2 cumulative and S(x) tables for a medium.

    Parameters
    ----------
    composition : dict
        Element -> mass fraction.
    x_max : float
        Largest momentum transfer tabulated (1/Angstrom); 6 covers
        backscatter of 70 keV photons (x_max = E/hc = 5.65).
    n : int
        Grid points.
    """
    atoms = _atoms_per_gram(composition)
    x2 = np.linspace(0.0, x_max**2, n)
    xq = np.sqrt(x2)
    ff2 = np.zeros(n)
    for z, nz in atoms.items():
        ff2 += nz * np.array([xraylib.FF_Rayl(z, q) for q in xq]) ** 2
    # Trapezoidal cumulative integral in x^2.
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (ff2[1:] + ff2[:-1]) * np.diff(x2))])
    xs = np.linspace(0.0, x_max, n)
    s = np.zeros(n)
    s_inf = 0.0
    for z, nz in atoms.items():
        s += nz * np.array([xraylib.SF_Compt(z, q) if q > 0 else 0.0 for q in xs])
        s_inf += nz * z
    return ScatterTables(x2, cum, xs, np.clip(s / s_inf, 0.0, 1.0))


@dataclass(frozen=True)
class Medium:
    """Linear interaction coefficients of one medium on a uniform energy grid.

    Attributes
    ----------
    name : str
    density : float
        g/cm^3.
    e0, de : float
        Grid start and step (keV); tables are indexed by (E - e0)/de.
    mu_photo, mu_incoh, mu_coh, mu_total : ndarray
        Linear coefficients, 1/cm.
    scatter : ScatterTables
    """

    name: str
    density: float
    e0: float
    de: float
    mu_photo: np.ndarray
    mu_incoh: np.ndarray
    mu_coh: np.ndarray
    mu_total: np.ndarray
    scatter: ScatterTables
    composition: dict = field(default_factory=dict)


#: Uniform energy grid for the interaction tables: 1-80 keV in 0.05 keV steps.
#: Tissue has no absorption edge above 4.04 keV (Ca K), so linear interpolation
#: on this grid is accurate to better than 1e-4 in the mammography range.
GRID_E0_KEV = 1.0
GRID_DE_KEV = 0.05
GRID_N = 1581


def energy_grid() -> np.ndarray:
    """Energy grid (keV) of the interaction tables."""
    return GRID_E0_KEV + GRID_DE_KEV * np.arange(GRID_N)


def make_medium(name: str, composition: dict[str, float], density: float) -> Medium:
    """Tabulate a medium's linear coefficients and scattering tables."""
    e = energy_grid()
    mc = mass_coefficients(composition, e)
    return Medium(
        name=name,
        density=density,
        e0=GRID_E0_KEV,
        de=GRID_DE_KEV,
        mu_photo=mc["photo"] * density,
        mu_incoh=mc["incoh"] * density,
        mu_coh=mc["coh"] * density,
        mu_total=mc["total"] * density,
        scatter=scatter_tables(composition),
        composition=dict(composition),
    )


def lookup(table: np.ndarray, energies_kev: np.ndarray, e0: float = GRID_E0_KEV, de: float = GRID_DE_KEV) -> np.ndarray:
    """Linear interpolation of a uniform-grid table (fast path for the transport)."""
    f = (energies_kev - e0) / de
    i = np.clip(f.astype(np.int64), 0, table.shape[0] - 2)
    t = f - i
    return table[i] * (1.0 - t) + table[i + 1] * t


def air_mass_energy_absorption(energies_kev: np.ndarray) -> np.ndarray:
    """(mu_en/rho) of dry air in cm^2/g, Hubbell & Seltzer (NISTIR 5632) table.

    Taken from the NIST table shipped with spekpy (``nist_muen_air.dat``),
    interpolated by spekpy. xraylib's ``CS_Energy`` is *not* used: in
    xraylib 4.x it returns values 25-30 % below the NIST table at 20-30 keV
    (e.g. water at 20 keV: 0.382 vs NIST 0.5503 cm^2/g), which would bias K
    and the HVL.
    """
    from spekpy.DataTables import MuEnAirData

    table = MuEnAirData("nist_muen_air.dat")
    return np.asarray(table.get_muen_over_rho_air(np.asarray(energies_kev, dtype=float)), dtype=float)


def aluminium_attenuation(energies_kev: np.ndarray) -> np.ndarray:
    """Linear attenuation coefficient of aluminium, 1/mm (for the HVL)."""
    e = np.asarray(energies_kev, dtype=float)
    mu_rho = np.array([xraylib.CS_Total(13, x) for x in e])
    return mu_rho * ALUMINIUM_DENSITY_G_CM3 / 10.0
