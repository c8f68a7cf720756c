"""Typed records a dose object is parsed into.

The parser fills these from an RDSR content tree or an MG image header; the
store writes them; nothing here touches DICOM or SQL. Values are in the
canonical units of :mod:`srdose.units` (kV, mA, mAs, ms, mm, N, mGy).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Filter:
    """One X-ray filter container (TID 10007 X-Ray Filters, 113771)."""

    material: str | None = None  # element symbol: Mo, Rh, Ag, Al, Cu
    filter_type: str | None = None
    thickness_min_mm: float | None = None
    thickness_max_mm: float | None = None


@dataclass
class Pulse:
    """Technique factors of one pulse (or DBT projection) inside an event."""

    index: int
    kvp: float | None = None
    tube_current_ma: float | None = None
    exposure_mas: float | None = None
    pulse_width_ms: float | None = None


@dataclass
class IrradiationEvent:
    """One irradiation event (TID 10003 container 113706).

    Per-pulse values are kept in :attr:`pulses`; the event-level technique
    factors (:attr:`kvp`, :attr:`mas`, :attr:`anode`, :attr:`filter_material`)
    are derived from them by :func:`srdose.parse.rdsr.derive_event_values`.
    """

    event_uid: str | None = None
    datetime_started: str | None = None  # DICOM DT, as written
    event_type: str | None = None  # stationary | rotational | stepping
    acquisition: str | None = None  # 2D | DBT
    protocol: str | None = None
    label: str | None = None
    view: str | None = None  # CC, MLO, ...
    view_modifiers: list[str] = field(default_factory=list)
    laterality: str | None = None  # L | R | B
    target_region: str | None = None
    # event-level technique factors (derived)
    kvp: float | None = None
    mas: float | None = None
    tube_current_ma: float | None = None
    exposure_time_ms: float | None = None
    irradiation_duration_ms: float | None = None
    n_pulses: int | None = None
    pulses: list[Pulse] = field(default_factory=list)
    anode: str | None = None
    filters: list[Filter] = field(default_factory=list)
    filter_material: str | None = None
    filter_thickness_mm: float | None = None
    focal_spot_mm: float | None = None
    grid: str | None = None
    compressed_thickness_mm: float | None = None
    compression_force_n: float | None = None
    compression_pressure_kpa: float | None = None
    compression_contact_area_mm2: float | None = None
    hvl_mm: float | None = None
    entrance_exposure_mgy: float | None = None
    reference_point: str | None = None
    agd_mgy: float | None = None
    positioner_primary_angle_deg: float | None = None
    positioner_primary_end_angle_deg: float | None = None
    positioner_secondary_angle_deg: float | None = None
    source_detector_mm: float | None = None
    source_rp_mm: float | None = None
    dose_area_product_gym2: float | None = None
    flags: list[str] = field(default_factory=list)

    def flag(self, name: str) -> None:
        """Add a data-quality flag once."""
        if name not in self.flags:
            self.flags.append(name)


@dataclass
class AccumulatedDose:
    """Accumulated AGD for one breast (TID 10005, 111637)."""

    laterality: str | None
    agd_mgy: float | None


@dataclass
class Device:
    """The X-ray unit; identity = manufacturer + model + serial."""

    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    station: str | None = None
    institution: str | None = None
    department: str | None = None
    software: str | None = None
    observer_uid: str | None = None


@dataclass
class Study:
    """Study-level facts. Identifiers here are cleared by pseudonymisation."""

    study_instance_uid: str | None = None
    study_date: str | None = None  # YYYYMMDD
    study_time: str | None = None  # HHMMSS
    description: str | None = None
    procedure: str | None = None
    age_years: float | None = None
    sex: str | None = None
    # Only held between parse and store; never written anywhere.
    patient_id: str | None = field(default=None, repr=False)
    accession: str | None = field(default=None, repr=False)
    patient_name: str | None = field(default=None, repr=False)
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
