"""Open Monte Carlo of the Dance breast model: conversion factors g, c, s, t, T.

Modules
-------
materials
    Hammerstein tissue compositions, xraylib cross-sections, form factors and
    incoherent scattering functions on an energy grid.
spectra
    spekpy spectra on shared 0.5 keV bins; HVL from air kerma in aluminium.
transport
    Vectorised, seeded photon transport through the half-cylinder breast.
conversion
    Folding per-energy-bin responses with spectra into g, c, s, t and T.
systems
    Beams and DBT sweeps tabulated (with their sources).
tables
    Generating the shipped CSV tables (their files through ``srdose.physics.io``).

The physics modules (materials, spectra, transport, conversion) are pure
functions on numpy arrays. The validation report is written by
``tools/mc_report.py`` in the source tree.
"""

from .conversion import (
    Response,
    dose_per_kerma,
    independent_ratio,
    spectrum_ratio,
    sweep_T,
    t_factor,
)
from .transport import BreastGeometry, make_media, simulate

__all__ = [
    "BreastGeometry",
    "Response",
    "dose_per_kerma",
    "independent_ratio",
    "make_media",
    "simulate",
    "spectrum_ratio",
    "sweep_T",
    "t_factor",
]
