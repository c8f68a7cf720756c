"""Read a projection X-ray dose report (TID 10001 / 10003 / 10005) into records.

The content tree arrives as light :class:`~srdose.parse.tree.Node` objects
(:mod:`srdose.parse.tree`; a highdicom content item per node costs 12-20x as
much, measured on the vendor files), each concept already named. Every value is
converted to its canonical unit; anything missing, zero, absurd or in a unit
we cannot convert becomes ``None`` plus a named data-quality flag, never an
exception. Only a dataset that is not a readable dose report at all raises
:class:`~srdose.parse.errors.Refused`.
"""

from __future__ import annotations

import math
from statistics import median

from pydicom.dataset import Dataset

from srdose import codes as C
from srdose import units
from srdose.parse.errors import Malformed, NotADoseReport, Unsupported
from srdose.parse.records import (
    AccumulatedDose,
    DoseReport,
    Filter,
    IrradiationEvent,
    Pulse,
)
from srdose.parse.tree import Node, dataset_code, walk
from srdose.parse.values import check_uid, datetime_or_none
from srdose.vocab import Acquisition

#: Longest text kept from a file; longer values are cut and flagged.
MAX_TEXT = 1024

#: NUM concepts and the quantity their unit must measure.
_QUANTITY = {
    "hvl_mm": "length",
    "entrance_exposure_mgy": "dose",
    "agd_mgy": "dose",
    "accumulated_agd": "dose",
    "n_pulses": "count",
    "pulse_width_ms": "time",
    "irradiation_duration_ms": "time",
    "kvp": "voltage",
    "tube_current_ma": "current",
    "exposure_time_ms": "time",
    "exposure_mas": "charge",
    "focal_spot_mm": "length",
    "filter_min_mm": "length",
    "filter_max_mm": "length",
    "positioner_primary_angle_deg": "angle",
    "positioner_secondary_angle_deg": "angle",
    "positioner_primary_end_angle_deg": "angle",
    "compressed_thickness_mm": "length",
    "compression_force_n": "force",
    "compression_pressure_kpa": "pressure",
    "compression_contact_area_mm2": "area",
    "source_detector_mm": "length",
    "source_rp_mm": "length",
    "dose_area_product_gym2": "dose_area",
}

#: Values outside these bounds are absurd for projection X-ray: kept as None
#: and flagged. (Tighter clinical limits are curation rules, not parsing.)
PLAUSIBLE = {
    "kvp": (10.0, 150.0),
    "tube_current_ma": (0.0, 2000.0),
    "exposure_mas": (0.0, 5000.0),
    "pulse_width_ms": (0.0, 60000.0),
    "exposure_time_ms": (0.0, 60000.0),
    "irradiation_duration_ms": (0.0, 600000.0),
    "compressed_thickness_mm": (1.0, 300.0),
    "compression_force_n": (0.0, 1000.0),
    "hvl_mm": (0.05, 20.0),
    "entrance_exposure_mgy": (0.0, 1000.0),
    "agd_mgy": (0.0, 200.0),
    "focal_spot_mm": (0.01, 5.0),
    "source_detector_mm": (100.0, 3000.0),
    "source_rp_mm": (50.0, 3000.0),
}
#: A zero in these is "not measured", not a measurement (Hologic writes
#: AGD = HVL = entrance exposure = 0 on some 20 kV events).
ZERO_MEANS_MISSING = frozenset(PLAUSIBLE) | {"n_pulses"}
# Bounds of the other numbers srdose stores; a zero in these is a value.
PLAUSIBLE.update(
    {
        "mas": (0.0, 5000.0),
        "n_pulses": (1.0, 100000.0),
        "filter_min_mm": (0.0, 20.0),
        "filter_max_mm": (0.0, 20.0),
        "filter_thickness_mm": (0.0, 20.0),
        "compression_pressure_kpa": (0.0, 1000.0),
        "compression_contact_area_mm2": (0.0, 1.0e6),
        "positioner_primary_angle_deg": (-360.0, 360.0),
        "positioner_secondary_angle_deg": (-360.0, 360.0),
        "positioner_primary_end_angle_deg": (-360.0, 360.0),
        "dose_area_product_gym2": (0.0, 10.0),
        # a total over the study: a 0 is real (that breast was not imaged)
        "accumulated_agd": (0.0, 2000.0),
    }
)


def checked(name: str, value: float | None, flags: list) -> float | None:
    """``value`` unless it is a zero meaning "not measured" or absurd for
    ``name``; then None, with a flag naming it."""
    if value is None:
        return None
    if value == 0 and name in ZERO_MEANS_MISSING:
        flags.append(f"zero:{name}")
        return None
    bounds = PLAUSIBLE.get(name)
    # NaN fails every comparison, so it is caught here as well as infinity
    if not math.isfinite(value) or (bounds and not (bounds[0] <= value <= bounds[1])):
        flags.append(f"absurd:{name}")
        return None
    return value


# --- value helpers ------------------------------------------------------------


def _text(value, flags: list, what: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_TEXT:
        flags.append(f"truncated:{what}")
        text = text[:MAX_TEXT]
    return text


def _number(node: Node, flags: list) -> float | None:
    """Canonical value of a NUM node, or None with a flag saying why."""
    name = node.name
    assert name is not None  # called for the NUM items it knows by name
    if node.problem:
        flags.append(f"no_value:{name}")
        return None
    try:
        value = node.value * units.factor(node.unit, _QUANTITY[name])
    except units.UnitError:
        flags.append(f"unit:{name}:{str(node.unit)[:20]}")
        return None
    return checked(name, value, flags)


def _laterality(code) -> str | None:
    if not code:
        return None
    key, meaning = code
    return C.LATERALITY_LABELS.get(key) or C.LATERALITY_MEANINGS.get(meaning.strip().lower())


def _view(code) -> str | None:
    if not code:
        return None
    key, meaning = code
    return C.VIEW_LABELS.get(key) or C.VIEW_MEANINGS.get(meaning.strip().lower())


def material(code) -> str | None:
    """Element symbol of an anode or filter material code."""
    if not code:
        return None
    key, meaning = code
    if key in C.MATERIAL_CODES:
        return C.MATERIAL_CODES[key]
    low = meaning.lower()
    for word, symbol in C.MATERIAL_WORDS.items():
        if low.startswith(word):
            return symbol
    return None


def _laterality_below(node: Node) -> str | None:
    for child in node.children:
        if child.name == "laterality" and child.vt == "CODE":
            return _laterality(child.value)
    return None


# --- the event ------------------------------------------------------------------

_PER_PULSE = ("kvp", "tube_current_ma", "exposure_mas", "pulse_width_ms")
_EVENT_NUMBERS = (
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_mgy",
    "focal_spot_mm",
    "compressed_thickness_mm",
    "compression_force_n",
    "compression_pressure_kpa",
    "compression_contact_area_mm2",
    "positioner_primary_angle_deg",
    "positioner_secondary_angle_deg",
    "positioner_primary_end_angle_deg",
    "source_detector_mm",
    "source_rp_mm",
    "dose_area_product_gym2",
)
#: Values every mammography event should carry; missing ones are flagged.
EXPECTED = (
    "kvp",
    "mas",
    "anode",
    "filter_material",
    "compressed_thickness_mm",
    "agd_mgy",
    "hvl_mm",
    "laterality",
    "view",
)


def read_event(container: Node) -> IrradiationEvent:
    """Build an :class:`IrradiationEvent` from one 113706 container."""
    ev = IrradiationEvent()
    flags = ev.flags
    lists: dict[str, list] = {k: [] for k in _PER_PULSE}
    times: list[float] = []
    durations: list[float] = []
    reported_pulses: float | None = None
    for node in container.children:
        name = node.name
        if name is None:
            continue
        vt = node.vt
        if vt == "NUM":
            value = _number(node, flags)
            if name in lists:
                lists[name].append(value)
            elif value is None:
                continue
            elif name == "exposure_time_ms":
                times.append(value)
            elif name == "irradiation_duration_ms":
                durations.append(value)
            elif name == "n_pulses":
                reported_pulses = value
            elif name in _EVENT_NUMBERS and getattr(ev, name) is None:
                setattr(ev, name, value)
        elif vt == "CODE":
            code = node.value
            if name == "event_type" and code:
                ev.event_type = {
                    C.key_of(C.STATIONARY_ACQUISITION): "stationary",
                    C.key_of(C.ROTATIONAL_ACQUISITION): "rotational",
                    C.key_of(C.STEPPING_ACQUISITION): "stepping",
                }.get(code[0]) or _text(code[1], flags, "event_type")
            elif name == "view":
                ev.view = _view(code)
                if ev.view is None and code:
                    flags.append("view:unknown_code")
                for child in node.children:
                    if child.name == "view_modifier" and child.value:
                        ev.view_modifiers.append(child.value[1])
            elif name in ("anatomy", "target_region"):
                if name == "target_region" and code:
                    ev.target_region = code[1]
                ev.laterality = ev.laterality or _laterality_below(node)
            elif name == "laterality":
                ev.laterality = ev.laterality or _laterality(code)
            elif name == "anode":
                ev.anode = material(code)
                if ev.anode is None and code:
                    flags.append("anode:unknown_material")
            elif name == "grid" and code:
                ev.grid = _text(code[1], flags, "grid")
            elif name == "reference_point" and code:
                ev.reference_point = _text(code[1], flags, "reference_point")
        elif vt == "CONTAINER" and name == "filters":
            ev.filters.append(_read_filter(node, flags))
        elif vt == "UIDREF" and name == "event_uid":
            ev.event_uid = check_uid(_text(node.value, [], "event_uid"), "Irradiation Event UID")
        elif vt == "DATETIME" and name == "datetime_started":
            ev.datetime_started = checked_datetime(_text(node.value, flags, "datetime_started"), flags)
        elif vt == "TEXT":
            if name == "protocol":
                ev.protocol = _text(node.value, flags, "protocol")
            elif name == "label":
                ev.label = _text(node.value, flags, "label")
    derive_event_values(ev, lists, times, durations, reported_pulses)
    bound_event(ev)
    for what in EXPECTED:
        if getattr(ev, what) is None and not any(f.endswith(":" + what) for f in flags):
            flags.append(f"missing:{what}")
    return ev


#: Event attributes that are numbers, each checked against :data:`PLAUSIBLE`
#: under its own name (derived values included: a sum of plausible pulses
#: can still be absurd).
_STORED_NUMBERS = (
    "kvp",
    "mas",
    "tube_current_ma",
    "exposure_time_ms",
    "irradiation_duration_ms",
    "n_pulses",
    "filter_thickness_mm",
    "focal_spot_mm",
    "compressed_thickness_mm",
    "compression_force_n",
    "compression_pressure_kpa",
    "compression_contact_area_mm2",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_mgy",
    "positioner_primary_angle_deg",
    "positioner_primary_end_angle_deg",
    "positioner_secondary_angle_deg",
    "source_detector_mm",
    "source_rp_mm",
    "dose_area_product_gym2",
)
_PULSE_NUMBERS = {
    "kvp": "kvp",
    "tube_current_ma": "tube_current_ma",
    "exposure_mas": "exposure_mas",
    "pulse_width_ms": "pulse_width_ms",
}
_FILTER_NUMBERS = {"thickness_min_mm": "filter_min_mm", "thickness_max_mm": "filter_max_mm"}


def _bounded(name: str, value, flags_to) -> float | None:
    if value is None:
        return None
    lo, hi = PLAUSIBLE[name]
    try:
        ok = math.isfinite(value) and lo <= value <= hi
    except TypeError:
        ok = False
    if not ok:
        flags_to(f"absurd:{name}")
        return None
    return value


def bound_event(ev: IrradiationEvent) -> None:
    """Every number of ``ev`` (pulses and filters too) within :data:`PLAUSIBLE`,
    else None plus an ``absurd:<name>`` flag: nothing out of bounds is stored."""
    for name in _STORED_NUMBERS:
        setattr(ev, name, _bounded(name, getattr(ev, name), ev.flag))
    for pulse in ev.pulses:
        for attr, name in _PULSE_NUMBERS.items():
            setattr(pulse, attr, _bounded(name, getattr(pulse, attr), ev.flag))
    for f in ev.filters:
        for attr, name in _FILTER_NUMBERS.items():
            setattr(f, attr, _bounded(name, getattr(f, attr), ev.flag))


def checked_datetime(value: str | None, flags: list) -> str | None:
    """A DT value when it is one, else None plus an ``invalid:datetime_started`` flag."""
    if value is None:
        return None
    good = datetime_or_none(value)
    if good is None:
        flags.append("invalid:datetime_started")
    return good


def _read_filter(node: Node, flags: list) -> Filter:
    f = Filter()
    for child in node.children:
        if child.name == "filter_material" and child.vt == "CODE":
            f.material = material(child.value)
            if f.material is None and child.value:
                flags.append("filter:unknown_material")
        elif child.name == "filter_type" and child.vt == "CODE" and child.value:
            f.filter_type = child.value[1]
        elif child.name == "filter_min_mm" and child.vt == "NUM":
            f.thickness_min_mm = _number(child, flags)
        elif child.name == "filter_max_mm" and child.vt == "NUM":
            f.thickness_max_mm = _number(child, flags)
    return f


def derive_event_values(
    ev: IrradiationEvent, lists: dict, times: list, durations: list, reported_pulses: float | None
) -> None:
    """Event-level technique factors from the per-pulse values.

    The rules, so that a physicist can check them:

    * pulses: one row per occurrence of a repeated per-pulse item (KVP, tube
      current, exposure, pulse width); an item written once is event-level.
    * charge per pulse: the exposure item (µAs, converted to mAs) where there
      is one per pulse, else tube current × pulse width.
    * total mAs: the sum of the exposure items; else Σ mA × pulse width;
      else tube current × exposure time (single-pulse events).
    * the *main exposure* is the pulse with the largest charge (the GE
      Pristina ~2 mA pre-pulse is not it); the event's kV, tube current and
      filter are the main exposure's.
    * exposure time: the sum of the Exposure Time items, else the sum of the
      pulse widths, else the irradiation duration.
    * number of pulses: the Number of Pulses item, else the number of pulse
      rows.
    """
    n = max((len(v) for v in lists.values()), default=0)
    kv, ma, mas, pw = (lists[k] for k in _PER_PULSE)

    def at(values, i):
        if len(values) == n:
            return values[i]
        return None

    if n:
        ev.pulses = [Pulse(i, at(kv, i), at(ma, i), at(mas, i), at(pw, i)) for i in range(n)]

    charges: list[float] = []  # all present, or none
    if mas and all(v is not None for v in mas):
        charges = list(mas)
    elif ma and pw and len(ma) == len(pw) and all(v is not None for v in ma + pw):
        charges = [a * w / 1000.0 for a, w in zip(ma, pw)]
    total_time = (
        sum(times)
        if times
        else (
            sum(v for v in pw if v is not None)
            if pw and all(v is not None for v in pw)
            else (sum(durations) if durations else None)
        )
    )
    ev.exposure_time_ms = total_time
    ev.irradiation_duration_ms = sum(durations) if durations else None

    if charges:
        ev.mas = sum(charges)
    elif len(ma) == 1 and ma[0] is not None and total_time:
        ev.mas = ma[0] * total_time / 1000.0

    main = max(range(len(charges)), key=charges.__getitem__) if charges else None

    def pick(values):
        present = [v for v in values if v is not None]
        if not present:
            return None
        if len(values) == len(charges) and main is not None and values[main] is not None:
            return values[main]
        if len(present) == 1:
            return present[0]
        return median(present)

    ev.kvp = pick(kv)
    ev.tube_current_ma = pick(ma)

    if reported_pulses is not None and math.isfinite(reported_pulses):
        ev.n_pulses = int(round(reported_pulses))
    elif n:
        ev.n_pulses = n

    if ev.filters:
        chosen = ev.filters[0]
        if main is not None and len(ev.filters) == len(charges):
            chosen = ev.filters[main]
        materials = {f.material for f in ev.filters if f.material}
        if len(materials) > 1 and not (main is not None and len(ev.filters) == len(charges)):
            ev.flag("filter:several_materials")
        ev.filter_material = chosen.material
        lo, hi = chosen.thickness_min_mm, chosen.thickness_max_mm
        ev.filter_thickness_mm = lo if lo is not None else hi

    if ev.event_type == "rotational":
        ev.acquisition = Acquisition.DBT.value
    elif ev.event_type in ("stationary", "stepping"):
        ev.acquisition = Acquisition.TWO_D.value


# --- the report -------------------------------------------------------------------

MAMMOGRAPHY_KEY = C.key_of(C.MAMMOGRAPHY)
CT_PROCEDURE_KEYS = {("SCT", "77477000"), ("SCT", "25045003")}


def read_report(ds: Dataset, nodes: list[Node], report: DoseReport) -> None:
    """Fill ``report`` from the root-level nodes of a dose SR."""
    device = report.device
    procedure = None
    for node in nodes:
        name = node.name
        if name == "procedure_reported" and node.value:
            procedure = node.value
            report.study.procedure = node.value[1]
        elif name == "observer_uid":
            device.observer_uid = node.value
        elif name == "observer_manufacturer" and not device.manufacturer:
            device.manufacturer = _text(node.value, report.flags, "manufacturer")
        elif name == "observer_model" and not device.model:
            device.model = _text(node.value, report.flags, "model")
        elif name == "observer_serial" and not device.serial:
            device.serial = _text(node.value, report.flags, "serial")
        elif name == "observer_name" and not device.station:
            device.station = _text(node.value, report.flags, "station")
        elif name == "scope":
            for child in node.children:
                if child.name == "study_instance_uid" and child.value and not report.study.study_instance_uid:
                    report.study.study_instance_uid = str(child.value)
        elif name == "accumulated":
            for child in node.children:
                if child.name == "accumulated_agd" and child.vt == "NUM":
                    # a 0 mGy total is real here: that breast was not imaged
                    value = None
                    if not child.problem:
                        try:
                            value = child.value * units.factor(child.unit, "dose")
                        except units.UnitError:
                            report.flags.append(f"unit:accumulated_agd:{str(child.unit)[:20]}")
                        value = checked("accumulated_agd", value, report.flags)
                    else:
                        report.flags.append("no_value:accumulated_agd")
                    report.accumulated.append(AccumulatedDose(_laterality_below(child), value))
        elif name == "event" and node.vt == "CONTAINER":
            report.events.append(read_event(node))
        elif name == "ct_acquisition":
            raise Unsupported(
                "this is a CT dose report (TID 10011); srdose reads projection X-ray "
                "(mammography) dose reports only for now"
            )
    if procedure is not None and procedure[0] in CT_PROCEDURE_KEYS:
        raise Unsupported(
            "this is a CT dose report (procedure reported: "
            f"{procedure[1]}); srdose reads mammography dose reports only for now"
        )
    is_mammo = (
        (procedure is not None and procedure[0] == MAMMOGRAPHY_KEY)
        or any(a.laterality for a in report.accumulated)
        or str(ds.get("Modality", "")).upper() == "MG"
    )
    if not is_mammo:
        what = procedure[1] if procedure else "not stated"
        raise Unsupported(
            f"projection X-ray dose report for a procedure that is not mammography "
            f"(procedure reported: {what}); srdose reads breast imaging only"
        )
    if not report.events:
        report.flags.append("no_irradiation_events")


def root_concept(ds: Dataset) -> tuple[tuple[str, str], str] | None:
    """The normalised code and meaning of an SR's document title."""
    return dataset_code(ds.get("ConceptNameCodeSequence"))


def check_dose_sr(ds: Dataset, nodes: list[Node] | None = None) -> list[Node]:
    """Refuse an SR that is not a readable dose report; return its nodes.

    ``nodes`` is the content tree when the caller already read it from the
    encoded bytes (:func:`srdose.parse.tree.content_nodes`); otherwise
    pydicom's decoded ContentSequence is walked.
    """
    title = root_concept(ds)
    if title is None:
        raise Malformed("SR has no document title (ConceptNameCodeSequence); cannot tell what it reports")
    if title[0] != C.key_of(C.XRAY_RADIATION_DOSE_REPORT):
        raise NotADoseReport(
            f"SR document title is '{title[1]}' ({title[0][1]}), not 113701 "
            "'X-Ray Radiation Dose Report': not a dose report"
        )
    if nodes is None:
        content = ds.get("ContentSequence")
        nodes = walk(content) if content is not None else []
    if not nodes:
        raise Malformed("dose SR has no ContentSequence: there is nothing to read")
    return nodes
