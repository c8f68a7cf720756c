"""The content tree of a dose SR as light :class:`Node` objects, from either source.

The encoded bytes (:func:`content_nodes`, read by :func:`srdose.parse.elements.scan`
in the same pass that checks the file is whole) and a pydicom dataset already
in memory (:func:`walk`) are both reduced to raw items first; :func:`build`
turns raw items into nodes, so the two sources cannot disagree. Concepts are
matched by code value and scheme (:mod:`srdose.codes`), with the code
meaning as the fallback.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from srdose import codes as C
from srdose.parse.elements import (
    CODE_VALUE,
    CONCEPT_CODE,
    CONCEPT_NAME,
    CONTENT_SEQ,
    DATETIME,
    FLOAT_VALUE,
    LONG_CODE_VALUE,
    MEANING,
    MEASURED_VALUE_SEQ,
    NUMERIC_VALUE,
    RELATIONSHIP,
    SCHEME,
    TEXT_VALUE,
    UID,
    UNITS_SEQ,
    URN_CODE_VALUE,
    VALUE_TYPE,
    dataset_items,
    encodings_of,
    scan,
)

Code = tuple[tuple[str, str], str]


class Node:
    """One content item, reduced to what the reader needs."""

    __slots__ = ("rel", "vt", "name", "meaning", "value", "unit", "children", "problem")

    def __init__(self) -> None:
        self.rel: str | None = None
        self.vt: str | None = None
        self.name: str | None = None
        self.meaning: str | None = None
        #: a NUM's float, a CODE's Code, else the text (None when absent or unreadable); the readers
        #: know which from ``vt``
        self.value: Any = None
        self.unit: str | None = None
        self.problem: str | None = None
        self.children: list[Node] = []


# --- concept registry ---------------------------------------------------------
# Internal name -> the standard concept; the walk matches on its normalised key,
# then on the deviations table, then on the meaning.
_CONCEPTS = {
    "procedure_reported": C.PROCEDURE_REPORTED,
    "observer_uid": C.DEVICE_OBSERVER_UID,
    "observer_name": C.DEVICE_OBSERVER_NAME,
    "observer_manufacturer": C.DEVICE_OBSERVER_MANUFACTURER,
    "observer_model": C.DEVICE_OBSERVER_MODEL_NAME,
    "observer_serial": C.DEVICE_OBSERVER_SERIAL_NUMBER,
    "scope": C.SCOPE_OF_ACCUMULATION,
    "study_instance_uid": C.STUDY_INSTANCE_UID,
    "accumulated": C.ACCUMULATED_XRAY_DOSE_DATA,
    "accumulated_agd": C.ACCUMULATED_AGD,
    "laterality": C.LATERALITY,
    "event": C.IRRADIATION_EVENT_XRAY_DATA,
    "event_uid": C.IRRADIATION_EVENT_UID,
    "label": C.IRRADIATION_EVENT_LABEL,
    "datetime_started": C.DATETIME_STARTED,
    "event_type": C.IRRADIATION_EVENT_TYPE,
    "protocol": C.ACQUISITION_PROTOCOL,
    "anatomy": C.ANATOMICAL_STRUCTURE,
    "target_region": C.TARGET_REGION,
    "view": C.IMAGE_VIEW,
    "view_modifier": C.IMAGE_VIEW_MODIFIER,
    "hvl_mm": C.HALF_VALUE_LAYER,
    "entrance_exposure_mgy": C.ENTRANCE_EXPOSURE_AT_RP,
    "reference_point": C.REFERENCE_POINT_DEFINITION,
    "agd_mgy": C.AVERAGE_GLANDULAR_DOSE,
    "n_pulses": C.NUMBER_OF_PULSES,
    "pulse_width_ms": C.PULSE_WIDTH,
    "irradiation_duration_ms": C.IRRADIATION_DURATION,
    "kvp": C.KVP,
    "tube_current_ma": C.XRAY_TUBE_CURRENT,
    "exposure_time_ms": C.EXPOSURE_TIME,
    "exposure_mas": C.EXPOSURE,
    "focal_spot_mm": C.FOCAL_SPOT_SIZE,
    "anode": C.ANODE_TARGET_MATERIAL,
    "filters": C.XRAY_FILTERS,
    "filter_type": C.XRAY_FILTER_TYPE,
    "filter_material": C.XRAY_FILTER_MATERIAL,
    "filter_min_mm": C.XRAY_FILTER_THICKNESS_MIN,
    "filter_max_mm": C.XRAY_FILTER_THICKNESS_MAX,
    "grid": C.XRAY_GRID,
    "positioner_primary_angle_deg": C.POSITIONER_PRIMARY_ANGLE,
    "positioner_secondary_angle_deg": C.POSITIONER_SECONDARY_ANGLE,
    "positioner_primary_end_angle_deg": C.POSITIONER_PRIMARY_END_ANGLE,
    "compressed_thickness_mm": C.COMPRESSION_THICKNESS,
    "compression_force_n": C.COMPRESSION_FORCE,
    "compression_pressure_kpa": C.COMPRESSION_PRESSURE,
    "compression_contact_area_mm2": C.COMPRESSION_CONTACT_AREA,
    "source_detector_mm": C.DISTANCE_SOURCE_TO_DETECTOR,
    "source_rp_mm": C.DISTANCE_SOURCE_TO_RP,
    "dose_area_product_gym2": C.Code("122130", "DCM", "Dose Area Product"),
    "ct_acquisition": C.Code("113819", "DCM", "CT Acquisition"),
}
_BY_KEY = {C.key_of(code): name for name, code in _CONCEPTS.items()}
_BY_MEANING = {code.meaning.lower(): name for name, code in _CONCEPTS.items()}
_NAME_OF_CODE = {C.key_of(code): name for name, code in _CONCEPTS.items()}
for _dev in C.VENDOR_DEVIATIONS:
    _name = _NAME_OF_CODE.get(C.key_of(_dev.means))
    if _name:
        _BY_KEY[C.normalise(*_dev.seen)] = _name


def concept_name(key: tuple[str, str], meaning: str) -> str | None:
    """Internal name of a concept: by code first, by meaning as fallback."""
    name = _BY_KEY.get(key)
    if name is None and meaning:
        name = _BY_MEANING.get(meaning.strip().lower())
    return name


NO_MEASURED_VALUE = "NUM item has no MeasuredValueSequence (no value)"


def set_measured_value(node: Node, num, unit: Code | None) -> None:
    """Put a NUM item's value and unit code on ``node``, or say what is wrong."""
    node.unit = unit[0][1] if unit else None
    try:
        node.value = float(num) if num not in (None, "") else None
    except (TypeError, ValueError):
        node.problem = f"numeric value {str(num)[:40]!r} is not a number"
    if node.value is None and node.problem is None:
        node.problem = "NUM item has an empty numeric value"


def code(items: list[dict] | None) -> Code | None:
    """((scheme, value) normalised, meaning) of the first raw item of a code sequence."""
    if not items:
        return None
    item = items[0]
    value = item.get(CODE_VALUE) or item.get(LONG_CODE_VALUE) or item.get(URN_CODE_VALUE) or ""
    return C.normalise(item.get(SCHEME) or "", value.strip()), (item.get(MEANING) or "").strip()


def _stripped(value: str | None) -> str | None:
    return (value or "").strip() or None


def build(items: list[dict]) -> list[Node]:
    """Raw content items (from the bytes or from a dataset) as :class:`Node` trees."""
    nodes = []
    for item in items:
        node = Node()
        node.rel = _stripped(item.get(RELATIONSHIP))
        vt = node.vt = _stripped(item.get(VALUE_TYPE))
        concept = code(item.get(CONCEPT_NAME))
        if concept is not None:
            node.name = concept_name(*concept)
            node.meaning = concept[1]
        if vt == "NUM":
            mvs = item.get(MEASURED_VALUE_SEQ)
            if mvs:
                mv = mvs[0]
                num = mv.get(FLOAT_VALUE)
                if num is None:
                    num = (mv.get(NUMERIC_VALUE) or "").strip()
                set_measured_value(node, num, code(mv.get(UNITS_SEQ)))
            else:
                node.problem = NO_MEASURED_VALUE
        elif vt == "CODE":
            node.value = code(item.get(CONCEPT_CODE))
        elif vt == "TEXT":
            node.value = item.get(TEXT_VALUE)
        elif vt == "DATETIME":
            node.value = _stripped(item.get(DATETIME))
        elif vt == "UIDREF":
            node.value = _stripped(item.get(UID))
        children = item.get(CONTENT_SEQ)
        if children:
            node.children = build(children)
        nodes.append(node)
    return nodes


def walk(content) -> list[Node]:
    """The :class:`Node` trees of a pydicom ContentSequence.

    Raises
    ------
    Malformed
        When sequences are nested beyond :data:`~srdose.parse.elements.MAX_NESTING`.
    """
    return build(dataset_items(content))


def dataset_code(seq) -> Code | None:
    """((scheme, value) normalised, meaning) of the first item of a pydicom code sequence."""
    return code(dataset_items(seq)) if seq else None


def content_nodes(data: bytes, ds: Dataset) -> list[Node] | None:
    """The content tree of a Part 10 file, read from its bytes in the pass that checks it is whole.

    Parameters
    ----------
    data
        The whole file.
    ds
        The same file read by pydicom (``dcmread``): it gives the transfer
        syntax and the character set.

    Returns
    -------
    list of Node, or None when the dataset has no ContentSequence.

    Raises
    ------
    Malformed
        When the file is truncated or damaged, or nested too deeply.
    """
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") if hasattr(ds, "file_meta") else ""
    items = scan(data, ts, encodings_of(ds))
    return None if items is None else build(items)
