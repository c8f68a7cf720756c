"""Parse: a DICOM file or dataset into a :class:`DoseReport`, or a refusal.

>>> report = read_path("study.dcm")          # doctest: +SKIP
>>> report.events[0].kvp, report.events[0].view
(28.0, 'CC')

:func:`read_dataset` accepts X-Ray Radiation Dose SRs, Enhanced and
Comprehensive SRs whose title is 113701 "X-Ray Radiation Dose Report", and MG
image headers. Anything else raises :class:`Refused` with a reason a person
can act on.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian

from srdose import codes as C
from srdose.dates import parse_da
from srdose.parse.elements import check_complete
from srdose.parse.errors import (
    Malformed,
    NotADoseReport,
    NotDicom,
    Refused,
    Unsupported,
)
from srdose.parse.image import read_image_event
from srdose.parse.rdsr import MAX_TEXT, check_dose_sr, read_report
from srdose.parse.records import (
    AccumulatedDose,
    Device,
    DoseReport,
    Filter,
    IrradiationEvent,
    Pulse,
    Study,
)
from srdose.parse.tree import Node, content_nodes
from srdose.parse.values import check_uid, date_or_none, time_or_none, uid_problem
from srdose.vocab import SourceKind

__all__ = [
    "AccumulatedDose",
    "Device",
    "DoseReport",
    "Filter",
    "IrradiationEvent",
    "Pulse",
    "Study",
    "Refused",
    "NotDicom",
    "Malformed",
    "Unsupported",
    "NotADoseReport",
    "read_path",
    "read_bytes",
    "read_dataset",
    "age_in_years",
    "image_header",
    "uid_problem",
]


#: Ages outside this range are not a woman at a breast examination.
AGE_YEARS = (10.0, 120.0)
#: Ages are kept in completed years (floored to a multiple of this): with a
#: finer age and the study date, the birth date could be worked out again.
AGE_RESOLUTION_YEARS = 1


def _s(ds: Dataset, keyword: str, flags: list, limit: int = 256) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = (
                "\\".join(str(v) for v in value)
                if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
                else str(value)
            )
        except TypeError:
            value = str(value)
    value = value.strip()
    if len(value) > limit:
        flags.append(f"truncated:{keyword}")
        value = value[:limit]
    return value or None


def age_in_years(
    birth_date: str | None, study_date: str | None, patient_age: str | None, resolution: int = AGE_RESOLUTION_YEARS
) -> int | None:
    """Age at the study in completed years, floored to a multiple of ``resolution``.

    From birth date and study date when both are valid (birthdays counted on
    the calendar), else from Patient's Age (``nnnD|W|M|Y``), else ``None``.
    Never finer than a year: a decimal age plus the study date gives the
    birth date back.
    """
    years = None
    born, seen = parse_da((birth_date or "")[:8]), parse_da((study_date or "")[:8])
    if born and seen and seen >= born:
        years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    if years is None and patient_age and len(patient_age) == 4 and patient_age[:3].isdigit():
        n = int(patient_age[:3])
        per_year = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}.get(patient_age[3].upper())
        if per_year:
            years = int(n // per_year)
    if years is None:
        return None
    step = max(1, int(resolution))
    return years - years % step


def _header(ds: Dataset, report: DoseReport) -> None:
    flags = report.flags
    d = report.device
    d.manufacturer = _s(ds, "Manufacturer", flags)
    d.model = _s(ds, "ManufacturerModelName", flags)
    d.serial = _s(ds, "DeviceSerialNumber", flags)
    d.station = _s(ds, "StationName", flags)
    d.institution = _s(ds, "InstitutionName", flags)
    d.department = _s(ds, "InstitutionalDepartmentName", flags)
    d.software = _s(ds, "SoftwareVersions", flags)
    st = report.study
    st.study_instance_uid = check_uid(_s(ds, "StudyInstanceUID", [], 256), "Study Instance UID")
    st.study_date = _checked_value(_s(ds, "StudyDate", flags, 16), date_or_none, "study_date", flags)
    st.study_time = _checked_value(_s(ds, "StudyTime", flags, 32), time_or_none, "study_time", flags)
    st.description = _s(ds, "StudyDescription", flags, MAX_TEXT)
    st.sex = _s(ds, "PatientSex", flags, 16)
    st.patient_id = _s(ds, "PatientID", flags, 64)
    st.accession = _s(ds, "AccessionNumber", flags, 64)
    st.patient_name = _s(ds, "PatientName", flags, 320)
    st.age_years = age_in_years(
        date_or_none(_s(ds, "PatientBirthDate", flags, 16)), st.study_date, _s(ds, "PatientAge", flags, 8)
    )
    if st.age_years is not None and not (AGE_YEARS[0] <= st.age_years <= AGE_YEARS[1]):
        flags.append("absurd:age_years")  # e.g. "001D" left by an anonymiser
        st.age_years = None


def _checked_value(value: str | None, check, name: str, flags: list) -> str | None:
    """``check(value)``; an invalid value becomes None plus an ``invalid:<name>`` flag."""
    if value is None:
        return None
    good = check(value)
    if good is None:
        flags.append(f"invalid:{name}")
    return good


def _need_study_uid(ds: Dataset) -> None:
    if not str(ds.get("StudyInstanceUID", "") or "").strip():
        raise Malformed("dataset has no Study Instance UID: its events cannot be placed in a study")


def read_dataset(ds: Dataset, nodes: list[Node] | None = None) -> DoseReport:
    """Parse a dataset already in memory.

    ``nodes`` is the content tree already read from the encoded bytes, if
    the caller has it (see :func:`read_bytes`).

    Raises
    ------
    Refused
        When the dataset is not a dose object srdose reads.
    """
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    if not sop_class or not sop_uid:
        raise Malformed("dataset has no SOP Class UID or SOP Instance UID: not a storable DICOM object")
    # before anything else: these UIDs are what the database keys on
    check_uid(sop_class, "SOP Class UID")
    check_uid(sop_uid, "SOP Instance UID")
    modality = str(ds.get("Modality", "") or "").upper()
    if sop_class in C.DOSE_SR_CLASSES:
        _need_study_uid(ds)
        nodes = check_dose_sr(ds, nodes)
        report = DoseReport(sop_uid, sop_class, SourceKind.RDSR.value, Device(), Study())
        _header(ds, report)
        read_report(ds, nodes, report)
        return report
    if sop_class in C.MG_IMAGE_CLASSES and (modality == "MG" or sop_class != C.SECONDARY_CAPTURE):
        _need_study_uid(ds)
        report = DoseReport(sop_uid, sop_class, SourceKind.IMAGE.value, Device(), Study())
        _header(ds, report)
        report.study.procedure = "Mammography"
        report.events = [read_image_event(ds)]
        return report
    name = UID(sop_class).name if sop_class else "unknown"
    if sop_class.startswith("1.2.840.10008.5.1.4.1.1.88."):
        raise NotADoseReport(f"SR of class {name} ({sop_class}) is not a dose report srdose reads")
    raise Unsupported(
        f"SOP class {name} ({sop_class}) is not a dose object: srdose reads X-Ray "
        "Radiation Dose SRs and MG image headers"
    )


def _read(fp, what: str) -> Dataset:
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise NotDicom(f"{what} is not a DICOM Part 10 file ({exc}); send DICOM files only") from exc
    # struct and zlib errors: pydicom reading a header or a deflated body cut short
    except (
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        NotImplementedError,
        RecursionError,
        struct.error,
        zlib.error,
    ) as exc:
        raise Malformed(
            f"{what} could not be read as DICOM ({type(exc).__name__}: {str(exc)[:200]}); it is truncated or damaged"
        ) from exc
    return ds


def _load(ds: Dataset, what: str, data: bytes) -> DoseReport:
    """Check ``data`` is whole and read it; a dose SR's content tree straight
    from the bytes, in the same pass."""
    try:
        if str(ds.get("SOPClassUID", "")) in C.DOSE_SR_CLASSES:
            nodes = content_nodes(data, ds)
        else:
            check_complete(data, _transfer_syntax(ds))
            nodes = None
        return read_dataset(ds, nodes)
    except Refused:
        raise
    except RecursionError as exc:
        raise Malformed(f"{what}: content is nested too deeply to read") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, NotImplementedError) as exc:
        # pydicom parses lazily: a truncated or damaged element surfaces here
        raise Malformed(f"{what} is truncated or damaged ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _transfer_syntax(ds: Dataset) -> str:
    return str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")


def read_path(path: str | Path) -> DoseReport:
    """Parse a DICOM file on disk."""
    path = Path(path)
    return read_bytes(path.read_bytes(), path.name)


def image_header(data: bytes, what: str = "dataset") -> bytes:
    """A Part 10 image as a Part 10 file of its header alone (explicit VR
    little endian, no pixel data), for the spool: srdose keeps no pixels.

    The whole encoded image is checked first, so that an image cut short is
    refused here exactly as :func:`read_bytes` refuses the same bytes from a
    file; decoding and re-encoding would otherwise turn the surviving
    elements into a complete-looking header.

    Raises
    ------
    Refused
        When ``data`` is not DICOM or is truncated or damaged.
    """
    ds = _read(io.BytesIO(data), what)
    check_complete(data, _transfer_syntax(ds))
    try:
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # no pixels left to be compressed
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, NotImplementedError) as exc:
        raise Malformed(f"{what} is truncated or damaged ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return buf.getvalue()


def read_bytes(data: bytes, what: str = "dataset") -> DoseReport:
    """Parse a DICOM Part 10 byte string, refusing it if it is truncated."""
    return _load(_read(io.BytesIO(data), what), what, data)
