"""Small hand-built DICOM datasets for tests that need to break things.

Written directly with pydicom, item by item after PS3.16 TID 10001/10003, so
that the tests do not depend on srdose's own generator.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

RDSR_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"

PATIENT = {
    "PatientName": "TESTPERSON^ALICE^Q",
    "PatientID": "NHS9434765919",
    "PatientBirthDate": "19640229",
    "AccessionNumber": "ACC7741203",
}


def code(value, scheme, meaning) -> Dataset:
    d = Dataset()
    d.CodeValue, d.CodingSchemeDesignator, d.CodeMeaning = value, scheme, meaning
    return d


def item(rel, vt, name, **kw) -> Dataset:
    d = Dataset()
    d.RelationshipType = rel
    d.ValueType = vt
    d.ConceptNameCodeSequence = Sequence([code(*name)])
    if vt == "CONTAINER":
        d.ContinuityOfContent = "SEPARATE"
    if vt == "NUM":
        if "value" in kw:
            mv = Dataset()
            mv.NumericValue = kw["value"]
            mv.MeasurementUnitsCodeSequence = Sequence([code(kw["unit"], "UCUM", kw["unit"])])
            d.MeasuredValueSequence = Sequence([mv])
        else:
            d.MeasuredValueSequence = Sequence([])
    elif vt == "CODE":
        d.ConceptCodeSequence = Sequence([code(*kw["code"])])
    elif vt == "TEXT":
        d.TextValue = kw["text"]
    elif vt == "UIDREF":
        d.UID = kw["uid"]
    elif vt == "DATETIME":
        d.DateTime = kw["dt"]
    if kw.get("children"):
        d.ContentSequence = Sequence(kw["children"])
    return d


def num(name, value, unit, rel="CONTAINS"):
    return item(rel, "NUM", name, value=value, unit=unit)


KVP = ("113733", "DCM", "KVP")
AGD = ("111631", "DCM", "Average Glandular Dose")
HVL = ("111634", "DCM", "Half Value Layer")
THICKNESS = ("111633", "DCM", "Compression Thickness")
EXPOSURE = ("113736", "DCM", "Exposure")


def event(
    uid=None,
    laterality=("24028007", "SCT", "Right"),
    view=("399162004", "SCT", "cranio-caudal"),
    kvp="28",
    agd="1.5",
    start="20250102093000",
    extra=(),
):
    children = [
        item("CONTAINS", "UIDREF", ("113769", "DCM", "Irradiation Event UID"), uid=uid or generate_uid()),
        item("CONTAINS", "DATETIME", ("111526", "DCM", "DateTime Started"), dt=start),
        item(
            "CONTAINS",
            "CODE",
            ("113721", "DCM", "Irradiation Event Type"),
            code=("113611", "DCM", "Stationary Acquisition"),
        ),
        item("CONTAINS", "CODE", ("111031", "DCM", "Image View"), code=view),
        item(
            "CONTAINS",
            "CODE",
            ("123014", "DCM", "Target Region"),
            code=("76752008", "SCT", "Breast"),
            children=[item("HAS CONCEPT MOD", "CODE", ("272741003", "SCT", "Laterality"), code=laterality)],
        ),
        num(HVL, "0.52", "mm"),
        num(AGD, agd, "mGy"),
        num(KVP, kvp, "kV"),
        num(EXPOSURE, "95000", "uA.s"),
        num(THICKNESS, "55", "mm"),
        item(
            "CONTAINS",
            "CODE",
            ("111632", "DCM", "Anode Target Material"),
            code=("C-164F9", "SRT", "Tungsten or Tungsten compound"),
        ),
        item(
            "CONTAINS",
            "CONTAINER",
            ("113771", "DCM", "X-Ray Filters"),
            children=[
                item(
                    "CONTAINS",
                    "CODE",
                    ("113757", "DCM", "X-Ray Filter Material"),
                    code=("C-167F9", "SRT", "Rhodium or Rhodium compound"),
                ),
                num(("113758", "DCM", "X-Ray Filter Thickness Minimum"), "0.05", "mm"),
                num(("113773", "DCM", "X-Ray Filter Thickness Maximum"), "0.05", "mm"),
            ],
        ),
        *extra,
    ]
    return item("CONTAINS", "CONTAINER", ("113706", "DCM", "Irradiation Event X-Ray Data"), children=children)


def rdsr(events=None, study_uid=None, sop_uid=None, patient=PATIENT, content=True) -> Dataset:
    """A small mammography RDSR (TID 10001) with the given event containers."""
    ds = Dataset()
    ds.SOPClassUID = RDSR_CLASS
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.StudyDate, ds.StudyTime = "20250102", "092900"
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = "ACME", "Mammo 1", "SN-1"
    ds.StationName = "ROOM1"
    for k, v in patient.items():
        setattr(ds, k, v)
    ds.PatientSex = "F"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([code("113701", "DCM", "X-Ray Radiation Dose Report")])
    if content:
        root = [
            item(
                "HAS CONCEPT MOD",
                "CODE",
                ("121058", "DCM", "Procedure reported"),
                code=("71651007", "SCT", "Mammography"),
            )
        ]
        root += events if events is not None else [event()]
        ds.ContentSequence = Sequence(root)
    return ds


def to_bytes(ds: Dataset, transfer_syntax=ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


AGD_CODE = "111631"  # DCM Average Glandular Dose (of an irradiation event)


def scale_agd(path: Path, factor: float) -> int:
    """Multiply every event's reported AGD in an RDSR file by ``factor`` (a service visit that
    changed the unit's own dose calculation); how many were changed."""
    ds = pydicom.dcmread(path)
    changed = 0

    def walk(items) -> None:
        nonlocal changed
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            if name and name[0].CodeValue == AGD_CODE and "MeasuredValueSequence" in item:
                mv = item.MeasuredValueSequence[0]
                mv.NumericValue = f"{float(mv.NumericValue) * factor:.6g}"
                changed += 1
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    ds.save_as(path)
    return changed
