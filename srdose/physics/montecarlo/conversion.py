"""From Monte Carlo tallies to the Dance conversion factors g, c, s, t and T.

Pure functions. A :class:`Response` is the glandular dose per photon emitted
per steradian for each energy bin of one geometry, with its variance; every
factor is a fold of responses with spectra (post-stratified estimator: the
per-bin means do not depend on how photons were distributed over the bins,
only their variances do).

Definitions (Dance 1990; Dance et al. 2000; Dance et al. 2011):

* g = MGD / K for a 50 % glandular breast (K: incident air kerma at the upper
  breast surface, no backscatter);
* c = g(glandularity) / g(50 %), same thickness and spectrum;
* s = (MGD/K for a spectrum) / (MGD/K for a Mo/Mo spectrum of the same HVL),
  same thickness, 50 % glandular;
* t(theta) = MGD at projection angle theta / MGD at 0 degrees for the same
  tube output (K measured with the tube at 0 degrees);
* T = sum_i alpha_i t(theta_i), alpha_i the fraction of the tube loading in
  projection i.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import spectra
from .transport import BreastGeometry, Tally


@dataclass(frozen=True)
class Response:
    """Glandular dose response of one geometry, per energy bin.

    Attributes
    ----------
    geometry : BreastGeometry
    dose : ndarray
        Glandular dose (keV/g) per photon emitted per steradian, per bin.
    dose_var : ndarray
        Variance of ``dose`` (statistical).
    kerma : ndarray
        Incident air kerma (keV/g) at the reference point per photon emitted
        per steradian, per bin: E (mu_en/rho)_air / d^2.
    photons : int
    seed : int
    """

    geometry: BreastGeometry
    dose: np.ndarray
    dose_var: np.ndarray
    kerma: np.ndarray
    photons: int
    seed: int
    extra: dict = field(default_factory=dict)


def response_from_tally(geom: BreastGeometry, tally: Tally, central_mass_g: float, seed: int) -> Response:
    """Per-bin glandular dose and air kerma from a tally."""
    n = np.maximum(tally.n, 1.0)
    mean = tally.sum / n
    var_mean = np.maximum(tally.sumsq / n - mean * mean, 0.0) / np.maximum(tally.n - 1.0, 1.0)
    # Bins never sampled carry no information; mark them with NaN variance so
    # folding a spectrum that needs them fails loudly.
    unsampled = tally.n < 2
    mean = np.where(unsampled, np.nan, mean)
    var_mean = np.where(unsampled, np.nan, var_mean)
    d2 = geom.kerma_point_distance_cm() ** 2
    kerma = spectra.air_kerma_weights() / d2
    return Response(
        geometry=geom,
        dose=mean / central_mass_g,
        dose_var=var_mean / central_mass_g**2,
        kerma=kerma,
        photons=int(tally.histories),
        seed=seed,
    )


def _fold(resp: Response, fluence: np.ndarray) -> tuple[float, float, float]:
    p = np.asarray(fluence, dtype=float)
    missing = np.isnan(resp.dose) & (p > 0)
    # Bins the run did not sample may only hold a negligible part of the
    # spectrum (e.g. the few photons below 6 keV left by the Be window and
    # paddle); they are dropped if they carry < 1e-6 of the air kerma.
    if np.sum(p[missing] * resp.kerma[missing]) > 1e-6 * np.sum(p * resp.kerma):
        raise ValueError("spectrum has photons in energy bins the run did not sample")
    used = (p > 0) & ~missing
    dose = float(np.sum(p[used] * resp.dose[used]))
    var = float(np.sum(p[used] ** 2 * resp.dose_var[used]))
    kerma = float(np.sum(p * resp.kerma))
    return dose, var, kerma


def dose_per_kerma(resp: Response, fluence: np.ndarray) -> tuple[float, float]:
    """MGD/K of a spectrum and its standard uncertainty (absolute)."""
    dose, var, kerma = _fold(resp, fluence)
    return dose / kerma, float(np.sqrt(var)) / kerma


def spectrum_ratio(resp: Response, fluence_a: np.ndarray, fluence_b: np.ndarray) -> tuple[float, float]:
    """(MGD/K)_a / (MGD/K)_b on the same response, with its uncertainty.

    Both spectra are folded with the same per-bin means, so the ratio's
    variance follows from the delta method bin by bin (the bins are
    independent): var = sum_b var(D_b) (p_a,b/A - p_b,b/B)^2 (A/B)^2.
    """
    a, _, ka = _fold(resp, fluence_a)
    b, _, kb = _fold(resp, fluence_b)
    pa = np.asarray(fluence_a, float)
    pb = np.asarray(fluence_b, float)
    used = ((pa > 0) | (pb > 0)) & ~np.isnan(resp.dose)
    deriv = pa[used] / a - pb[used] / b
    rel_var = float(np.sum(resp.dose_var[used] * deriv**2))
    ratio = (a / ka) / (b / kb)
    return ratio, ratio * float(np.sqrt(rel_var))


def independent_ratio(resp_num: Response, resp_den: Response, fluence: np.ndarray) -> tuple[float, float]:
    """Ratio of MGD/K of two independent runs (c, t): quadrature uncertainty."""
    n, sn = dose_per_kerma(resp_num, fluence)
    d, sd = dose_per_kerma(resp_den, fluence)
    r = n / d
    return r, r * float(np.hypot(sn / n, sd / d))


def t_factor(resp_angle: Response, resp_zero: Response, fluence: np.ndarray) -> tuple[float, float]:
    """t(theta): dose at theta over dose at 0 for the same tube output.

    Both runs use the same focus-to-pivot distance and photons per steradian,
    so the ratio of folded doses is t (the kerma normalisation cancels).
    """
    a, va, _ = _fold(resp_angle, fluence)
    b, vb, _ = _fold(resp_zero, fluence)
    r = a / b
    return r, r * float(np.sqrt(va / a**2 + vb / b**2))


def sweep_T(
    responses: dict[float, Response], angles_deg: np.ndarray, weights: np.ndarray, fluence: np.ndarray
) -> tuple[float, float]:
    """T = sum_i alpha_i t(theta_i) for a sweep, with its uncertainty.

    Parameters
    ----------
    responses : dict
        |angle| in degrees (rounded to 1e-6) -> Response; must contain 0.
        The breast model is symmetric under x -> -x, so t(-theta) = t(theta).
    angles_deg, weights : ndarray
        Projection angles and tube-loading weights (normalised here).
    """
    w = np.asarray(weights, float)
    w = w / w.sum()
    folded = {}
    for key, resp in responses.items():
        d, v, _ = _fold(resp, fluence)
        folded[key] = (d, v)
    d0, v0 = folded[0.0]
    coeff: dict[float, float] = {}
    for ang, wi in zip(angles_deg, w):
        key = round(abs(float(ang)), 6)
        coeff[key] = coeff.get(key, 0.0) + wi
    num = sum(c * folded[k][0] for k, c in coeff.items())
    t_value = num / d0
    # T = (c0 d0 + sum_{k!=0} c_k d_k)/d0 = c0 + N'/d0, N' independent of d0.
    n_prime = num - coeff.get(0.0, 0.0) * d0
    var_n_prime = sum(c * c * folded[k][1] for k, c in coeff.items() if k != 0.0)
    var = var_n_prime / d0**2 + (n_prime / d0**2) ** 2 * v0
    return t_value, float(np.sqrt(var))


def sampling_weights(*fluences: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """Energy-bin sampling probabilities for a run serving several spectra.

    The mean of the spectra (each normalised to unit air kerma, since the
    factors are per unit K), with a floor of ``floor`` x its maximum on every
    bin any spectrum populates, so that each such bin is sampled.
    """
    kerma_w = spectra.air_kerma_weights()
    q = np.zeros_like(spectra.BIN_CENTRES_KEV)
    support = np.zeros(q.size, dtype=bool)
    for f in fluences:
        f = np.asarray(f, float)
        q += f / np.sum(f * kerma_w)
        support |= f > 0
    q = q / q.sum()
    return np.where(support, np.maximum(q, floor * q.max()), 0.0)
