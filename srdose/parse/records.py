"""Typed records a dose object is parsed into.

The parser fills these from an RDSR content tree or an MG image header; the
store writes them; nothing here touches DICOM or SQL. Values are in the
canonical units of :mod:`srdose.units` (kV, mA, mAs, ms, mm, N, mGy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Filter:
    """One X-ray filter container (TID 10007 X-Ray Filters, 113771)."""

    material: Optional[str] = None  # element symbol: Mo, Rh, Ag, Al, Cu
    filter_type: Optional[str] = None
    thickness_min_mm: Optional[float] = None
    thickness_max_mm: Optional[float] = None


@dataclass
class Pulse:
    """Technique factors of one pulse (or DBT projection) inside an event."""

    index: int
    kvp: Optional[float] = None
    tube_current_ma: Optional[float] = None
    exposure_mas: Optional[float] = None
    pulse_width_ms: Optional[float] = None


@dataclass
class IrradiationEvent:
    """One irradiation event (TID 10003 container 113706).

    Per-pulse values are kept in :attr:`pulses`; the event-level technique
    factors (:attr:`kvp`, :attr:`mas`, :attr:`anode`, :attr:`filter_material`)
    are derived from them by :func:`srdose.parse.rdsr.derive_event_values`.
    """

    event_uid: Optional[str] = None
    datetime_started: Optional[str] = None  # DICOM DT, as written
    event_type: Optional[str] = None  # stationary | rotational | stepping
    acquisition: Optional[str] = None  # 2D | DBT
    protocol: Optional[str] = None
    label: Optional[str] = None
    view: Optional[str] = None  # CC, MLO, ...
    view_modifiers: list[str] = field(default_factory=list)
    laterality: Optional[str] = None  # L | R | B
    target_region: Optional[str] = None
    # event-level technique factors (derived)
    kvp: Optional[float] = None
    mas: Optional[float] = None
    tube_current_ma: Optional[float] = None
    exposure_time_ms: Optional[float] = None
    irradiation_duration_ms: Optional[float] = None
    n_pulses: Optional[int] = None
    pulses: list[Pulse] = field(default_factory=list)
    anode: Optional[str] = None
    filters: list[Filter] = field(default_factory=list)
    filter_material: Optional[str] = None
    filter_thickness_mm: Optional[float] = None
    focal_spot_mm: Optional[float] = None
    grid: Optional[str] = None
    compressed_thickness_mm: Optional[float] = None
    compression_force_n: Optional[float] = None
    compression_pressure_kpa: Optional[float] = None
    compression_contact_area_mm2: Optional[float] = None
    hvl_mm: Optional[float] = None
    entrance_exposure_mgy: Optional[float] = None
    reference_point: Optional[str] = None
    agd_mgy: Optional[float] = None
    positioner_primary_angle_deg: Optional[float] = None
    positioner_primary_end_angle_deg: Optional[float] = None
    positioner_secondary_angle_deg: Optional[float] = None
    source_detector_mm: Optional[float] = None
    source_rp_mm: Optional[float] = None
    dose_area_product_gym2: Optional[float] = None
    flags: list[str] = field(default_factory=list)

    def flag(self, name: str) -> None:
        """Add a data-quality flag once."""
        if name not in self.flags:
            self.flags.append(name)


@dataclass
class AccumulatedDose:
    """Accumulated AGD for one breast (TID 10005, 111637)."""

    laterality: Optional[str]
    agd_mgy: Optional[float]


@dataclass
class Device:
    """The X-ray unit; identity = manufacturer + model + serial."""

    manufacturer: Optional[str] = None
    model: Optional[str] = None
    serial: Optional[str] = None
    station: Optional[str] = None
    institution: Optional[str] = None
    department: Optional[str] = None
    software: Optional[str] = None
    observer_uid: Optional[str] = None


@dataclass
class Study:
    """Study-level facts. Identifiers here are cleared by pseudonymisation."""

    study_instance_uid: Optional[str] = None
    study_date: Optional[str] = None  # YYYYMMDD
    study_time: Optional[str] = None  # HHMMSS
    description: Optional[str] = None
    procedure: Optional[str] = None
    age_years: Optional[float] = None
    sex: Optional[str] = None
    # Only held between parse and store; never written anywhere.
    patient_id: Optional[str] = field(default=None, repr=False)
    accession: Optional[str] = field(default=None, repr=False)
    patient_name: Optional[str] = field(default=None, repr=False)
    # a test / QA phantom study (set at ingest from the ID or name above)
    not_patient: bool = False


@dataclass
class DoseReport:
    """Everything srdose keeps from one dose object (RDSR or MG image)."""

    sop_instance_uid: str
    sop_class_uid: str
    source: str  # rdsr | image
    device: Device
    study: Study
    events: list[IrradiationEvent] = field(default_factory=list)
    accumulated: list[AccumulatedDose] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
