"""Photon histories per second of srdose's Monte Carlo, on one core.

Peer measured in the same run: the same physics and geometry written as a
plain Python loop, one photon at a time (scalar ``math``/``random``), which is
what a straightforward non-vectorised implementation costs. Both transport a
Mo/Mo 0.03 mm spectrum of HVL 0.40 mm Al through the 5 cm, 50 % glandular
Dance breast.

    python bench/bench_montecarlo.py [--photons 2000000] [--peer-photons 20000]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core

import argparse  # noqa: E402
import bisect  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from srdose.physics.montecarlo import materials, spectra, systems, transport  # noqa: E402
from srdose.physics.montecarlo.materials import HC_KEV_ANGSTROM  # noqa: E402


def peer_loop(geom, media, energies, cdf, n, seed):
    """Scalar, one-photon-at-a-time version of transport_batch (same physics)."""
    rnd = random.Random(seed)
    e0, de = materials.GRID_E0_KEV, materials.GRID_DE_KEV
    tabs = {
        name: list(arr)
        for name, arr in (
            ("mu_max", media.mu_max),
            ("m_tot", media.mixture.mu_total),
            ("a_tot", media.adipose.mu_total),
            ("m_pe", media.mixture.mu_photo),
            ("a_pe", media.adipose.mu_photo),
            ("m_ic", media.mixture.mu_incoh),
            ("a_ic", media.adipose.mu_incoh),
            ("r_pe", media.gland_ratio_photo),
            ("r_ic", media.gland_ratio_incoh),
        )
    }

    def lk(name, e):
        f = (e - e0) / de
        i = min(max(int(f), 0), len(tabs[name]) - 2)
        t = f - i
        return tabs[name][i] * (1 - t) + tabs[name][i + 1] * t

    sc = {
        m: (
            list(md.scatter.x2_grid),
            list(md.scatter.ff2_cumulative),
            list(md.scatter.x_grid),
            list(md.scatter.s_normalised),
        )
        for m, md in (("m", media.mixture), ("a", media.adipose))
    }
    cdf_l = list(cdf)
    src = geom.source_position()
    x0, x1, y0, y1 = transport.sampling_rectangle(geom)
    h = src[2] - geom.thickness_cm
    R, T, L = geom.radius_cm, geom.thickness_cm, geom.adipose_layer_cm
    score_total = 0.0
    for _ in range(n):
        e = float(energies[min(bisect.bisect_right(cdf_l, rnd.random()), len(energies) - 1)])
        px, py = x0 + (x1 - x0) * rnd.random(), y0 + (y1 - y0) * rnd.random()
        dx, dy, dz = px - src[0], py - src[1], -h
        r = math.sqrt(dx * dx + dy * dy + dz * dz)
        u, v, w = dx / r, dy / r, dz / r
        t_in = float(transport._entry(src[0], src[1], src[2], np.array([u]), np.array([v]), np.array([w]), R, T)[0])
        if not math.isfinite(t_in):
            continue
        x, y, z = src[0] + t_in * u, max(src[1] + t_in * v, 0.0), min(max(src[2] + t_in * w, 0.0), T)
        while True:
            mu_max = lk("mu_max", e)
            s = -math.log(1.0 - rnd.random()) / mu_max
            tz = (T - z) / w if w > 0 else (-z / w if w < 0 else math.inf)
            ty = -y / v if v < 0 else math.inf
            a = u * u + v * v
            b = x * u + y * v
            c = x * x + y * y - R * R
            tc = (-b + math.sqrt(max(b * b - a * c, 0.0))) / a if a > 0 else math.inf
            if s >= min(tz, ty, tc):
                break
            x, y, z = x + s * u, y + s * v, z + s * w
            central = L <= z <= T - L and x * x + y * y <= (R - L) ** 2
            k = "m" if central else "a"
            mu_t = lk(k + "_tot", e)
            if rnd.random() * mu_max >= mu_t:
                continue
            sel = rnd.random() * mu_t
            pe, ic = lk(k + "_pe", e), lk(k + "_ic", e)
            if sel < pe:
                if central:
                    score_total += e * lk("r_pe", e)
                break
            x2g, cum, xg, sn = sc[k]
            if sel < pe + ic:
                kk = e / transport.ELECTRON_REST_KEV
                eps0 = 1 / (1 + 2 * kk)
                a1 = -math.log(eps0)
                a2 = a1 + 0.5 * (1 - eps0 * eps0)
                while True:
                    if rnd.random() * a2 < a1:
                        eps = math.exp(-a1 * rnd.random())
                    else:
                        eps = math.sqrt(eps0 * eps0 + (1 - eps0 * eps0) * rnd.random())
                    omc = (1 - eps) / (eps * kk)
                    g = 1 - eps * omc * (2 - omc) / (1 + eps * eps)
                    xq = math.sqrt(0.5 * omc) * e / HC_KEV_ANGSTROM
                    if rnd.random() < g * float(np.interp(xq, xg, sn)):
                        break
                cos_t = 1 - omc
                if central:
                    score_total += (e - e * eps) * lk("r_ic", e)
                e *= eps
            else:
                x2max = (e / HC_KEV_ANGSTROM) ** 2
                amax = float(np.interp(x2max, x2g, cum))
                while True:
                    x2 = float(np.interp(rnd.random() * amax, cum, x2g))
                    cos_t = 1 - 2 * x2 / x2max
                    if rnd.random() < 0.5 * (1 + cos_t * cos_t):
                        break
            phi = 2 * math.pi * rnd.random()
            nu, nv, nw = transport._rotate(
                np.array([u]), np.array([v]), np.array([w]), np.array([cos_t]), np.array([phi])
            )
            u, v, w = float(nu[0]), float(nv[0]), float(nw[0])
    return score_total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photons", type=int, default=2_000_000)
    ap.add_argument("--peer-photons", type=int, default=20_000)
    ap.add_argument("--thickness-cm", type=float, default=5.0)
    args = ap.parse_args()

    sp = systems.momo_spectrum_for_hvl(0.40)
    geom = transport.BreastGeometry(thickness_cm=args.thickness_cm)
    media = transport.make_media(0.5)
    e = spectra.BIN_CENTRES_KEV
    cdf = np.cumsum(sp.fluence / sp.fluence.sum())
    transport.simulate(geom, e, sp.fluence, 20_000, 0, media=media)  # warm-up

    t0 = time.perf_counter()
    transport.simulate(geom, e, sp.fluence, args.photons, 1, media=media)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer_loop(geom, media, e, cdf, args.peer_photons, 1)
    t_peer = time.perf_counter() - t0

    rate = args.photons / t_vec
    peer_rate = args.peer_photons / t_peer
    print(f"geometry: {args.thickness_cm:g} cm, 50 % glandular; spectrum {sp.label} (HVL 0.40 mm Al)")
    print(f"srdose vectorised numpy : {rate:,.0f} histories/s ({args.photons:,} histories, {t_vec:.2f} s, 1 core)")
    print(f"peer: scalar Python loop: {peer_rate:,.0f} histories/s ({args.peer_photons:,} histories, {t_peer:.2f} s)")
    print(f"ratio srdose / peer     : {rate / peer_rate:,.0f} x")


if __name__ == "__main__":
    main()
