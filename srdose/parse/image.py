"""Dose from MG image headers, for units that send no RDSR.

One image is one irradiation event. The header spells dose in its own units
(PS3.3 C.8.7.x X-Ray Acquisition Dose, C.8.11.7 Mammography Image): OrganDose
is in dGy, EntranceDoseInmGy in mGy but EntranceDose in dGy, ExposureInuAs in
µAs but Exposure in mAs, ExposureTime in ms, BodyPartThickness in mm and
CompressionForce in N.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from srdose import codes as C
from srdose.parse.rdsr import EXPECTED, bound_event, checked, checked_datetime
from srdose.parse.records import Filter, IrradiationEvent, Pulse
from srdose.parse.values import check_uid
from srdose.vocab import Acquisition

#: Reference-point text of an image-header dose given at Distance Source to Entrance.
REFERENCE_AT_ENTRANCE_DISTANCE = "At Distance Source to Entrance"

_MATERIAL_TERMS = {  # defined terms of AnodeTargetMaterial / FilterMaterial
    "MOLYBDENUM": "Mo",
    "RHODIUM": "Rh",
    "TUNGSTEN": "W",
    "SILVER": "Ag",
    "ALUMINUM": "Al",
    "ALUMINIUM": "Al",
    "COPPER": "Cu",
    "PALLADIUM": "Pd",
    "MOLYBDENUM_RHODIUM": None,  # a multi-material filter: not one material
}


def _float(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _checked(ev: IrradiationEvent, name: str, value: float | None) -> float | None:
    return checked(name, value, ev.flags)


def _term(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if not value:
        return None
    if not isinstance(value, str):
        value = value[0]
    return str(value).strip().upper() or None


def read_image_event(ds: Dataset) -> IrradiationEvent:
    """One :class:`IrradiationEvent` from an MG image header."""
    ev = IrradiationEvent()
    uids = ds.get("IrradiationEventUID")
    if uids is not None and not isinstance(uids, str):  # multi-valued: the first names this exposure
        uids = uids[0] if len(uids) else None
    ev.event_uid = str(uids or "").strip() or None
    if ev.event_uid and "\\" in ev.event_uid:
        ev.event_uid = ev.event_uid.split("\\")[0]
    ev.event_uid = check_uid(ev.event_uid, "Irradiation Event UID")
    dt = ds.get("AcquisitionDateTime")
    if not dt and ds.get("AcquisitionDate"):
        dt = f"{ds.AcquisitionDate}{str(ds.get('AcquisitionTime', '') or '').split('.')[0]}"
    ev.datetime_started = checked_datetime(str(dt).strip() if dt else None, ev.flags)

    ev.kvp = _checked(ev, "kvp", _float(ds, "KVP"))
    uas = _float(ds, "ExposureInuAs")
    ev.mas = _checked(ev, "exposure_mas", uas / 1000.0 if uas is not None else _float(ds, "Exposure"))
    ev.tube_current_ma = _checked(ev, "tube_current_ma", _float(ds, "XRayTubeCurrent"))
    ev.exposure_time_ms = _checked(ev, "exposure_time_ms", _float(ds, "ExposureTime"))
    ev.pulses = [Pulse(0, ev.kvp, ev.tube_current_ma, ev.mas, None)]
    ev.n_pulses = 1
    ev.compressed_thickness_mm = _checked(ev, "compressed_thickness_mm", _float(ds, "BodyPartThickness"))
    ev.compression_force_n = _checked(ev, "compression_force_n", _float(ds, "CompressionForce"))
    organ_dgy = _float(ds, "OrganDose")  # dGy (PS3.3 C.8.7.8)
    ev.agd_mgy = _checked(ev, "agd_mgy", organ_dgy * 100.0 if organ_dgy is not None else None)
    entrance = _float(ds, "EntranceDoseInmGy")
    if entrance is None:
        dgy = _float(ds, "EntranceDose")
        entrance = dgy * 100.0 if dgy is not None else None
    ev.entrance_exposure_mgy = _checked(ev, "entrance_exposure_mgy", entrance)
    ev.hvl_mm = _checked(ev, "hvl_mm", _float(ds, "HalfValueLayer"))
    ev.source_detector_mm = _checked(ev, "source_detector_mm", _float(ds, "DistanceSourceToDetector"))
    ev.focal_spot_mm = _checked(ev, "focal_spot_mm", _float(ds, "FocalSpots"))
    ev.positioner_primary_angle_deg = _float(ds, "PositionerPrimaryAngle")
    if ev.entrance_exposure_mgy is not None:
        # The header's entrance dose is at Distance Source to Entrance when it gives one (GE
        # writes SID - thickness there, leaving out the breast support's height above the
        # detector), else at the skin entrance.
        d_entrance = _checked(ev, "source_rp_mm", _float(ds, "DistanceSourceToEntrance"))
        if d_entrance is not None:
            ev.source_rp_mm = d_entrance
            ev.reference_point = REFERENCE_AT_ENTRANCE_DISTANCE
        else:
            ev.reference_point = "At Surface of Patient"

    anode = _term(ds, "AnodeTargetMaterial")
    ev.anode = _MATERIAL_TERMS.get(anode) if anode else None
    filt = _term(ds, "FilterMaterial")
    if filt:
        ev.filter_material = _MATERIAL_TERMS.get(filt)
        thick_min = _float(ds, "FilterThicknessMinimum")
        thick_max = _float(ds, "FilterThicknessMaximum")
        ev.filters = [Filter(ev.filter_material, None, thick_min, thick_max)]
        ev.filter_thickness_mm = thick_min if thick_min is not None else thick_max
    grid = ds.get("Grid")
    if grid:
        ev.grid = "\\".join(grid) if not isinstance(grid, str) else grid

    view = None
    vcs = ds.get("ViewCodeSequence")
    if vcs:
        item = vcs[0]
        key = C.normalise(str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeValue", "")))
        meaning = str(item.get("CodeMeaning", ""))
        view = C.VIEW_LABELS.get(key) or C.VIEW_MEANINGS.get(meaning.strip().lower())
    if view is None:
        vp = _term(ds, "ViewPosition")
        view = C.VIEW_POSITION_LABELS.get(vp) if vp else None
    ev.view = view
    lat = _term(ds, "ImageLaterality") or _term(ds, "Laterality")
    ev.laterality = lat if lat in ("L", "R", "B") else None
    ev.protocol = str(ds.get("ProtocolName", "") or "")[:1024] or None

    # Breast tomosynthesis projection objects (and Hologic's secondary capture
    # DBT projections) are one sweep; everything else here is a 2D exposure.
    sop = str(ds.get("SOPClassUID", ""))
    if sop in (C.BREAST_PROJECTION_FOR_PRESENTATION, C.BREAST_PROJECTION_FOR_PROCESSING, C.SECONDARY_CAPTURE):
        ev.acquisition, ev.event_type = Acquisition.DBT.value, "rotational"
    else:
        ev.acquisition, ev.event_type = Acquisition.TWO_D.value, "stationary"

    bound_event(ev)
    for what in EXPECTED:
        if getattr(ev, what) is None and not any(f.endswith(":" + what) for f in ev.flags):
            ev.flag(f"missing:{what}")
    return ev
