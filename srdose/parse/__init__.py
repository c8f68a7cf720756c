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

import datetime as _dt
import io
from pathlib import Path
from typing import Optional, Union

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from srdose import codes as C
from srdose.parse.errors import Malformed, NotADoseReport, NotDicom, Refused, Unsupported
from srdose.parse.content import content_nodes
from srdose.parse.image import read_image_event
from srdose.parse.integrity import check_complete
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

__all__ = [
    "AccumulatedDose", "Device", "DoseReport", "Filter", "IrradiationEvent",
    "Pulse", "Study", "Refused", "NotDicom", "Malformed", "Unsupported",
    "NotADoseReport", "read_path", "read_bytes", "read_dataset", "age_in_years",
]


#: Ages outside this range are not a woman at a breast examination.
AGE_YEARS = (10.0, 120.0)


def _s(ds: Dataset, keyword: str, flags: list, limit: int = 256) -> Optional[str]:
    value = ds.get(keyword)
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = "\\".join(str(v) for v in value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else str(value)
        except TypeError:
            value = str(value)
    value = value.strip()
    if len(value) > limit:
        flags.append(f"truncated:{keyword}")
        value = value[:limit]
    return value or None


def age_in_years(birth_date: Optional[str], study_date: Optional[str],
                 patient_age: Optional[str]) -> Optional[float]:
    """Age at the study in decimal years.

    From birth date and study date when both are valid (days / 365.25), else
    from Patient's Age (``nnnD|W|M|Y``), else ``None``.
    """
    try:
        if birth_date and study_date:
            born = _dt.datetime.strptime(birth_date[:8], "%Y%m%d").date()
            seen = _dt.datetime.strptime(study_date[:8], "%Y%m%d").date()
            days = (seen - born).days
            if days >= 0:
                return round(days / 365.25, 2)
    except ValueError:
        pass
    if patient_age and len(patient_age) == 4 and patient_age[:3].isdigit():
        n = int(patient_age[:3])
        per_year = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}.get(patient_age[3].upper())
        if per_year:
            return round(n / per_year, 2)
    return None


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
    st.study_instance_uid = _s(ds, "StudyInstanceUID", flags, 64)
    st.study_date = _s(ds, "StudyDate", flags, 8)
    st.study_time = _s(ds, "StudyTime", flags, 16)
    if st.study_time:
        st.study_time = st.study_time.split(".")[0]
    st.description = _s(ds, "StudyDescription", flags, MAX_TEXT)
    st.sex = _s(ds, "PatientSex", flags, 16)
    st.patient_id = _s(ds, "PatientID", flags, 64)
    st.accession = _s(ds, "AccessionNumber", flags, 64)
    st.patient_name = _s(ds, "PatientName", flags, 320)
    st.age_years = age_in_years(_s(ds, "PatientBirthDate", flags, 8), st.study_date,
                                _s(ds, "PatientAge", flags, 8))
    if st.age_years is not None and not (AGE_YEARS[0] <= st.age_years <= AGE_YEARS[1]):
        flags.append("absurd:age_years")  # e.g. "001D" left by an anonymiser
        st.age_years = None


def _need_study_uid(ds: Dataset) -> None:
    if not str(ds.get("StudyInstanceUID", "") or "").strip():
        raise Malformed("dataset has no Study Instance UID: its events cannot be placed in a study")


def read_dataset(ds: Dataset, nodes=None) -> DoseReport:
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
    modality = str(ds.get("Modality", "") or "").upper()
    if sop_class in C.DOSE_SR_CLASSES:
        _need_study_uid(ds)
        nodes = check_dose_sr(ds, nodes)
        report = DoseReport(sop_uid, sop_class, "rdsr", Device(), Study())
        _header(ds, report)
        read_report(ds, nodes, report)
        return report
    if sop_class in C.MG_IMAGE_CLASSES and (modality == "MG" or sop_class != C.SECONDARY_CAPTURE):
        _need_study_uid(ds)
        report = DoseReport(sop_uid, sop_class, "image", Device(), Study())
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
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, NotImplementedError, RecursionError) as exc:
        raise Malformed(f"{what} could not be read as DICOM ({type(exc).__name__}: {str(exc)[:200]}); it is truncated or damaged") from exc
    return ds


def _load(ds: Dataset, what: str, data: Optional[bytes] = None) -> DoseReport:
    try:
        nodes = None
        if data is not None and str(ds.get("SOPClassUID", "")) in C.DOSE_SR_CLASSES:
            nodes = content_nodes(data, ds)  # fast path: straight from the bytes
        return read_dataset(ds, nodes)
    except Refused:
        raise
    except RecursionError as exc:
        raise Malformed(f"{what}: content is nested too deeply to read") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, NotImplementedError) as exc:
        # pydicom parses lazily: a truncated or damaged element surfaces here
        raise Malformed(f"{what} is truncated or damaged ({type(exc).__name__}: {str(exc)[:200]})") from exc


def read_path(path: Union[str, Path]) -> DoseReport:
    """Parse a DICOM file on disk."""
    path = Path(path)
    return read_bytes(path.read_bytes(), path.name)


def read_bytes(data: bytes, what: str = "dataset") -> DoseReport:
    """Parse a DICOM Part 10 byte string, refusing it if it is truncated."""
    ds = _read(io.BytesIO(data), what)
    check_complete(data, str(getattr(ds.file_meta, "TransferSyntaxUID", "") or ""))
    return _load(ds, what, data)
