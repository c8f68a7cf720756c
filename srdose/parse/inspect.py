"""A dose object read carefully, for a person (``srdose inspect``).

Bulk ingest reads the content tree straight from the encoded bytes (:mod:`srdose.parse.tree`); this
module reads it again through highdicom's typed content items, the way a physicist checking a new
unit wants to see it: every item with its concept, value type, value and unit, and relationship;
the template each container starts (TID 10001, 10002 with its mammography part TID 10005, 10003);
the deviations srdose knows marked where they occur (:data:`srdose.codes.VENDOR_DEVIATIONS`,
legacy SNOMED codes, units that are not UCUM, measured values left empty); and, beside it, what
srdose stores from the object, event by event.

Identifiers: the patient's name, ID, birth date and other IDs, the accession number and every
person name in the tree are withheld unless the caller asks for them (``identifiable``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from srdose import codes as C
from srdose.parse import read_bytes
from srdose.parse.errors import Refused
from srdose.units import ucum_status

#: Header attributes that identify a patient or a visit (withheld unless asked for).
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "AccessionNumber",
    "ReferringPhysicianName",
    "IssuerOfPatientID",
    "PatientAddress",
    "PatientTelephoneNumbers",
)
#: Header attributes shown as they are.
SHOWN = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "StationName",
    "SoftwareVersions",
    "InstitutionName",
    "StudyDate",
    "StudyTime",
    "StudyInstanceUID",
    "SOPInstanceUID",
    "PatientAge",
    "PatientSex",
)
WITHHELD = "(withheld: --identifiable shows it)"

#: Containers that start a template of PS3.16, by concept (scheme, value).
TEMPLATE_OF_CONTAINER = {
    C.key_of(C.XRAY_RADIATION_DOSE_REPORT): "TID 10001 Projection X-Ray Radiation Dose",
    C.key_of(C.ACCUMULATED_XRAY_DOSE_DATA): "TID 10002 Accumulated X-Ray Dose",
    C.key_of(C.IRRADIATION_EVENT_XRAY_DATA): "TID 10003 Irradiation Event X-Ray Data",
}
#: Items of TID 10005, which TID 10002 includes (it has no container of its own).
TID_10005 = "TID 10005 Accumulated Mammography X-Ray Dose"
_ACCUMULATED_AGD = C.key_of(C.ACCUMULATED_AGD)

_DEVIATION = {d.seen: d for d in C.VENDOR_DEVIATIONS}
_LEGACY = ("SRT", "SNM3", "99SDM")


@dataclass
class Item:
    """One content item as a person reads it."""

    depth: int
    relationship: str  # CONTAINS, HAS CONCEPT MOD, ... ("" for the root)
    value_type: str  # CONTAINER, NUM, CODE, ...
    concept: tuple[str, str, str]  # (code value, scheme, meaning)
    value: str | None = None  # the value as text (a code as "meaning (value, scheme)")
    unit: str | None = None  # a NUM's unit code (UCUM for the standard)
    template: str | None = None  # the template this item starts or belongs to
    notes: list[str] = field(default_factory=list)  # deviations and what could not be read
    rules: list[str] = field(default_factory=list)  # each note's rule, e.g. "legacy_scheme:SRT"

    def note(self, rule: str, text: str) -> None:
        self.rules.append(rule)
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "relationship": self.relationship,
            "value_type": self.value_type,
            "concept": {"value": self.concept[0], "scheme": self.concept[1], "meaning": self.concept[2]},
            "value": self.value,
            "unit": self.unit,
            "template": self.template,
            "notes": list(self.notes),
            "rules": list(self.rules),
        }


@dataclass
class Inspection:
    """A dose object read for a person: its header, its content tree, and what srdose stores."""

    name: str
    sop_class: str  # name (UID)
    header: dict[str, str]
    items: list[Item]
    stored: list[dict[str, Any]]  # per event, the values srdose keeps
    accumulated: list[dict[str, Any]]
    flags: list[str]  # srdose's flags on the report
    refused: str | None = None  # why srdose would refuse it (quarantine), if it would

    @property
    def deviations(self) -> list[tuple[int, str]]:
        """(index of the item, note) of every deviation found."""
        return [(i, n) for i, item in enumerate(self.items) for n in item.notes]

    @property
    def rules(self) -> list[tuple[str, str]]:
        """(rule, note) of every deviation found, in the tree's order."""
        return [r for item in self.items for r in zip(item.rules, item.notes)]

    def lines(self) -> list[tuple[str, bool]]:
        """The reading as plain text lines, each with whether it is a note (a deviation)."""
        out = [(f"SOP class: {self.sop_class}", False)]
        out += [(f"  {k}: {v}", False) for k, v in self.header.items()]
        for item in self.items:
            pad = "  " * item.depth
            rel = f"{item.relationship} " if item.relationship else ""
            value = "" if item.value is None else f" = {item.value}" + (f" {item.unit}" if item.unit else "")
            label = f"  [{item.template}]" if item.template and item.template == _template_of(item) else ""
            concept = f"{item.concept[2]} ({item.concept[0]}, {item.concept[1]})"
            out.append((f"{pad}{rel}{item.value_type} {concept}{value}{label}", False))
            out += [(f"{pad}  ! {note}", True) for note in item.notes]
        out.append((f"{len(self.deviations)} deviation(s) from the templates and the standard", False))
        if self.refused:
            out.append((f"srdose would refuse this object: {self.refused}", True))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "sop_class": self.sop_class,
            "header": dict(self.header),
            "content": [i.as_dict() for i in self.items],
            "events": self.stored,
            "accumulated": self.accumulated,
            "flags": list(self.flags),
            "refused": self.refused,
        }


def inspect_path(path: Path, identifiable: bool = False) -> Inspection:
    """Read the DICOM file at ``path`` for a person (see :func:`inspect_bytes`)."""
    return inspect_bytes(Path(path).read_bytes(), Path(path).name, identifiable)


def inspect_bytes(data: bytes, name: str, identifiable: bool = False) -> Inspection:
    """Read one DICOM object for a person. Never raises for bad content: what cannot be read is
    said in the result (``refused``, and an item's notes)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as exc:  # anything pydicom raises on a file that is not DICOM or is damaged
        return Inspection(name, "", {}, [], [], [], [], refused=f"not readable as DICOM ({type(exc).__name__}: {exc})")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    items: list[Item] = []
    try:
        header = _header(ds, identifiable)
        if "ContentSequence" in ds:
            root = Item(0, "", str(ds.get("ValueType", "CONTAINER") or "CONTAINER"), _concept(ds))
            root.template = _template_of(root)
            _mark_code(root, (root.concept[1], root.concept[0]), "concept")
            items.append(root)
            _walk(ds.ContentSequence, 1, items, identifiable, _template_of(root))
    except Exception as exc:  # pydicom decodes lazily: a damaged element surfaces only here
        header = {"SOPClassUID": sop_class}
        items.append(Item(0, "", "", ("", "", "the content could not be read")))
        items[-1].note("unreadable", f"{type(exc).__name__}: {str(exc)[:200]}")
    refused = None
    stored: list[dict[str, Any]] = []
    accumulated: list[dict[str, Any]] = []
    flags: list[str] = []
    try:
        report = read_bytes(data, name)
    except Refused as exc:
        refused = str(exc)
    else:
        stored = [_stored(e) for e in report.events]
        accumulated = [{"laterality": a.laterality, "agd_mgy": a.agd_mgy} for a in report.accumulated]
        flags = list(report.flags)
    shown_class = f"{UID(sop_class).name} ({sop_class})" if sop_class else "no SOP Class UID"
    return Inspection(name, shown_class, header, items, stored, accumulated, flags, refused)


def _header(ds: Dataset, identifiable: bool) -> dict[str, str]:
    header = {}
    for keyword in SHOWN:
        if keyword in ds:
            header[keyword] = _text(ds.get(keyword))
    for keyword in IDENTIFYING:
        if keyword in ds and ds.get(keyword) not in (None, ""):
            header[keyword] = _text(ds.get(keyword)) if identifiable else WITHHELD
    return header


def _text(value: Any) -> str:
    if isinstance(value, pydicom.Sequence):
        return f"({len(value)} items)"
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _concept(item: Dataset) -> tuple[str, str, str]:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return ("", "", "")
    code = seq[0]
    return (
        str(code.get("CodeValue", "") or code.get("LongCodeValue", "") or code.get("URNCodeValue", "") or ""),
        str(code.get("CodingSchemeDesignator", "") or ""),
        str(code.get("CodeMeaning", "") or ""),
    )


def _template_of(item: Item) -> str | None:
    if item.value_type != "CONTAINER":
        return None
    return TEMPLATE_OF_CONTAINER.get(C.normalise(item.concept[1], item.concept[0]))


def _walk(seq, depth: int, items: list[Item], identifiable: bool, template: str | None) -> None:
    """Append the items of ``seq`` (and their children), each read as a highdicom content item;
    an item highdicom refuses (it breaks the standard's rules) is shown from its attributes, with
    highdicom's reason."""
    from highdicom.sr import ContentSequence  # imported when used: every command need not load it

    for raw in seq:
        # the item without its children: each is read (or refused) on its own
        alone = Dataset()
        for element in raw:
            if element.keyword != "ContentSequence":
                alone.add(element)
        try:
            typed = ContentSequence.from_sequence([alone], is_root=False, is_sr=True, copy=False)[0]
        except Exception as exc:  # highdicom raises ValueError, AttributeError, ... on such items
            typed = None
            refusal = f"not read by highdicom: {type(exc).__name__}: {str(exc)[:160]}"
        if typed is not None:
            name = typed.name
            item = Item(
                depth,
                typed.relationship_type.value if typed.relationship_type else "",
                typed.value_type.value,
                (name.value, name.scheme_designator, name.meaning),
            )
        else:
            item = Item(
                depth,
                str(raw.get("RelationshipType", "") or ""),
                str(raw.get("ValueType", "") or ""),
                _concept(raw),
            )
            item.note("highdicom_refused", refusal)
        _mark_code(item, (item.concept[1], item.concept[0]), "concept")
        _value(item, raw, typed, identifiable)
        own = _template_of(item)
        if C.normalise(item.concept[1], item.concept[0]) == _ACCUMULATED_AGD:
            item.template = TID_10005
        else:
            item.template = own or template
        items.append(item)
        children = raw.get("ContentSequence")
        if children:
            _walk(children, depth + 1, items, identifiable, own or template)


def _value(item: Item, raw: Dataset, typed, identifiable: bool) -> None:
    """The item's value as text, from highdicom's typed item when it read it, else from the
    attributes; notes on what the value breaks."""
    vt = item.value_type
    if vt == "PNAME":
        item.value = str(raw.get("PersonName", "") or "") if identifiable else WITHHELD
        return
    if vt == "NUM":
        measured = raw.get("MeasuredValueSequence")
        if not measured:
            item.note("empty_value", "no measured value (empty Measured Value Sequence)")
            return
        units = measured[0].get("MeasurementUnitsCodeSequence")
        if typed is not None:
            item.value, unit = f"{typed.value:g}", typed.unit
            item.unit, scheme = unit.value, unit.scheme_designator
        else:
            item.value = str(measured[0].get("NumericValue", ""))
            item.unit = str(units[0].get("CodeValue", "") or "") if units else None
            scheme = str(units[0].get("CodingSchemeDesignator", "") or "") if units else ""
        if item.unit is not None:
            if scheme != "UCUM":
                item.note(f"unit_scheme:{scheme}", f"unit {item.unit!r} is coded in {scheme or 'no scheme'}, not UCUM")
            problem = ucum_status(item.unit)
            if problem:
                item.note(f"unit:{item.unit}", problem)
        return
    if vt == "CODE":
        if typed is not None:
            c = typed.value
            value, scheme, meaning = c.value, c.scheme_designator, c.meaning
        else:
            seq = raw.get("ConceptCodeSequence")
            if not seq:
                return
            value, scheme = str(seq[0].get("CodeValue", "") or ""), str(seq[0].get("CodingSchemeDesignator", "") or "")
            meaning = str(seq[0].get("CodeMeaning", "") or "")
        item.value = f"{meaning} ({value}, {scheme})"
        _mark_code(item, (scheme, value), "value")
        return
    if vt in ("TEXT", "UIDREF", "DATETIME", "DATE", "TIME"):
        keyword = {"TEXT": "TextValue", "UIDREF": "UID", "DATETIME": "DateTime", "DATE": "Date", "TIME": "Time"}[vt]
        # the attribute as written (highdicom turns dates into datetime objects)
        item.value = str(raw.get(keyword, "") or "")
        return
    if vt in ("COMPOSITE", "IMAGE"):
        ref = raw.get("ReferencedSOPSequence")
        if ref:
            item.value = f"{ref[0].get('ReferencedSOPClassUID', '')} {ref[0].get('ReferencedSOPInstanceUID', '')}"


def _mark_code(item: Item, code: tuple[str, str], where: str) -> None:
    """Notes on a code: a vendor's code for a standard concept, a legacy or private scheme."""
    scheme, value = code[0].strip().upper(), code[1].strip()
    if not value:
        return
    deviation = _DEVIATION.get((scheme, value))
    if deviation is not None:
        m = deviation.means
        item.note(
            f"vendor_code:{scheme}:{value}",
            f"{deviation.who} writes ({value}, {scheme}) as the {where} where the standard has "
            f"{m.meaning} ({m.value}, {m.scheme_designator})",
        )
    if scheme in _LEGACY:
        # a legacy SNOMED code with a SNOMED CT replacement (pydicom's table of the standard's
        # mapping); one without is still the standard's own code, and no deviation
        now = C.normalise(scheme, value)
        if now[0] == "SCT":
            item.note(
                f"legacy_scheme:{scheme}", f"legacy coding scheme {scheme} in the {where} ({value}): SNOMED CT {now[1]}"
            )
    elif scheme.startswith("99"):
        item.note(f"private_scheme:{scheme}", f"private coding scheme {scheme} in the {where}")


def _stored(event) -> dict[str, Any]:
    """What srdose keeps of one event (the columns of the events table that a physicist checks)."""
    keep = (
        "event_uid",
        "datetime_started",
        "acquisition",
        "laterality",
        "view",
        "kvp",
        "mas",
        "tube_current_ma",
        "exposure_time_ms",
        "n_pulses",
        "anode",
        "filter_material",
        "filter_thickness_mm",
        "compressed_thickness_mm",
        "compression_force_n",
        "hvl_mm",
        "entrance_exposure_mgy",
        "agd_mgy",
    )
    row = {k: getattr(event, k) for k in keep}
    row["flags"] = list(event.flags)
    return row
