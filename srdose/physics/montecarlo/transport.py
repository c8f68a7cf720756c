"""Vectorised photon transport through the Dance breast model.

Pure numpy: photons are arrays, the random stream is a seeded
``numpy.random.Generator``; no I/O.

Model (Dance 1990, Phys. Med. Biol. 35:1211; Dance et al. 2000, Phys. Med.
Biol. 45:3225; the papers themselves were not available to us, the details
below are as the issue and the public abstracts describe them):

* compressed breast = half cylinder (semicircular cross-section) of radius
  8 cm and height = compressed thickness, lying on the breast support (z = 0)
  with its flat face against the chest wall (plane y = 0);
* a central region, a uniform mixture of glandular and adipose tissue
  (Hammerstein et al. 1979) of the given glandularity by mass, inside a
  superficial adipose layer, 5 mm thick, on the upper, lower and curved
  surfaces (Dance et al. 2000 use 5 mm; there is no layer on the chest-wall
  face, where the breast continues into the body and photons crossing it are
  lost);
* a point source 65 cm above the breast support, vertically above the midpoint
  of the chest-wall edge (the central ray runs along the chest wall, as in a
  mammography unit); the field covers the whole breast;
* incident air kerma K at the point of the upper breast surface on the central
  ray (directly below the focus), free in air, without backscatter;
* MGD = energy imparted to glandular tissue / glandular mass.

Interactions: photoelectric absorption (energy deposited locally; tissue
fluorescence is below 4.1 keV and is absorbed locally), coherent scattering
sampled from the Thomson distribution times the molecular F^2 (independent-atom
approximation), incoherent scattering sampled from Klein-Nishina times S(x)
(Waller-Hartree; the recoil electron deposits E - E' locally; Doppler
broadening neglected). Photons below 1 keV are absorbed locally.

Tracking: Woodcock (delta) tracking with the larger of the two media's
attenuation coefficients, so only the outer breast boundary needs ray
intersection; region membership is tested at each collision point.

Glandular energy: at an interaction in the mixture the energy deposited is
shared between the glandular and adipose components in proportion to their
contributions to that interaction's cross-section (w_g mu_x,g / mu_x,mix, x =
photoelectric or incoherent), which is the energy imparted to the glandular
component of a homogeneous mixture. Dividing by the glandular mass w_g M gives
the glandular dose, so the score per deposit is E_dep (mu_x/rho)_g/(mu_x/rho)_mix
and MGD = score / M_central.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import materials
from .materials import HC_KEV_ANGSTROM, Medium, lookup

#: Dance 1990: semicircular cross-section of radius 8 cm (also the radius of
#: the issue's independent model; g changes by ~0.1 % for 10 cm, report).
DANCE_RADIUS_CM = 8.0
#: Dance et al. 2000: 5 mm superficial adipose layer (4 mm moves g by -1 to
#: +3 %, validation report).
DANCE_ADIPOSE_LAYER_CM = 0.5
#: Focus 65 cm above the breast support: the distance used by the issue's
#: independent model; typical mammography source-to-image distances are
#: 65-70 cm (e.g. 70.0 cm in the public Hologic RDSR) with the support ~2 cm
#: above the image receptor.
SOURCE_HEIGHT_CM = 65.0
#: Photons below this energy deposit locally (keV).
ENERGY_CUTOFF_KEV = 1.0
ELECTRON_REST_KEV = 510.998950  # CODATA 2018


@dataclass(frozen=True)
class BreastGeometry:
    """Geometry of one calculation.

    Parameters
    ----------
    thickness_cm : float
        Compressed breast thickness.
    glandularity : float
        Glandular fraction by mass of the central region.
    radius_cm, adipose_layer_cm : float
        Dance model defaults (8 cm, 5 mm).
    source_height_cm : float
        Focus height above the breast support at 0 degrees.
    pivot_height_cm : float
        Height of the tube's rotation axis above the breast support (DBT).
        The axis is parallel to the nipple-chest wall direction (y) through
        x = 0, so the focus moves parallel to the chest wall.
    angle_deg : float
        Projection angle (0 = conventional 2D geometry).
    """

    thickness_cm: float
    glandularity: float = 0.5
    radius_cm: float = DANCE_RADIUS_CM
    adipose_layer_cm: float = DANCE_ADIPOSE_LAYER_CM
    source_height_cm: float = SOURCE_HEIGHT_CM
    pivot_height_cm: float = 0.0
    angle_deg: float = 0.0

    def source_position(self) -> np.ndarray:
        """Focus position (cm) for ``angle_deg``."""
        arm = self.source_height_cm - self.pivot_height_cm
        th = np.radians(self.angle_deg)
        return np.array([arm * np.sin(th), 0.0, self.pivot_height_cm + arm * np.cos(th)])

    def kerma_point_distance_cm(self) -> float:
        """Distance from the 0-degree focus to the K reference point."""
        return self.source_height_cm - self.thickness_cm

    def central_mass_g(self, density: float) -> float:
        """Mass of the central (glandular/adipose mixture) region."""
        r = self.radius_cm - self.adipose_layer_cm
        h = self.thickness_cm - 2.0 * self.adipose_layer_cm
        if r <= 0 or h <= 0:
            raise ValueError("breast too thin for its adipose layer")
        return density * 0.5 * np.pi * r * r * h


@dataclass(frozen=True)
class Media:
    """The two media of the model and the glandular sharing ratios."""

    adipose: Medium
    mixture: Medium
    mu_max: np.ndarray
    gland_ratio_photo: np.ndarray
    gland_ratio_incoh: np.ndarray
    glandularity: float


def make_media(glandularity: float) -> Media:
    """Tabulate adipose layer and central mixture for a glandularity."""
    comp_a = materials.ADIPOSE_HAMMERSTEIN
    adipose = materials.make_medium("adipose", comp_a, materials.ADIPOSE_DENSITY_G_CM3)
    comp_m, rho_m = materials.mixture_composition(glandularity)
    mixture = materials.make_medium(f"mixture {glandularity:g}", comp_m, rho_m)
    e = materials.energy_grid()
    mc_g = materials.mass_coefficients(materials.GLANDULAR_HAMMERSTEIN, e)
    mc_m = materials.mass_coefficients(comp_m, e)
    return Media(
        adipose=adipose,
        mixture=mixture,
        mu_max=np.maximum(adipose.mu_total, mixture.mu_total),
        gland_ratio_photo=mc_g["photo"] / mc_m["photo"],
        gland_ratio_incoh=mc_g["incoh"] / mc_m["incoh"],
        glandularity=glandularity,
    )


@dataclass
class Tally:
    """Per-energy-bin scores of one run.

    ``sum``/``sumsq`` are over histories of s = w * (glandular score), w the
    solid angle each history represents (sr) so that mean(s) is the glandular
    score (keV) per photon emitted per steradian. Energy bookkeeping is
    unweighted (keV) over the histories that enter the breast.
    """

    n: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    energy_incident_kev: float = 0.0
    energy_deposited_kev: float = 0.0
    energy_escaped_kev: float = 0.0
    histories: int = 0

    def add(self, other: Tally) -> None:
        self.n += other.n
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.energy_incident_kev += other.energy_incident_kev
        self.energy_deposited_kev += other.energy_deposited_kev
        self.energy_escaped_kev += other.energy_escaped_kev
        self.histories += other.histories


# --- geometry helpers -------------------------------------------------------


def _exit_distance(x, y, z, u, v, w, radius, thickness):
    """Distance to leave the half cylinder from inside (vectorised)."""
    inf = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        tz = np.where(w > 0, (thickness - z) / w, np.where(w < 0, -z / w, inf))
        ty = np.where(v < 0, -y / v, inf)
        a = u * u + v * v
        b = x * u + y * v
        c = x * x + y * y - radius * radius
        disc = np.maximum(b * b - a * c, 0.0)
        tc = np.where(a > 0, (-b + np.sqrt(disc)) / a, inf)
    return np.maximum(np.minimum(np.minimum(tz, ty), tc), 0.0)


def _entry(sx, sy, sz, u, v, w, radius, thickness):
    """Entry distance along rays from a point outside; inf where missed."""
    inf = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (0.0 - sz) / w
        t2 = (thickness - sz) / w
        lo = np.where(w != 0, np.minimum(t1, t2), -inf)
        hi = np.where(w != 0, np.maximum(t1, t2), inf)
        # Half-space y >= 0.
        ty = -sy / v
        lo = np.where(v > 0, np.maximum(lo, ty), lo)
        hi = np.where(v < 0, np.minimum(hi, ty), hi)
        hi = np.where((v == 0) & (sy < 0), -inf, hi)
        # Infinite cylinder x^2 + y^2 <= R^2.
        a = u * u + v * v
        b = sx * u + sy * v
        c = sx * sx + sy * sy - radius * radius
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        lo = np.where(a > 0, np.maximum(lo, (-b - sq) / a), lo)
        hi = np.where(a > 0, np.minimum(hi, (-b + sq) / a), hi)
        hi = np.where((a > 0) & (disc < 0), -inf, hi)
    lo = np.maximum(lo, 0.0)
    return np.where(hi > lo, lo, inf)


def _rotate(u, v, w, cos_t, phi):
    """New direction after scattering by polar cos_t and azimuth phi."""
    sin_t = np.sqrt(np.maximum(0.0, 1.0 - cos_t * cos_t))
    cp, sp = np.cos(phi), np.sin(phi)
    tmp = np.sqrt(np.maximum(0.0, 1.0 - w * w))
    near_pole = tmp < 1e-8
    safe = np.where(near_pole, 1.0, tmp)
    nu = u * cos_t + sin_t * (u * w * cp - v * sp) / safe
    nv = v * cos_t + sin_t * (v * w * cp + u * sp) / safe
    nw = w * cos_t - sin_t * cp * tmp
    nu = np.where(near_pole, sin_t * cp, nu)
    nv = np.where(near_pole, sin_t * sp, nv)
    nw = np.where(near_pole, np.sign(w) * cos_t, nw)
    norm = np.sqrt(nu * nu + nv * nv + nw * nw)
    return nu / norm, nv / norm, nw / norm


# --- angular samplers -------------------------------------------------------


def sample_coherent(energy_kev: np.ndarray, tables: materials.ScatterTables, rng: np.random.Generator) -> np.ndarray:
    """cos(theta) for coherent scattering: Thomson x F^2(x) of the medium.

    x^2 is drawn from F^2 (inverse of its cumulative integral, restricted to
    x^2 <= (E/hc)^2), then accepted with (1 + cos^2)/2 (Hubbell form factors;
    method as described in the PENELOPE manual, Salvat et al., NEA 2015).
    """
    n = energy_kev.size
    cos_t = np.empty(n)
    pending = np.arange(n)
    x2max_all = (energy_kev / HC_KEV_ANGSTROM) ** 2
    amax_all = np.interp(x2max_all, tables.x2_grid, tables.ff2_cumulative)
    while pending.size:
        x2max = x2max_all[pending]
        r = rng.random((2, pending.size))
        x2 = np.interp(r[0] * amax_all[pending], tables.ff2_cumulative, tables.x2_grid)
        c = 1.0 - 2.0 * x2 / x2max
        ok = r[1] < 0.5 * (1.0 + c * c)
        cos_t[pending[ok]] = c[ok]
        pending = pending[~ok]
    return cos_t


def sample_incoherent(
    energy_kev: np.ndarray, tables: materials.ScatterTables, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(cos(theta), E') for incoherent scattering: Klein-Nishina x S(x).

    Klein-Nishina is sampled with the composition-rejection method of Butcher
    & Messel (Nucl. Phys. 20 (1960) 15); the same uniform also rejects with
    S(x)/S(inf) of the medium (Hubbell et al. 1975 scattering functions), x
    evaluated with the incident energy.
    """
    n = energy_kev.size
    cos_t = np.empty(n)
    eps_out = np.empty(n)
    k_all = energy_kev / ELECTRON_REST_KEV
    pending = np.arange(n)
    while pending.size:
        k = k_all[pending]
        eps0 = 1.0 / (1.0 + 2.0 * k)
        a1 = -np.log(eps0)
        a2 = a1 + 0.5 * (1.0 - eps0 * eps0)
        r = rng.random((3, pending.size))
        eps = np.where(r[0] * a2 < a1, np.exp(-a1 * r[1]), np.sqrt(eps0 * eps0 + (1.0 - eps0 * eps0) * r[1]))
        one_minus_cos = (1.0 - eps) / (eps * k)
        sin2 = one_minus_cos * (2.0 - one_minus_cos)
        g = 1.0 - eps * sin2 / (1.0 + eps * eps)
        x = np.sqrt(0.5 * one_minus_cos) * energy_kev[pending] / HC_KEV_ANGSTROM
        s = np.interp(x, tables.x_grid, tables.s_normalised)
        ok = r[2] < g * s
        cos_t[pending[ok]] = 1.0 - one_minus_cos[ok]
        eps_out[pending[ok]] = eps[ok]
        pending = pending[~ok]
    return cos_t, energy_kev * eps_out


# --- the transport ------------------------------------------------------------


def sampling_rectangle(geom: BreastGeometry) -> tuple[float, float, float, float]:
    """Rectangle on the plane z = thickness containing every ray into the breast."""
    s = geom.source_position()
    t_cm = geom.thickness_cm
    r = geom.radius_cm
    xs, ys = [], []
    for cx in (-r, r):
        for cy in (0.0, r):
            for cz in (0.0, t_cm):
                f = (s[2] - t_cm) / (s[2] - cz)
                xs.append(s[0] + f * (cx - s[0]))
                ys.append(s[1] + f * (cy - s[1]))
    return min(xs), max(xs), max(0.0, min(ys)), max(ys)


def transport_batch(
    geom: BreastGeometry,
    media: Media,
    bin_energies_kev: np.ndarray,
    bin_cdf: np.ndarray,
    n: int,
    rng: np.random.Generator,
    scatter: bool = True,
) -> Tally:
    """Transport ``n`` photons; energies drawn from the discrete ``bin_cdf``.

    Parameters
    ----------
    scatter : bool
        False turns every interaction into absorption (a pure absorber with
        the total attenuation coefficient), for the Beer-Lambert check.
    """
    nb = bin_energies_kev.size
    src = geom.source_position()
    thick = geom.thickness_cm
    radius = geom.radius_cm
    layer = geom.adipose_layer_cm
    r_in2 = (radius - layer) ** 2
    x0, x1, y0, y1 = sampling_rectangle(geom)
    area = (x1 - x0) * (y1 - y0)
    h = src[2] - thick

    bins = np.searchsorted(bin_cdf, rng.random(n), side="right")
    bins = np.minimum(bins, nb - 1)
    e_src = bin_energies_kev[bins]
    r = rng.random((2, n))
    dx = x0 + (x1 - x0) * r[0] - src[0]
    dy = y0 + (y1 - y0) * r[1] - src[1]
    dz = np.full(n, -h)
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    weight = area * h / dist**3  # solid angle per history (sr), uniform-area sampling
    u, v, w = dx / dist, dy / dist, dz / dist
    t_in = _entry(src[0], src[1], src[2], u, v, w, radius, thick)
    hit = np.isfinite(t_in)

    score = np.zeros(n)
    hist = np.nonzero(hit)[0]
    x = src[0] + t_in[hist] * u[hist]
    y = np.maximum(src[1] + t_in[hist] * v[hist], 0.0)
    z = np.clip(src[2] + t_in[hist] * w[hist], 0.0, thick)
    u, v, w = u[hist], v[hist], w[hist]
    e = e_src[hist].copy()
    e_inc = float(e.sum())
    e_dep = 0.0
    e_esc = 0.0
    adip, mix = media.adipose, media.mixture

    while hist.size:
        mu_max = lookup(media.mu_max, e)
        step = -np.log1p(-rng.random(hist.size)) / mu_max
        d_exit = _exit_distance(x, y, z, u, v, w, radius, thick)
        stay = step < d_exit
        e_esc += float(e[~stay].sum())
        if not stay.all():
            hist, x, y, z, u, v, w, e, step, mu_max = (a[stay] for a in (hist, x, y, z, u, v, w, e, step, mu_max))
        x = x + step * u
        y = y + step * v
        z = z + step * w
        central = (z >= layer) & (z <= thick - layer) & (x * x + y * y <= r_in2)
        mu_t = np.where(central, lookup(mix.mu_total, e), lookup(adip.mu_total, e))
        rr = rng.random((2, hist.size))
        real = rr[0] * mu_max < mu_t
        if not real.any():
            continue
        ir = np.nonzero(real)[0]
        er = e[ir]
        cr = central[ir]
        sel = rr[1][ir] * mu_t[ir]
        if scatter:
            mu_pe = np.where(cr, lookup(mix.mu_photo, er), lookup(adip.mu_photo, er))
            mu_ic = np.where(cr, lookup(mix.mu_incoh, er), lookup(adip.mu_incoh, er))
            is_pe = sel < mu_pe
            is_ic = (~is_pe) & (sel < mu_pe + mu_ic)
            is_coh = ~(is_pe | is_ic)
        else:
            is_pe = np.ones(ir.size, dtype=bool)
            is_ic = np.zeros(ir.size, dtype=bool)
            is_coh = is_ic
        dead = np.zeros(hist.size, dtype=bool)

        # Photoelectric: all energy local.
        if is_pe.any():
            j = ir[is_pe]
            dep = e[j]
            e_dep += float(dep.sum())
            cj = central[j]
            score[hist[j[cj]]] += dep[cj] * lookup(media.gland_ratio_photo, dep[cj])
            dead[j] = True
        # Incoherent: recoil energy local, photon continues.
        if is_ic.any():
            j = ir[is_ic]
            cj = central[j]
            cos_t = np.empty(j.size)
            e_new = np.empty(j.size)
            for mask, med in ((cj, mix), (~cj, adip)):
                if mask.any():
                    cos_t[mask], e_new[mask] = sample_incoherent(e[j[mask]], med.scatter, rng)
            dep = e[j] - e_new
            e_dep += float(dep.sum())
            score[hist[j[cj]]] += dep[cj] * lookup(media.gland_ratio_incoh, e[j[cj]])
            e[j] = e_new
            u[j], v[j], w[j] = _rotate(u[j], v[j], w[j], cos_t, rng.random(j.size) * 2 * np.pi)
            low = e_new < ENERGY_CUTOFF_KEV
            if low.any():
                jl = j[low]
                e_dep += float(e[jl].sum())
                cl = central[jl]
                score[hist[jl[cl]]] += e[jl[cl]] * lookup(media.gland_ratio_photo, e[jl[cl]])
                dead[jl] = True
        # Coherent: direction only.
        if is_coh.any():
            j = ir[is_coh]
            cj = central[j]
            cos_t = np.empty(j.size)
            for mask, med in ((cj, mix), (~cj, adip)):
                if mask.any():
                    cos_t[mask] = sample_coherent(e[j[mask]], med.scatter, rng)
            u[j], v[j], w[j] = _rotate(u[j], v[j], w[j], cos_t, rng.random(j.size) * 2 * np.pi)
        if dead.any():
            keep = ~dead
            hist, x, y, z, u, v, w, e = (a[keep] for a in (hist, x, y, z, u, v, w, e))

    s = weight * score
    return Tally(
        n=np.bincount(bins, minlength=nb).astype(float),
        sum=np.bincount(bins, weights=s, minlength=nb),
        sumsq=np.bincount(bins, weights=s * s, minlength=nb),
        energy_incident_kev=e_inc,
        energy_deposited_kev=e_dep,
        energy_escaped_kev=e_esc,
        histories=n,
    )


def simulate(
    geom: BreastGeometry,
    bin_energies_kev: np.ndarray,
    bin_probabilities: np.ndarray,
    photons: int,
    seed: int,
    media: Media | None = None,
    batch_size: int = 100_000,
    scatter: bool = True,
) -> Tally:
    """Run ``photons`` histories in batches with a seeded PCG64 stream.

    Parameters
    ----------
    bin_probabilities : ndarray
        Sampling probability of each energy bin (any non-negative weights;
        normalised here). The per-bin means do not depend on it, only their
        variances do.
    seed : int
        Same seed, same arguments -> identical result.
    """
    if media is None:
        media = make_media(geom.glandularity)
    p = np.asarray(bin_probabilities, dtype=float)
    cdf = np.cumsum(p / p.sum())
    rng = np.random.Generator(np.random.PCG64(seed))
    nb = bin_energies_kev.size
    total = Tally(np.zeros(nb), np.zeros(nb), np.zeros(nb))
    done = 0
    while done < photons:
        n = min(batch_size, photons - done)
        total.add(transport_batch(geom, media, bin_energies_kev, cdf, n, rng, scatter=scatter))
        done += n
    return total
