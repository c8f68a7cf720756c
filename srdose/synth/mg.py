"""Digital Mammography X-Ray Image (For Presentation) headers with dose attributes.

For units that send no RDSR the dose lives in each image's header (X-Ray
Acquisition Dose, Generation and Filtration modules): kV, mAs, exposure
time, thickness, force, entrance dose, organ dose in dGy, anode, filter,
view, laterality.  The generator writes one such header, with an 8×8 pixel
array, per stationary (2D) exposure of a planned study; built from the same
:class:`~srdose.synth.model.Study` as the RDSR, the images carry the same
Irradiation Event UIDs and SOP Instance UIDs the RDSR references, which is
what de-duplication has to recognise.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from . import codes as C
from ._items import code_elems, to_dataset
from .model import Event, Study, stable_rng
from .plan import plan_study
from .rdsr import file_meta
from .vendors import get_profile

__all__ = ["build_mg_images", "build_mg_image"]

_ORIENTATION = {  # (laterality, view) -> Patient Orientation (row, column)
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "XCCL"): ["A", "R"],
    ("R", "XCCL"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
    ("L", "ML"): ["A", "F"],
    ("R", "ML"): ["P", "F"],
    ("L", "LM"): ["P", "F"],
    ("R", "LM"): ["A", "F"],
}
_DETECTOR = {"hologic": "DIRECT", "ge": "SCINTILLATOR", "giotto": "DIRECT", "siemens": "DIRECT", "fujifilm": "DIRECT"}
_PIXEL_SPACING = {"hologic": 0.07, "ge": 0.1, "giotto": 0.085, "siemens": 0.085, "fujifilm": 0.05}


def _code_seq(code: C.Code) -> Sequence:
    return Sequence([to_dataset(code_elems(code))])


def build_mg_image(study: Study, event: Event, instance_number: int = 1) -> Dataset:
    """One MG For Presentation header for a stationary exposure.

    Parameters
    ----------
    study : Study
        The planned study the exposure belongs to.
    event : Event
        A 2D event of that study.
    instance_number : int
        Instance Number within the image series.

    Returns
    -------
    pydicom.Dataset
        With ``file_meta`` (Explicit VR Little Endian) and an 8×8 16-bit
        pixel array.
    """
    profile = get_profile(study.vendor)
    u = study.unit
    p = study.patient
    style = profile.code_style
    zero = event.zero_dose
    t = event.start
    d_entrance = event.sid_mm - event.support_gap_mm - event.thickness_mm

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.InstanceCreationDate = t.strftime("%Y%m%d")
    ds.InstanceCreationTime = t.strftime("%H%M%S")
    ds.SOPClassUID = C.MG_FOR_PRESENTATION_SOP_CLASS
    ds.SOPInstanceUID = event.image_uids[0]
    ds.StudyDate = study.study_datetime.strftime("%Y%m%d")
    ds.SeriesDate = ds.StudyDate
    ds.AcquisitionDate = t.strftime("%Y%m%d")
    ds.ContentDate = t.strftime("%Y%m%d")
    ds.AcquisitionDateTime = t.strftime("%Y%m%d%H%M%S")
    ds.StudyTime = study.study_datetime.strftime("%H%M%S")
    ds.SeriesTime = ds.StudyTime
    ds.AcquisitionTime = t.strftime("%H%M%S")
    ds.ContentTime = t.strftime("%H%M%S")
    ds.AccessionNumber = study.accession
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = u.manufacturer
    ds.InstitutionName = u.institution
    ds.ReferringPhysicianName = study.referring_physician
    ds.StationName = u.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = f"{event.laterality}{event.view}"
    ds.InstitutionalDepartmentName = u.department
    ds.ManufacturerModelName = u.model
    ds.IrradiationEventUID = event.uid
    ds.AnatomicRegionSequence = _code_seq(C.snomed("breast", style))
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d")
    ds.PatientSex = p.sex
    ds.PatientAge = p.age_string
    ds.BodyPartExamined = "BREAST"
    ds.KVP = f"{event.kvp:g}"
    ds.DeviceSerialNumber = u.serial
    ds.SoftwareVersions = u.software
    ds.ProtocolName = event.protocol
    ds.DistanceSourceToDetector = f"{event.sid_mm:g}"
    ds.DistanceSourceToPatient = f"{event.sid_mm - event.support_gap_mm:g}"
    ds.ExposureTime = str(int(round(event.exposure_time_ms)))
    ds.XRayTubeCurrent = str(int(round(event.ma)))
    ds.Exposure = str(int(round(event.mas)))
    ds.ExposureInuAs = str(int(round(event.mas * 1000.0)))
    ds.FilterType = "STRIP"
    spacing = _PIXEL_SPACING[profile.name]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.Grid = ["RECIPROCATING", "FOCUSED"]
    ds.FocalSpots = "0.3"
    ds.AnodeTargetMaterial = C.MATERIAL_TERMS[event.target]
    ds.BodyPartThickness = f"{event.thickness_mm:g}"
    ds.CompressionForce = f"{event.force_n:g}"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.PositionerPrimaryAngle = f"{event.positioner_angle:g}"
    ds.ViewPosition = event.view
    ds.DetectorType = _DETECTOR[profile.name]
    ds.FilterMaterial = C.MATERIAL_TERMS[event.filter]
    ds.FilterThicknessMinimum = f"{event.filter_mm:g}"
    ds.FilterThicknessMaximum = f"{event.filter_mm:g}"
    ds.ExposureControlMode = "AUTOMATIC"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = event.image_series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = "1"
    ds.InstanceNumber = str(instance_number)
    ds.PatientOrientation = _ORIENTATION[(event.laterality, event.view)]
    ds.ImageLaterality = event.laterality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.QualityControlImage = "NO"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.WindowCenter = "2047"
    ds.WindowWidth = "4096"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.BreastImplantPresent = "NO"
    ds.LossyImageCompression = "00"
    ds.PartialView = "NO"
    # X-Ray Acquisition Dose module: Entrance Dose is in dGy (integer),
    # Organ Dose in dGy, Entrance Dose in mGy as a decimal.
    ds.EntranceDose = int(round(0.0 if zero else event.esak_mgy / 100.0))
    ds.DistanceSourceToEntrance = f"{d_entrance:g}"
    ds.HalfValueLayer = "0" if zero else f"{event.hvl_mm:.3f}"
    ds.OrganDose = "0" if zero else f"{event.agd_mgy / 100.0:.5f}"
    ds.OrganExposed = "BREAST"
    ds.EntranceDoseInmGy = "0" if zero else f"{event.esak_mgy:.3f}"
    ds.ViewCodeSequence = _code_seq(C.snomed(event.view, "SCT" if style == "SCT" else "SRT"))
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
    rng = stable_rng("pixels", event.uid)
    ds.PixelData = rng.integers(0, 4096, size=(8, 8), dtype=np.uint16).astype("<u2").tobytes()
    ds.file_meta = file_meta(C.MG_FOR_PRESENTATION_SOP_CLASS, ds.SOPInstanceUID, C.EXPLICIT_VR_LITTLE_ENDIAN)
    return ds


def build_mg_images(
    vendor: str | None = None,
    rng: np.random.Generator | None = None,
    unit: int = 0,
    *,
    study: Study | None = None,
    **opts,
) -> list[Dataset]:
    """MG For Presentation headers for every stationary exposure of a study.

    Parameters
    ----------
    vendor, rng, unit, **opts
        As for :func:`srdose.synth.build_study_rdsr`, to plan a new study.
    study : Study, optional
        A planned study; pass the one used for the RDSR to get matching
        Irradiation Event UIDs and referenced SOP Instance UIDs.

    Returns
    -------
    list of pydicom.Dataset
        One per 2D event, in acquisition order.  Tomosynthesis sweeps get
        no image here (their objects are Breast Tomosynthesis or projection
        images, whose dose headers this generator does not imitate).
    """
    if study is None:
        if vendor is None or rng is None:
            raise TypeError("give vendor and rng, or a planned study")
        study = plan_study(vendor, rng, unit, **opts)
    events = [e for e in study.events if not e.is_dbt]
    return [build_mg_image(study, e, i + 1) for i, e in enumerate(events)]
