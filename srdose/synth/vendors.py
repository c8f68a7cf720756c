"""Vendor profiles: identity of the units, their AEC behaviour and report quirks.

A :class:`VendorProfile` answers two kinds of question:

* *physics* (used by :mod:`srdose.synth.model`): which target/filter and kV
  the AEC picks for a thickness, how the tube loading splits into pulses or
  projections, the tomosynthesis sweep;
* *encoding* (used by :mod:`srdose.synth.rdsr`): coding style, which items
  the vendor writes and how, number formatting, transfer syntax.

The quirks of Hologic, GE and IMS Giotto imitate public vendor test files
(OpenREM's); Siemens and Fujifilm have no public file and follow the
standard templates, with the one Siemens tomosynthesis quirk that has been
reported (the exposure of one projection only; no primary source found, see
docs/vendors.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import codes as C
from .model import Event, Pulse, stable_rng, stable_uid

VENDORS: tuple[str, ...] = ("hologic", "ge", "giotto", "siemens", "fujifilm")

__all__ = ["VENDORS", "Unit", "VendorProfile", "get_profile", "make_unit"]


@dataclass(frozen=True)
class Unit:
    """One X-ray unit: its identity and its small individual differences."""

    vendor: str
    index: int
    manufacturer: str
    model: str
    serial: str
    station: str
    ae_title: str
    institution: str
    department: str
    software: str
    device_uid: str
    sid_mm: float
    support_gap_mm: float
    hvl_offset: float  # unit-to-unit HVL spread (mm Al)
    output_factor: float  # unit-to-unit tube output spread
    dose_factor: float  # unit-to-unit AEC dose level spread
    locale: str
    accession_prefix: str
    view_order: tuple[tuple[str, str], ...]
    dbt_capable: bool = True
    legacy: bool = False  # older model (GE Senographe Essential)


_INSTITUTIONS = {
    "en": (
        "Northfield Breast Screening Unit",
        "Riverside Breast Screening Service",
        "St Aldhelm's Hospital",
        "Kingsbridge Breast Imaging Centre",
        "Westmere General Hospital",
        "Ashdown Mobile Screening Unit",
        "Harbourside Breast Clinic",
        "Fenwick Vale Hospital",
    ),
    "it": (
        "Ospedale San Rocco",
        "Centro Senologico Val d'Adige",
        "Presidio Ospedaliero Borgo Alto",
        "Clinica Santa Chiara",
    ),
}

_ORDERS = (
    (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")),
    (("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")),
)


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, size=n))


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


class VendorProfile:
    """Behaviour shared by all vendors; subclasses override what differs."""

    name = ""
    locale = "en"
    # --- study mix ---
    dbt_fraction = 0.25
    combo_share = 0.5
    combo_order = ("DBT", "2D")
    zero_agd_rate = 0.0
    # --- dose level ---
    agd_factor = 1.0
    dbt_agd_ratio = 1.2
    dbt_T = 0.97
    thickness_decimals = 0
    # --- encoding ---
    code_style = "SRT"
    laterality_site = "target_region"  # or "anatomical_structure"
    observer_identity = True
    detector_available = C.DETECTOR_DATA_AVAILABLE
    filter_type = C.STRIP_FILTER
    anode_concept = C.ANODE_TARGET_MATERIAL
    exposure_unit: C.Code = C.UNIT_UAS
    reference_point = C.RP_PATIENT_SURFACE
    source_of_dose = C.AUTOMATED_DATA_COLLECTION
    transfer_syntax = C.EXPLICIT_VR_LITTLE_ENDIAN
    character_set: str | None = "ISO_IR 100"
    referring_physician = False
    accumulated_order = ("L", "R")
    write_force = False
    series_number = 1

    # ------------------------------------------------------------ identity
    def unit_identity(self, rng: np.random.Generator, index: int) -> dict:
        """Manufacturer, model, serial, station, software of unit ``index``."""
        raise NotImplementedError

    # ------------------------------------------------------------ physics
    def technique(self, unit: Unit, mode: str, t: float, rng: np.random.Generator) -> tuple[str, str, float, float]:
        """AEC choice: (target, filter, filter thickness mm, kV)."""
        raise NotImplementedError

    def zero_dose_technique(self, unit: Unit, rng: np.random.Generator):
        """Technique of a zero-dose event (only Hologic has them)."""
        return ("W", str(rng.choice(["RH", "AG"])), 0.05, 20.0)

    def pulses(
        self,
        unit: Unit,
        mode: str,
        kv: float,
        mas: float,
        t: float,
        a0: float | None,
        a1: float | None,
        rng: np.random.Generator,
    ) -> tuple[float, list[Pulse], int]:
        """Split the tube loading: (nominal mA, pulses, number of projections)."""
        raise NotImplementedError

    def positioner_angle(self, view: str, laterality: str, rng: np.random.Generator) -> float:
        """C-arm angle of a view (right breast negative for obliques)."""
        sign = -1.0 if laterality == "R" else 1.0
        if view == "CC":
            return round(float(rng.normal(0.0, 0.1)), 1)
        if view == "XCCL":
            return round(sign * float(rng.uniform(5.0, 15.0)), 1)
        if view == "MLO":
            return round(sign * float(rng.uniform(40.0, 55.0)), 1)
        return round(sign * 90.0, 1)  # ML, LM

    def sweep(self, center: float, rng: np.random.Generator) -> tuple[float, float]:
        """Start and end angle of a tomosynthesis sweep."""
        half = self.sweep_half_angle
        return (round(center - half, 2), round(center + half, 2))

    sweep_half_angle = 7.5

    def _split_projections(
        self, kv: float, mas: float, n: int, ma: float, a0: float, a1: float, mas_decimals: int = 2
    ) -> list[Pulse]:
        """Equal projections over the sweep."""
        per = round(mas / n, mas_decimals)
        step = (a1 - a0) / (n - 1) if n > 1 else 0.0
        return [Pulse(kv, ma, per / ma * 1000.0, a0 + i * step) for i in range(n)]

    # ------------------------------------------------------------ naming
    def protocol_name(self, mode: str, view: str, laterality: str, zero_dose: bool) -> str:
        """Acquisition Protocol text of an event."""
        return "Tomo" if mode == "DBT" else "Routine"

    def study_description(self, kind: str) -> str:
        """Study Description for a study kind."""
        return {
            "2D": "Mammography screening",
            "DBT": "Breast tomosynthesis screening",
            "COMBO": "Mammography with tomosynthesis",
        }[kind]

    def images_per_event(self, event: Event) -> int:
        """How many image objects an event references."""
        return 1

    # ------------------------------------------------------------ numbers
    def fmt(self, value: float, kind: str) -> str:
        """Decimal string of a numeric value as the vendor writes it.

        ``kind`` is one of ``dose, hvl, kv, ma, ms, s, uas, mm, deg, n, area,
        filter, focal, count, index``.
        """
        nd = {
            "dose": 3,
            "hvl": 3,
            "kv": 1,
            "ma": 1,
            "ms": 2,
            "s": 4,
            "uas": 0,
            "mm": 1,
            "deg": 1,
            "n": 1,
            "area": 4,
            "filter": 3,
            "focal": 1,
            "count": 0,
            "index": 0,
        }[kind]
        return _compact(value, nd)


def _compact(value: float, decimals: int) -> str:
    """Round and strip trailing zeros (``30.480`` -> ``"30.48"``, ``2.0`` -> ``"2"``)."""
    s = f"{value:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


# ============================================================================
class Hologic(VendorProfile):
    """Hologic Selenia Dimensions / 3Dimensions."""

    name = "hologic"
    dbt_fraction = 0.5
    combo_share = 0.5
    combo_order = ("DBT", "2D")
    zero_agd_rate = 0.02
    agd_factor = 1.0
    dbt_agd_ratio = 1.25
    dbt_T = 0.98
    code_style = "SNM3"
    laterality_site = "anatomical_structure"
    observer_identity = False  # identity only in the header
    detector_available = C.DETECTOR_DATA_AVAILABLE_HOLOGIC
    filter_type = C.STRIP_FILTER_HOLOGIC
    reference_point = C.RP_4CM2_BREAST
    source_of_dose = C.COMPUTED_FROM_IMAGE_ATTRIBUTES
    character_set = None

    def unit_identity(self, rng, index):
        model = "3Dimensions" if index % 3 == 2 else "Selenia Dimensions"
        major = int(rng.integers(8, 11))
        return dict(
            manufacturer="HOLOGIC, Inc.",
            model=model,
            serial=("3DM" if model == "3Dimensions" else "SDM") + _digits(rng, 7),
            station=f"HOLOGICDBT{index + 1:02d}",
            software=f"AWS:1.{major}.{int(rng.integers(0, 5))}.{int(rng.integers(10, 99))}",
            sid_mm=700.0,
            support_gap_mm=20.0,
        )

    def technique(self, unit, mode, t, rng):
        if mode == "DBT":
            return ("W", "AL", 0.7, _clip(round(26 + 0.2 * (t - 20)), 26, 44))
        if t <= 70:
            return ("W", "RH", 0.05, _clip(round(25 + 0.12 * (t - 20)), 25, 31))
        return ("W", "AG", 0.05, _clip(round(31 + 0.1 * (t - 70)), 31, 35))

    def pulses(self, unit, mode, kv, mas, t, a0, a1, rng):
        if kv <= 20:
            ma = 40.0
        elif mode == "DBT":
            ma = 140.0
        else:
            ma = 200.0 if kv <= 26 else (180.0 if kv <= 29 else 160.0)
        mas = round(mas, 1)  # Hologic's uAs are multiples of 100
        if mode == "DBT":
            n = 15
            step = (a1 - a0) / (n - 1)
            per = mas / n
            return ma, [Pulse(kv, ma, per / ma * 1000.0, a0 + i * step) for i in range(n)], n
        return ma, [Pulse(kv, ma, mas / ma * 1000.0)], 1

    def sweep(self, center, rng):
        # Hologic reports the sweep relative to the C-arm: -7.4 to 7.6 always.
        return (-7.4, 7.6)

    def positioner_angle(self, view, laterality, rng):
        if view == "CC":
            return 0.1  # as written by the real unit
        return super().positioner_angle(view, laterality, rng)

    def protocol_name(self, mode, view, laterality, zero_dose):
        base = f"{laterality} {view}"
        return base + (" Tomo" if mode == "DBT" else "")

    def study_description(self, kind):
        return {
            "2D": "XR Breast screening Both",
            "DBT": "XR Breast tomosynthesis Both",
            "COMBO": "XR Breast tomosynthesis combo Both",
        }[kind]

    def performed_procedure_code(self, kind: str) -> C.Code:
        """Hologic's private procedure code (scheme 99HOLX)."""
        return {
            "2D": C.Code("stds", "99HOLX", "Standard Screening"),
            "DBT": C.Code("stdt", "99HOLX", "Standard Screening - Tomo"),
            "COMBO": C.Code("stdc", "99HOLX", "Standard Screening - Combo"),
        }[kind]

    def fmt(self, value, kind):
        if kind == "hvl":
            return f"{value:.3f}"
        if kind in ("filter", "focal"):
            return _compact(value, 2)
        if kind in ("count", "index"):
            return str(int(round(value)))
        return f"{value:.2f}"


# ============================================================================
class GE(VendorProfile):
    """GE Senographe Pristina (and Senographe Essential on some units)."""

    name = "ge"
    dbt_fraction = 0.2
    combo_share = 0.6
    combo_order = ("2D", "DBT")
    agd_factor = 1.05
    dbt_agd_ratio = 1.05
    dbt_T = 0.97
    thickness_decimals = 1
    sweep_half_angle = 12.5
    laterality_site = "anatomical_structure"
    series_number = 910

    def unit_identity(self, rng, index):
        legacy = index % 3 == 2
        if legacy:
            return dict(
                manufacturer="GE MEDICAL SYSTEMS",
                model="Senographe Essential",
                serial=_digits(rng, 6) + "BU",
                station=f"SENOESS{index + 1}",
                software=f"ADS_54.{int(rng.integers(10, 40))}",
                sid_mm=660.0,
                support_gap_mm=23.2,
                legacy=True,
                dbt_capable=False,
            )
        return dict(
            manufacturer="GE HEALTHCARE",
            model="Senographe Pristina",
            serial="10" + _digits(rng, 5),
            station=f"Pristina{index + 1}",
            software=f"7.{int(rng.integers(60, 80))}.{int(rng.integers(10, 99))}.1",
            sid_mm=660.0,
            support_gap_mm=23.2,
        )

    def technique(self, unit, mode, t, rng):
        if unit.legacy:
            if t < 45:
                return ("MO", "MO", 0.03, _clip(round(26 + 0.1 * (t - 20)), 26, 28))
            if t < 60:
                return ("MO", "RH", 0.025, _clip(round(27 + 0.1 * (t - 45)), 27, 29))
            return ("RH", "RH", 0.025, _clip(round(29 + 0.07 * (t - 60)), 29, 32))
        if mode == "DBT":
            return ("RH", "AG", 0.03, _clip(round(30 + 0.1 * t), 32, 40))
        if t < 35:
            return ("MO", "MO", 0.03, _clip(round(26 + 0.1 * (t - 20)), 26, 28))
        return ("RH", "AG", 0.03, _clip(round(29 + 0.11 * t), 31, 40))

    def pulses(self, unit, mode, kv, mas, t, a0, a1, rng):
        # A ~2 mA pre-pulse of ~50 ms measures the breast, then the main
        # exposure; kV and mA are the values measured per pulse.
        pre = Pulse(
            round(kv + 0.1, 2),
            round(2.0 + float(rng.uniform(0, 0.012)), 2),
            round(float(rng.uniform(50.5, 51.6)), 2),
            a0 if a0 is not None else 0.0,
        )
        main_mas = max(mas - pre.mas, 1.0)
        if mode == "DBT":
            n = 9
            per = main_mas / n
            width = _clip(60.0 + 0.8 * (t - 20), 50.0, 140.0)
            ma = round(_clip(per / width * 1000.0, 20.0, 120.0), 2)
            step = (a1 - a0) / (n - 1)
            projs = [Pulse(round(kv - 0.01, 2), ma, round(per / ma * 1000.0, 2), a0 + i * step) for i in range(n)]
            return ma, [pre] + projs, n
        time_s = 0.45 + 0.012 * (t - 20)
        ma = round(_clip(main_mas / time_s, 20.0, 100.0), 2)
        main = Pulse(round(kv - 0.01 + float(rng.normal(0, 0.01)), 2), ma, round(main_mas / ma * 1000.0, 2))
        return ma, [pre, main], 1

    def positioner_angle(self, view, laterality, rng):
        if view == "CC":
            return 0.0
        return float(round(super().positioner_angle(view, laterality, rng)))

    def protocol_name(self, mode, view, laterality, zero_dose):
        return "3D STD" if mode == "DBT" else "ROUTINE"

    def fmt(self, value, kind):
        nd = {
            "dose": 2,
            "hvl": 2,
            "kv": 2,
            "ma": 2,
            "ms": 2,
            "s": 5,
            "uas": 0,
            "mm": 1,
            "deg": 1,
            "n": 0,
            "area": 4,
            "filter": 3,
            "focal": 1,
            "count": 0,
            "index": 0,
        }[kind]
        return _compact(value, nd)


# ============================================================================
class Giotto(VendorProfile):
    """IMS Giotto Class."""

    name = "giotto"
    locale = "it"
    dbt_fraction = 0.35
    combo_share = 0.4
    combo_order = ("DBT", "2D")
    agd_factor = 1.1
    dbt_agd_ratio = 1.35
    dbt_T = 0.96
    anode_concept = C.ANODE_TARGET_MATERIAL_GIOTTO
    exposure_unit = C.UNIT_UAS_GIOTTO
    transfer_syntax = C.EXPLICIT_VR_BIG_ENDIAN
    referring_physician = True
    accumulated_order = ("R", "L")
    sweep_half_angle = 13.735
    series_number = 5

    def unit_identity(self, rng, index):
        station = "GIOTTO CLASS" if index == 0 else f"GIOTTO CLASS {index + 1}"
        return dict(
            manufacturer="IMS GIOTTO S.p.A.",
            model="GIOTTO CLASS",
            serial="9" + _digits(rng, 5),
            station=station,
            software=(
                f"Raffaello 4.{int(rng.integers(15, 21))}.{int(rng.integers(0, 9))}.0"
                f" - IMSProc 4.{int(rng.integers(12, 18))}.3.2"
            ),
            sid_mm=685.5,
            support_gap_mm=20.0,
        )

    def technique(self, unit, mode, t, rng):
        if mode == "DBT":
            return ("W", "AG", 0.05, _clip(round(23 + 0.1 * t), 25, 35))
        return ("W", "AG", 0.05, _clip(round(24 + 0.09 * t), 25, 34))

    def pulses(self, unit, mode, kv, mas, t, a0, a1, rng):
        if mode == "DBT":
            # 11 projections; the first carries about half the others' load.
            n, ma, first = 11, 104.0, 0.465
            x = mas / (n - 1 + first)
            loads = [round(first * x * 1000.0, -1) / 1000.0]
            loads += [round(x * (1 + float(rng.normal(0, 0.002))) * 1000.0, -1) / 1000.0 for _ in range(n - 1)]
            step = (a1 - a0) / (n - 1)
            return ma, [Pulse(kv, ma, m / ma * 1000.0, a0 + i * step) for i, m in enumerate(loads)], n
        ma = float(_clip(round(mas / (0.5 + 0.01 * t)), 60, 160))
        m = round(mas * 1000.0, -1) / 1000.0
        return ma, [Pulse(kv, ma, m / ma * 1000.0)], 1

    def sweep(self, center, rng):
        h = self.sweep_half_angle
        return (round(center - h + float(rng.normal(0, 0.005)), 5), round(center + h + float(rng.normal(0, 0.005)), 5))

    def positioner_angle(self, view, laterality, rng):
        sign = -1.0 if laterality == "R" else 1.0
        return {"CC": 0.0, "XCCL": sign * 10.0, "MLO": sign * 45.0}.get(view, sign * 90.0)

    def protocol_name(self, mode, view, laterality, zero_dose):
        return "Tomo Standard" if mode == "DBT" else "2D Standard"

    def event_label(self, event: Event, rng: np.random.Generator) -> str:
        """Giotto's Irradiation Event Label: a dump of its AEC state."""
        aec = "TomoAEC" if event.mode == "DBT" else "AEC"
        fname = "AEC_Standard_Tomo_v.1.03" if event.mode == "DBT" else "AEC_Standard_2D_v.2.11"
        w = round(float(rng.uniform(3.0, 6.0)), 3)
        h = round(float(rng.uniform(12.0, 16.0)), 3)
        return (
            f'AUTOMATIC - {aec}: "{fname}" - AEC Line: {int(event.thickness_mm)} '
            f"{int(event.kvp)} 8 0.74 0 {int(rng.integers(4000, 6500))} "
            f"{int(rng.integers(50, 80))} - AEC Area: {h}cm x {w}cm"
        )

    def images_per_event(self, event):
        return event.n_projections if event.is_dbt else 1

    def study_description(self, kind):
        return {
            "2D": "Mammografia bilaterale",
            "DBT": "Tomosintesi bilaterale",
            "COMBO": "Pacchetto senologico con tomosintesi",
        }[kind]

    def fmt(self, value, kind):
        if kind in ("kv", "ma", "uas", "count", "index", "n"):
            return str(int(round(value)))
        return f"{value:.6f}"


# ============================================================================
class Siemens(VendorProfile):
    """Siemens Mammomat Revelation / Inspiration (standard templates)."""

    name = "siemens"
    dbt_fraction = 0.25
    combo_share = 0.5
    combo_order = ("2D", "DBT")
    agd_factor = 0.95
    dbt_agd_ratio = 1.4
    dbt_T = 0.93
    sweep_half_angle = 25.0
    write_force = True
    series_number = 999

    def unit_identity(self, rng, index):
        if index % 2 == 0:
            return dict(
                manufacturer="Siemens Healthineers",
                model="MAMMOMAT Revelation",
                serial=_digits(rng, 5),
                station=f"MAMREV{index + 1:02d}",
                software=f"VB{int(rng.integers(10, 20))}{'ABCDE'[int(rng.integers(0, 5))]}",
                sid_mm=650.0,
                support_gap_mm=17.0,
            )
        return dict(
            manufacturer="SIEMENS",
            model="MAMMOMAT Inspiration",
            serial=_digits(rng, 5),
            station=f"MAMINSP{index + 1:02d}",
            software=f"VB{int(rng.integers(30, 40))}{'ABCDE'[int(rng.integers(0, 5))]}",
            sid_mm=650.0,
            support_gap_mm=17.0,
        )

    def technique(self, unit, mode, t, rng):
        if mode == "DBT":
            return ("W", "RH", 0.05, _clip(round(25 + 0.11 * t), 26, 35))
        return ("W", "RH", 0.05, _clip(round(24 + 0.11 * t), 25, 34))

    def pulses(self, unit, mode, kv, mas, t, a0, a1, rng):
        if mode == "DBT":
            n = 25
            per = mas / n
            width = _clip(30.0 + 0.6 * (t - 20), 25.0, 90.0)
            ma = round(_clip(per / width * 1000.0, 40.0, 200.0), 1)
            return ma, self._split_projections(kv, mas, n, ma, a0, a1, 3), n
        mas = round(mas, 1)
        ma = round(_clip(mas / (0.5 + 0.015 * (t - 20)), 50.0, 200.0), 1)
        return ma, [Pulse(kv, ma, mas / ma * 1000.0)], 1

    def protocol_name(self, mode, view, laterality, zero_dose):
        return "Tomosynthesis" if mode == "DBT" else "Mammo Standard"


# ============================================================================
class Fujifilm(VendorProfile):
    """Fujifilm Amulet Innovality (FDR MS-3500), standard templates in SCT codes."""

    name = "fujifilm"
    dbt_fraction = 0.25
    combo_share = 0.5
    combo_order = ("2D", "DBT")
    agd_factor = 0.9
    dbt_agd_ratio = 1.05
    dbt_T = 0.98
    code_style = "SCT"
    write_force = True
    character_set = "ISO_IR 192"
    series_number = 100

    def unit_identity(self, rng, index):
        return dict(
            manufacturer="FUJIFILM Corporation",
            model="FDR MS-3500",
            serial="2" + _digits(rng, 7),
            station=f"AMULET{index + 1:02d}",
            software=f"V{int(rng.integers(8, 12))}.{int(rng.integers(0, 4))}",
            sid_mm=650.0,
            support_gap_mm=20.0,
        )

    def technique(self, unit, mode, t, rng):
        if mode == "DBT":
            return ("W", "AL", 0.7, _clip(round(26 + 0.18 * (t - 20)), 26, 40))
        return ("W", "RH", 0.05, _clip(round(24.5 + 0.1 * t), 25, 34))

    def sweep(self, center, rng):
        # ST mode (±7.5°) mostly, HR mode (±20°) sometimes.
        half = 20.0 if rng.random() < 0.2 else 7.5
        return (round(center - half, 1), round(center + half, 1))

    def pulses(self, unit, mode, kv, mas, t, a0, a1, rng):
        if mode == "DBT":
            n = 15
            per = mas / n
            ma = round(_clip(per / _clip(30.0 + 0.5 * (t - 20), 25, 80) * 1000.0, 40, 160), 1)
            return ma, self._split_projections(kv, mas, n, ma, a0, a1, 3), n
        mas = round(mas, 1)
        ma = round(_clip(mas / (0.45 + 0.014 * (t - 20)), 50.0, 180.0), 1)
        return ma, [Pulse(kv, ma, mas / ma * 1000.0)], 1

    def protocol_name(self, mode, view, laterality, zero_dose):
        return "Tomosynthesis" if mode == "DBT" else "Standard"

    def fmt(self, value, kind):
        nd = {
            "dose": 3,
            "hvl": 3,
            "kv": 0,
            "ma": 1,
            "ms": 1,
            "s": 3,
            "uas": 0,
            "mm": 0,
            "deg": 1,
            "n": 0,
            "area": 4,
            "filter": 3,
            "focal": 1,
            "count": 0,
            "index": 0,
        }[kind]
        return _compact(value, nd)


_PROFILES: dict[str, VendorProfile] = {p.name: p for p in (Hologic(), GE(), Giotto(), Siemens(), Fujifilm())}


def get_profile(vendor: str) -> VendorProfile:
    """Return the profile of a vendor name (case-insensitive)."""
    try:
        return _PROFILES[vendor.lower()]
    except KeyError:
        raise ValueError(f"unknown vendor {vendor!r}; choose from {', '.join(VENDORS)}") from None


def make_unit(vendor: str, index: int = 0) -> Unit:
    """Return unit ``index`` of a vendor.

    A unit's identity depends only on (vendor, index), not on the run seed,
    so batches generated with different seeds share the same units.
    """
    profile = get_profile(vendor)
    rng = stable_rng("srdose.synth.unit", profile.name, index)
    ident = profile.unit_identity(rng, index)
    locale = profile.locale
    insts = _INSTITUTIONS[locale]
    inst = insts[(index + int(rng.integers(0, len(insts)))) % len(insts)]
    initials = "".join(w[0] for w in inst.replace("'", "").split() if w[0].isalpha()).upper()
    return Unit(
        vendor=profile.name,
        index=index,
        manufacturer=ident["manufacturer"],
        model=ident["model"],
        serial=ident["serial"],
        station=ident["station"][:16],
        ae_title=ident["station"][:16].upper().replace(" ", "_"),
        institution=inst,
        department="Breast Screening" if locale == "en" else "Senologia",
        software=ident["software"],
        device_uid=stable_uid("srdose.synth.device", profile.name, index),
        sid_mm=ident["sid_mm"],
        support_gap_mm=ident["support_gap_mm"],
        hvl_offset=round(float(rng.normal(0.0, 0.008)), 3),
        output_factor=float(rng.uniform(0.92, 1.08)),
        dose_factor=float(rng.uniform(0.9, 1.1)),
        locale=locale,
        accession_prefix=initials[:3] or "MG",
        view_order=_ORDERS[int(rng.integers(0, len(_ORDERS)))],
        dbt_capable=ident.get("dbt_capable", True),
        legacy=ident.get("legacy", False),
    )
