"""Encode a planned study as an X-Ray Radiation Dose SR (TID 10001) per vendor.

Template rows follow PS3.16 TID 10001 (projection X-ray radiation dose),
TID 10002 / 10005 (accumulated mammography dose) and TID 10003 with
10003A/B/C (irradiation event), in the order the vendors write them.
Vendor deviations are switched on by the flags of
:class:`srdose.synth.vendors.VendorProfile`.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from . import _items as I
from . import codes as C
from .model import Event, Study, stable_rng, stable_uid
from .plan import plan_study
from .vendors import Giotto, Hologic, VendorProfile, get_profile

__all__ = [
    "build_study_rdsr",
    "encode_study_rdsr",
    "rdsr_elements",
    "image_sop_class",
    "file_meta",
    "IMPLEMENTATION_VERSION_NAME",
]

Elems = list  # element list, see srdose.synth._items

IMPLEMENTATION_VERSION_NAME = "SRDOSE_SYNTH_1"
#: Fixed (not pydicom's, which changes with its version) so files are
#: byte-for-byte reproducible.
IMPLEMENTATION_CLASS_UID = stable_uid("srdose.synth implementation")


def _dt_str(t: _dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


def image_sop_class(profile: VendorProfile, event: Event) -> str:
    """SOP Class of the images an event references."""
    if not event.is_dbt:
        return C.MG_FOR_PRESENTATION_SOP_CLASS
    if isinstance(profile, Giotto):
        return C.MG_FOR_PROCESSING_SOP_CLASS  # one per projection, as Giotto does
    return C.BREAST_TOMO_SOP_CLASS


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    """File meta information for a Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


# ----------------------------------------------------------------------------
# Content tree
# ----------------------------------------------------------------------------
def _laterality_mod(profile: VendorProfile, lat: str) -> Elems:
    style = profile.code_style
    return I.code(
        C.snomed("laterality", style), C.snomed("right" if lat == "R" else "left", style), rel=I.HAS_CONCEPT_MOD
    )


def _filters(profile: VendorProfile, ev: Event) -> list[Elems]:
    style = profile.code_style
    f = profile.fmt
    material = C.snomed(ev.filter, style)

    def one(with_thickness: bool) -> Elems:
        kids = [I.code(C.FILTER_TYPE, profile.filter_type), I.code(C.FILTER_MATERIAL, material)]
        if with_thickness:
            kids += [
                I.num(C.FILTER_THICKNESS_MIN, f(ev.filter_mm, "filter"), C.UNIT_MM),
                I.num(C.FILTER_THICKNESS_MAX, f(ev.filter_mm, "filter"), C.UNIT_MM),
            ]
        return I.container(C.XRAY_FILTERS, kids)

    if profile.name == "ge":
        return [one(False), one(False)]  # two containers, no thickness
    if profile.name == "giotto":
        return [one(True) for _ in ev.pulses]  # one container per pulse
    return [one(True)]


def _grids(profile: VendorProfile, ev: Event) -> list[Elems]:
    name = profile.name
    if name == "hologic":
        values = [C.NO_GRID] if ev.is_dbt else [C.GRID_IN_HOLOGIC]
    elif name == "ge":
        values = [C.NO_GRID] if ev.is_dbt else [C.RECIPROCATING_GRID]
    elif name == "giotto":
        values = [C.FOCUSED_GRID] * len(ev.pulses)
    elif name == "siemens":
        values = [C.NO_GRID] if ev.is_dbt else [C.FOCUSED_GRID, C.RECIPROCATING_GRID]
    else:
        values = [C.NO_GRID] if ev.is_dbt else [C.FOCUSED_GRID]
    return [I.code(C.XRAY_GRID, v) for v in values]


def _event(profile: VendorProfile, study: Study, ev: Event) -> tuple[Elems, str]:
    """One TID 10003 Irradiation Event X-Ray Data container, and its AGD as written."""
    style = profile.code_style
    f = profile.fmt
    name = profile.name
    zero = ev.zero_dose
    kids: list[Elems] = [
        I.code(C.ACQUISITION_PLANE, C.SINGLE_PLANE, rel=I.HAS_CONCEPT_MOD),
        I.uidref(C.IRRADIATION_EVENT_UID, ev.uid),
    ]
    if isinstance(profile, Giotto):
        label_rng = stable_rng("label", study.sop_uid, ev.uid)
        kids.append(I.text(C.IRRADIATION_EVENT_LABEL, profile.event_label(ev, label_rng)))
    kids += [
        I.datetime(C.DATETIME_STARTED, _dt_str(ev.start)),
        I.code(C.IRRADIATION_EVENT_TYPE, C.ROTATIONAL if ev.is_dbt else C.STATIONARY),
        I.text(C.ACQUISITION_PROTOCOL, ev.protocol),
    ]
    breast = C.snomed("breast", style)
    view = C.snomed(ev.view, style)
    if profile.laterality_site == "anatomical_structure":
        kids += [
            I.code(C.snomed("anatomical_structure", style), breast, children=[_laterality_mod(profile, ev.laterality)]),
            I.code(C.IMAGE_VIEW, view),
            I.code(C.TARGET_REGION, breast),
        ]
    else:
        kids += [
            I.code(C.IMAGE_VIEW, view),
            I.code(C.TARGET_REGION, breast, children=[_laterality_mod(profile, ev.laterality)]),
        ]

    # Dose (TID 10003B source data, the dose part first as the vendors do).
    k_rp = ev.k_ref_mgy if profile.reference_point == C.RP_4CM2_BREAST else ev.esak_mgy
    kids += [
        I.num(C.HALF_VALUE_LAYER, f(0.0 if zero else ev.hvl_mm, "hvl"), C.UNIT_MM),
        I.num(C.ENTRANCE_EXPOSURE_AT_RP, f(0.0 if zero else k_rp, "dose"), C.UNIT_MGY),
        I.code(C.REFERENCE_POINT_DEFINITION, profile.reference_point),
    ]
    sop_class = image_sop_class(profile, ev)
    kids += [I.image(C.ACQUIRED_IMAGE, sop_class, uid) for uid in ev.image_uids]
    agd = f(0.0 if zero else ev.agd_mgy, "dose")
    kids.append(I.num(C.AGD, agd, C.UNIT_MGY))

    if name == "fujifilm" and not ev.is_dbt:
        # TID 10003A detector data (IEC 62494-1 exposure index).
        rng = stable_rng("ei", ev.uid)
        ei = float(rng.normal(420.0, 40.0))
        kids += [
            I.num(C.EXPOSURE_INDEX, f(ei, "index"), C.UNIT_NONE),
            I.num(C.TARGET_EXPOSURE_INDEX, "400", C.UNIT_NONE),
            I.num(C.DEVIATION_INDEX, f"{10 * np.log10(ei / 400.0):.1f}", C.UNIT_NONE),
        ]

    kids += _source_items(profile, ev)
    kids.append(I.num(C.FOCAL_SPOT, f(0.3, "focal"), C.UNIT_MM))
    kids.append(I.code(profile.anode_concept, C.snomed(ev.target, style)))
    kids += _filters(profile, ev)
    if name == "ge":
        kids += [
            I.num(C.COLLIMATED_FIELD_AREA, "0.0696", C.UNIT_M2),
            I.num(C.COLLIMATED_FIELD_HEIGHT, "240", C.UNIT_MM),
            I.num(C.COLLIMATED_FIELD_WIDTH, "290", C.UNIT_MM),
        ]
    kids += _grids(profile, ev)

    # TID 10003C mechanical data.
    kids.append(I.code(C.MECHANICAL_CONFIGURATION, C.UPRIGHT_STAND))
    start_angle = ev.positioner_angle
    if ev.is_dbt:
        assert ev.angle_start is not None  # plan_study gives every DBT event its sweep
        start_angle = ev.angle_start
    kids.append(I.num(C.POSITIONER_PRIMARY_ANGLE, f(start_angle, "deg"), C.UNIT_DEG))
    if name == "giotto":
        kids.append(I.num(C.POSITIONER_SECONDARY_ANGLE, f(0.0, "deg"), C.UNIT_DEG))
    if ev.is_dbt:
        assert ev.angle_end is not None
        kids.append(I.num(C.POSITIONER_PRIMARY_END_ANGLE, f(ev.angle_end, "deg"), C.UNIT_DEG))
    kids.append(I.num(C.COMPRESSION_THICKNESS, f(ev.thickness_mm, "mm"), C.UNIT_MM))
    if profile.write_force:
        kids.append(I.num(C.COMPRESSION_FORCE, f(ev.force_n, "n"), C.UNIT_N))
    if name == "giotto":
        kids.append(I.num(C.DISTANCE_SOURCE_TO_ISOCENTER, f(648.8, "mm"), C.UNIT_MM))
    kids.append(I.num(C.DISTANCE_SOURCE_TO_DETECTOR, f(ev.sid_mm, "mm"), C.UNIT_MM))
    if name == "ge":
        kids.append(I.num(C.DISTANCE_SOURCE_TO_RP, f(ev.distance_to_surface_mm, "mm"), C.UNIT_MM))
    elif name == "giotto":
        # Giotto writes a fixed 672 mm whatever the thickness (imitated).
        kids.append(I.num(C.DISTANCE_SOURCE_TO_RP, f(672.0, "mm"), C.UNIT_MM))
    elif name in ("siemens", "fujifilm"):
        kids.append(I.num(C.DISTANCE_SOURCE_TO_RP, f(ev.distance_to_surface_mm, "mm"), C.UNIT_MM))
    return I.container(C.IRRADIATION_EVENT, kids), agd


def _source_items(profile: VendorProfile, ev: Event) -> list[Elems]:
    """Pulse, kV, mA, time and tube loading items (TID 10003B)."""
    f = profile.fmt
    name = profile.name
    out: list[Elems] = []
    if name == "ge":
        out.append(I.num(C.NUMBER_OF_PULSES, str(len(ev.pulses)), C.UNIT_NONE))
        out += [I.num(C.PULSE_WIDTH, f(p.width_ms, "ms"), C.UNIT_MS) for p in ev.pulses]
        out.append(I.num(C.IRRADIATION_DURATION, f(ev.exposure_time_ms / 1000.0, "s"), C.UNIT_S))
        out += [I.num(C.KVP, f(p.kvp, "kv"), C.UNIT_KV) for p in ev.pulses]
        out += [I.num(C.TUBE_CURRENT, f(p.ma, "ma"), C.UNIT_MA) for p in ev.pulses]
        out.append(I.num(C.EXPOSURE_TIME, f(ev.exposure_time_ms, "ms"), C.UNIT_MS))
        return out  # GE writes no Exposure (uAs) item
    if name == "giotto":
        out.append(I.num(C.NUMBER_OF_PULSES, str(len(ev.pulses)), C.UNIT_NONE))
        out += [I.num(C.KVP, f(p.kvp, "kv"), C.UNIT_KV) for p in ev.pulses]
        out += [I.num(C.TUBE_CURRENT, f(p.ma, "ma"), C.UNIT_MA) for p in ev.pulses]
        out.append(I.num(C.EXPOSURE_TIME, f(ev.exposure_time_ms, "ms"), C.UNIT_MS))
        out += [I.num(C.EXPOSURE, f(p.mas * 1000.0, "uas"), profile.exposure_unit) for p in ev.pulses]
        return out
    if ev.is_dbt and name in ("siemens", "fujifilm"):
        out.append(I.num(C.NUMBER_OF_PULSES, str(ev.n_projections), C.UNIT_NONE))
    if ev.is_dbt and name == "siemens":
        # Reported quirk: time and tube loading of a single projection.
        p = ev.pulses[0]
        time_ms, uas = p.width_ms, p.mas * 1000.0
    else:
        time_ms, uas = ev.exposure_time_ms, ev.mas * 1000.0
    out += [
        I.num(C.KVP, f(ev.kvp, "kv"), C.UNIT_KV),
        I.num(C.TUBE_CURRENT, f(ev.ma, "ma"), C.UNIT_MA),
        I.num(C.EXPOSURE_TIME, f(time_ms, "ms"), C.UNIT_MS),
        I.num(C.EXPOSURE, f(uas, "uas"), profile.exposure_unit),
    ]
    return out


def _accumulated(profile: VendorProfile, study: Study, agds: list[str]) -> Elems:
    """TID 10002 container with TID 10005: AGD per breast = sum of the events."""
    style = profile.code_style
    sums = {"R": 0.0, "L": 0.0}
    # Sum the values as written so the report is consistent to the digit.
    for ev, agd in zip(study.events, agds):
        sums[ev.laterality] += float(agd)
    kids = [I.code(C.ACQUISITION_PLANE, C.SINGLE_PLANE, rel=I.HAS_CONCEPT_MOD)]
    for lat in profile.accumulated_order:
        breast = C.snomed("right_breast" if lat == "R" else "left_breast", style)
        kids.append(
            I.num(
                C.ACCUMULATED_AGD,
                profile.fmt(sums[lat], "dose"),
                C.UNIT_MGY,
                children=[I.code(C.snomed("laterality", style), breast, rel=I.HAS_CONCEPT_MOD)],
            )
        )
    return I.container(C.ACCUMULATED_XRAY_DOSE, kids)


def _observer_context(profile: VendorProfile, study: Study) -> list[Elems]:
    u = study.unit
    obs = I.HAS_OBS_CONTEXT
    items = [I.code(C.OBSERVER_TYPE, C.DEVICE, rel=obs), I.uidref(C.DEVICE_OBSERVER_UID, u.device_uid, rel=obs)]
    if profile.observer_identity:
        items += [
            I.text(C.DEVICE_OBSERVER_NAME, u.station, rel=obs),
            I.text(C.DEVICE_OBSERVER_MANUFACTURER, u.manufacturer, rel=obs),
            I.text(C.DEVICE_OBSERVER_MODEL, u.model, rel=obs),
            I.text(C.DEVICE_OBSERVER_SERIAL, u.serial, rel=obs),
        ]
        if profile.name in ("siemens", "fujifilm"):
            items.append(I.text(C.DEVICE_OBSERVER_LOCATION, u.department, rel=obs))
        items.append(I.code(C.DEVICE_ROLE, C.IRRADIATING_DEVICE, rel=obs))
        if profile.name == "ge":
            items.append(I.text(C.STATION_AE_TITLE, u.ae_title, rel=obs))
    items.append(
        I.code(
            C.SCOPE_OF_ACCUMULATION,
            C.STUDY,
            rel=obs,
            children=[I.uidref(C.STUDY_INSTANCE_UID, study.study_uid, rel=I.HAS_PROPERTIES)],
        )
    )
    return items


def _content(profile: VendorProfile, study: Study) -> list[Elems]:
    style = profile.code_style
    yes = C.snomed("yes", style)
    items = [
        I.code(
            C.PROCEDURE_REPORTED,
            C.snomed("mammography", style),
            rel=I.HAS_CONCEPT_MOD,
            children=[
                I.code(C.snomed("has_intent", style), C.snomed("diagnostic_intent", style), rel=I.HAS_CONCEPT_MOD)
            ],
        ),
    ]
    items += _observer_context(profile, study)
    items += [
        I.code(profile.detector_available, yes),
        I.code(C.SOURCE_DATA_AVAILABLE, yes),
        I.code(C.MECHANICAL_DATA_AVAILABLE, yes),
    ]
    events = [_event(profile, study, ev) for ev in study.events]
    items.append(_accumulated(profile, study, [agd for _, agd in events]))
    items += [item for item, _ in events]
    items.append(I.code(C.SOURCE_OF_DOSE_INFORMATION, profile.source_of_dose))
    return items


# ----------------------------------------------------------------------------
# Header
# ----------------------------------------------------------------------------
def _evidence(profile: VendorProfile, study: Study) -> list[Elems]:
    """Current Requested Procedure Evidence: every referenced image, by series."""
    series: dict[str, list[Elems]] = {}
    for ev in study.events:
        cls = image_sop_class(profile, ev)
        series.setdefault(ev.image_series_uid, []).extend(
            [I.attr("ReferencedSOPClassUID", cls), I.attr("ReferencedSOPInstanceUID", u)] for u in ev.image_uids
        )
    ref_series = [
        [I.attr("ReferencedSOPSequence", refs), I.attr("SeriesInstanceUID", uid)] for uid, refs in series.items()
    ]
    return [[I.attr("ReferencedSeriesSequence", ref_series), I.attr("StudyInstanceUID", study.study_uid)]]


def _header(profile: VendorProfile, study: Study) -> Elems:
    u = study.unit
    p = study.patient
    created = study.content_datetime
    a = I.attr
    h = []
    if profile.character_set:
        h.append(a("SpecificCharacterSet", profile.character_set))
    h += [
        a("InstanceCreationDate", created.strftime("%Y%m%d")),
        a("InstanceCreationTime", created.strftime("%H%M%S")),
        a("SOPClassUID", C.XRAY_RDSR_SOP_CLASS),
        a("SOPInstanceUID", study.sop_uid),
        a("StudyDate", study.study_datetime.strftime("%Y%m%d")),
        a("SeriesDate", created.strftime("%Y%m%d")),
        a("ContentDate", created.strftime("%Y%m%d")),
        a("StudyTime", study.study_datetime.strftime("%H%M%S")),
        a("SeriesTime", created.strftime("%H%M%S")),
        a("ContentTime", created.strftime("%H%M%S")),
        a("AccessionNumber", study.accession),
        a("Modality", "SR"),
        a("Manufacturer", u.manufacturer),
        a("InstitutionName", u.institution),
        a("ReferringPhysicianName", study.referring_physician),
        a("StationName", u.station),
        a("StudyDescription", study.description),
        a("SeriesDescription", "Radiation Dose Information" if profile.name == "hologic" else "Dose Report"),
        a("InstitutionalDepartmentName", u.department),
        a("ManufacturerModelName", u.model),
        a("ReferencedPerformedProcedureStepSequence", []),
        a("PatientName", p.name),
        a("PatientID", p.patient_id),
        a("PatientBirthDate", p.birth_date.strftime("%Y%m%d")),
        a("PatientSex", p.sex),
        a("PatientAge", p.age_string),
        a("DeviceSerialNumber", u.serial),
        a("SoftwareVersions", u.software),
        a("StudyInstanceUID", study.study_uid),
        a("SeriesInstanceUID", study.series_uid),
        a("StudyID", study.study_id),
        a("SeriesNumber", str(profile.series_number)),
        a("InstanceNumber", "1"),
        a("ValueType", "CONTAINER"),
        a("ConceptNameCodeSequence", C.XRAY_RADIATION_DOSE_REPORT),
        a("ContinuityOfContent", "SEPARATE"),
        a(
            "PerformedProcedureCodeSequence",
            profile.performed_procedure_code(study.kind) if isinstance(profile, Hologic) else [],
        ),
        a("CurrentRequestedProcedureEvidenceSequence", _evidence(profile, study)),
        a("CompletionFlag", "COMPLETE"),
        a("VerificationFlag", "UNVERIFIED"),
        a("ContentTemplateSequence", [[a("MappingResource", "DCMR"), a("TemplateIdentifier", "10001")]]),
    ]
    if profile.name == "ge":
        h.append(a("PreliminaryFlag", "FINAL"))
    return h


def rdsr_elements(study: Study) -> Elems:
    """The whole report (header and content tree) as an element list."""
    profile = get_profile(study.vendor)
    return _header(profile, study) + [I.attr("ContentSequence", _content(profile, study))]


def _study(vendor, rng, unit, study, opts) -> Study:
    if study is not None:
        return study
    if vendor is None or rng is None:
        raise TypeError("give vendor and rng, or a planned study")
    return plan_study(vendor, rng, unit, **opts)


def build_study_rdsr(
    vendor: str | None = None,
    rng: np.random.Generator | None = None,
    unit: int = 0,
    *,
    study: Study | None = None,
    **opts,
) -> Dataset:
    """Build one study's X-Ray Radiation Dose SR as the vendor would write it.

    Parameters
    ----------
    vendor : str
        One of :data:`srdose.synth.VENDORS` (ignored when ``study`` is given).
    rng : numpy.random.Generator
        Random source for planning the study (unused when ``study`` is given).
    unit : int
        Unit index of the vendor (distinct serial, station, observer UID).
    study : Study, optional
        An already planned study (see :func:`srdose.synth.plan_study`); use
        it to build the RDSR and the MG images of the same exposures.
    **opts
        Passed to :func:`srdose.synth.plan_study` (``kind``,
        ``dbt_fraction``, ``repeat_rate``, ``zero_agd_rate`` ...).

    Returns
    -------
    pydicom.Dataset
        The SR with ``file_meta`` set (transfer syntax of the vendor, e.g.
        Explicit VR Big Endian for IMS Giotto); ready for ``dcmwrite``.
    """
    study = _study(vendor, rng, unit, study, opts)
    profile = get_profile(study.vendor)
    ds = I.to_dataset(rdsr_elements(study))
    ds.file_meta = file_meta(C.XRAY_RDSR_SOP_CLASS, study.sop_uid, profile.transfer_syntax)
    return ds


def encode_study_rdsr(
    vendor: str | None = None,
    rng: np.random.Generator | None = None,
    unit: int = 0,
    *,
    study: Study | None = None,
    **opts,
) -> bytes:
    """Same report as :func:`build_study_rdsr`, directly as Part 10 file bytes.

    About thirty times faster than building and writing the pydicom
    Dataset; :func:`srdose.synth.generate` uses it.
    """
    study = _study(vendor, rng, unit, study, opts)
    profile = get_profile(study.vendor)
    meta = file_meta(C.XRAY_RDSR_SOP_CLASS, study.sop_uid, profile.transfer_syntax)
    be = profile.transfer_syntax == C.EXPLICIT_VR_BIG_ENDIAN
    body = I.encode_elems(rdsr_elements(study), be, I.codec_for(profile.character_set))
    return I.encode_file_meta(meta) + body
