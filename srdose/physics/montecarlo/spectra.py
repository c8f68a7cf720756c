"""X-ray spectra for the Monte Carlo, from spekpy, and their HVL.

Spectrum model: **spekpy** v2 (Poludniowski et al., Med. Phys. 48 (2021)
3630-3637; Bujila et al., Phys. Med. 2020), which models W, Mo and Rh targets
for mammography tube voltages. All spectra here share one energy-bin layout
(0.5 keV bins, centres 0.25 + 0.5 k keV, spekpy's native layout with dk=0.5) so
that one Monte Carlo run of a breast geometry, tallied per bin, can be folded
with any spectrum.

Filtration added to every spectrum (stated, not tuned):

* tube window: 1 mm beryllium (standard mammography tube window, e.g. the
  spectra of Boone, Fewell & Jennings, Med. Phys. 24 (1997) 1863, are given
  for 1 mm Be);
* the filter named by the user (e.g. 0.03 mm Mo for Mo/Mo, Dance 1990);
* compression paddle: 3 mm PMMA for the clinical beams (s, DBT; an
  assumption, the paddle thickness of the papers is not in the public
  material available to us). The air kerma K and the HVL are those of the
  spectrum *after* the paddle, i.e. of the beam incident on the breast, which
  is how K is defined (incident air kerma at the upper breast surface). At a
  fixed HVL the paddle does not change g (< 0.1 %, validation report); it
  only changes which kV gives which HVL. The Mo/Mo reference family of the g
  table is therefore built without it (see systems.momo_spectrum_for_hvl).

The HVL is computed here from the air kerma of the spectrum attenuated in
aluminium (xraylib data), not taken from spekpy, so that K, HVL and the
transport all use one cross-section library; tests check it against spekpy's
own HVL.
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass

import numpy as np

from . import materials

#: Energy bins of every spectrum (keV): centres of 0.5 keV bins, 5.25-69.75 keV.
#: Photons below 5 keV are removed by the 1 mm Be window and the paddle
#: (transmission < 1e-6 through 3 mm PMMA at 5 keV), so they are dropped.
BIN_WIDTH_KEV = 0.5
BIN_CENTRES_KEV = 0.25 + BIN_WIDTH_KEV * np.arange(10, 140)

#: spekpy material names.
_SPEKPY_MATERIAL = {
    "Be": "Be",
    "Mo": "Mo",
    "Rh": "Rh",
    "Ag": "Ag",
    "Al": "Al",
    "Cu": "Cu",
    "Sn": "Sn",
    "Ti": "Ti",
    "Pd": "Pd",
    "PMMA": "Polymethyl Methacrylate (Lucite Perspex or Plexiglas)",
}

TUBE_WINDOW_BE_MM = 1.0
PADDLE_PMMA_MM = 3.0
#: spekpy's default anode angle (12 degrees); mammography tubes are 0-16 degrees
#: with tilted tubes; the effect on spectral shape at fixed HVL is second order.
ANODE_ANGLE_DEG = 12.0


@dataclass(frozen=True)
class Spectrum:
    """A photon spectrum on the shared bins.

    Attributes
    ----------
    label : str
        e.g. "Mo/Mo 28 kV +0.00 mm Al".
    fluence : ndarray
        Relative photon fluence per bin (arbitrary scale).
    target, filter_material : str
    filter_mm, kv, added_al_mm : float
    """

    label: str
    fluence: np.ndarray
    target: str
    filter_material: str
    filter_mm: float
    kv: float
    added_al_mm: float


def parse_filter(text: str) -> tuple[str, float]:
    """Parse ``"Mo:0.03"`` into ("Mo", 0.03)."""
    mat, _, thick = text.partition(":")
    if not thick:
        raise ValueError(f"filter must look like 'Mo:0.03' (material:mm), got {text!r}")
    return mat.strip(), float(thick)


@functools.lru_cache(maxsize=512)
def make_spectrum(
    target: str,
    filter_material: str,
    filter_mm: float,
    kv: float,
    added_al_mm: float = 0.0,
    paddle_pmma_mm: float = PADDLE_PMMA_MM,
    window_be_mm: float = TUBE_WINDOW_BE_MM,
) -> Spectrum:
    """Spectrum from spekpy with window, filter, paddle and added Al (cached).

    Parameters
    ----------
    target : {"Mo", "Rh", "W"}
    filter_material : str
        Element symbol understood by spekpy (Mo, Rh, Ag, Al, Cu, ...).
    filter_mm, kv, added_al_mm : float
    """
    import spekpy  # heavy import kept local

    with contextlib.redirect_stdout(io.StringIO()):
        s = spekpy.Spek(kvp=kv, th=ANODE_ANGLE_DEG, targ=target, dk=BIN_WIDTH_KEV)
        s.multi_filter(
            [
                (_SPEKPY_MATERIAL["Be"], window_be_mm),
                (_SPEKPY_MATERIAL.get(filter_material, filter_material), filter_mm),
                (_SPEKPY_MATERIAL["PMMA"], paddle_pmma_mm),
                (_SPEKPY_MATERIAL["Al"], added_al_mm),
            ]
        )
        k, phi = s.get_spectrum()
    return Spectrum(
        label=f"{target}/{filter_material} {filter_mm:g} mm {kv:g} kV +{added_al_mm:.3f} mm Al",
        fluence=rebin(k, phi),
        target=target,
        filter_material=filter_material,
        filter_mm=filter_mm,
        kv=kv,
        added_al_mm=added_al_mm,
    )


def rebin(k_kev: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Place a spekpy spectrum (dk=0.5) on the shared bins by bin centre."""
    out = np.zeros_like(BIN_CENTRES_KEV)
    idx = np.rint((np.asarray(k_kev) - BIN_CENTRES_KEV[0]) / BIN_WIDTH_KEV).astype(int)
    ok = (idx >= 0) & (idx < out.size)
    np.add.at(out, idx[ok], np.asarray(phi)[ok])
    return out


def air_kerma_weights(energies_kev: np.ndarray = BIN_CENTRES_KEV) -> np.ndarray:
    """Air kerma per unit photon fluence, E * (mu_en/rho)_air, keV cm^2/g."""
    return energies_kev * materials.air_mass_energy_absorption(energies_kev)


_KERMA_W = None
_MU_AL = None


def _tables():
    global _KERMA_W, _MU_AL
    if _KERMA_W is None:
        _KERMA_W = air_kerma_weights()
        _MU_AL = materials.aluminium_attenuation(BIN_CENTRES_KEV)
    return _KERMA_W, _MU_AL


def hvl_mm_al(fluence: np.ndarray) -> float:
    """First HVL (mm Al) from the spectrum's air kerma attenuated in aluminium.

    Solves K(t)/K(0) = 1/2 with K(t) = sum phi E (mu_en/rho)_air exp(-mu_Al t)
    by bisection (K is strictly decreasing in t). Narrow-beam geometry, as the
    HVL definition assumes.
    """
    kw, mu = _tables()
    w = np.asarray(fluence) * kw
    k0 = w.sum()
    lo, hi = 0.0, 5.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if (w * np.exp(-mu * mid)).sum() > 0.5 * k0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def spectrum_for_hvl(
    target: str,
    filter_material: str,
    filter_mm: float,
    kv: float,
    hvl_target_mm: float,
    tol_mm: float = 2e-4,
    paddle_pmma_mm: float = PADDLE_PMMA_MM,
) -> Spectrum:
    """Add aluminium to a spectrum until its HVL equals ``hvl_target_mm``.

    Raises ValueError if the spectrum without added Al is already harder.
    """
    base = make_spectrum(
        target, filter_material, float(filter_mm), float(kv), 0.0, paddle_pmma_mm=float(paddle_pmma_mm)
    )
    if hvl_mm_al(base.fluence) > hvl_target_mm + tol_mm:
        raise ValueError(f"{base.label}: HVL {hvl_mm_al(base.fluence):.3f} mm already above {hvl_target_mm}")
    # Attenuate the base spectrum analytically (same as spekpy's filter) using
    # xraylib's Al data, then bisect on the Al thickness.
    _, mu = _tables()
    lo, hi = 0.0, 8.0
    if hvl_mm_al(base.fluence * np.exp(-mu * hi)) < hvl_target_mm:
        raise ValueError(f"{base.label}: HVL {hvl_target_mm} mm not reached with {hi} mm Al")
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if hvl_mm_al(base.fluence * np.exp(-mu * mid)) < hvl_target_mm:
            lo = mid
        else:
            hi = mid
    al = 0.5 * (lo + hi)
    paddle = f", {paddle_pmma_mm:g} mm PMMA" if paddle_pmma_mm != PADDLE_PMMA_MM else ""
    return Spectrum(
        label=f"{target}/{filter_material} {filter_mm:g} mm {kv:g} kV +{al:.3f} mm Al{paddle}",
        fluence=base.fluence * np.exp(-mu * al),
        target=target,
        filter_material=filter_material,
        filter_mm=filter_mm,
        kv=kv,
        added_al_mm=al,
    )


def spekpy_hvl(target: str, filter_material: str, filter_mm: float, kv: float, added_al_mm: float = 0.0) -> float:
    """spekpy's own first HVL (mm Al) for the same filtration (cross-check)."""
    import spekpy

    with contextlib.redirect_stdout(io.StringIO()):
        s = spekpy.Spek(kvp=kv, th=ANODE_ANGLE_DEG, targ=target, dk=BIN_WIDTH_KEV)
        s.multi_filter(
            [
                (_SPEKPY_MATERIAL["Be"], TUBE_WINDOW_BE_MM),
                (_SPEKPY_MATERIAL.get(filter_material, filter_material), filter_mm),
                (_SPEKPY_MATERIAL["PMMA"], PADDLE_PMMA_MM),
                (_SPEKPY_MATERIAL["Al"], added_al_mm),
            ]
        )
        return float(s.get_hvl1())
