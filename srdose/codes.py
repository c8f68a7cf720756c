"""Coded concepts srdose reads, as named constants in one place.

Every concept the parser looks for is named here once, with the code the
standard gives (DICOM PS3.16, TID 10001 / 10003 / 10003A-C / 10005) and, in
:data:`VENDOR_DEVIATIONS`, the other codes real devices are seen to use for it.
The parser matches a content item by (scheme, code value) first and by its
code meaning, case-insensitively, as a fallback.

Legacy SNOMED-RT codes (schemes ``SRT`` and ``SNM3``) are translated to
SNOMED CT (``SCT``) with pydicom's own SRT→SCT table, so one SCT code stands
for all three spellings.
"""

from __future__ import annotations

from typing import NamedTuple

from pydicom.sr.coding import Code

from srdose.compat import SNOMED_RT_TO_CT

# --- SOP classes (PS3.4 Annex B) -------------------------------------------
XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
DIGITAL_MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
DIGITAL_MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BREAST_TOMOSYNTHESIS_IMAGE = "1.2.840.10008.5.1.4.1.1.13.1.3"
BREAST_PROJECTION_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.13.1.4"
BREAST_PROJECTION_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.13.1.5"

#: SR storage classes that may carry a dose report (root concept decides).
DOSE_SR_CLASSES = frozenset({XRAY_RADIATION_DOSE_SR, ENHANCED_SR, COMPREHENSIVE_SR, COMPREHENSIVE_3D_SR})
#: Image storage classes whose header we read for dose (units with no RDSR).
MG_IMAGE_CLASSES = frozenset(
    {
        DIGITAL_MG_FOR_PRESENTATION,
        DIGITAL_MG_FOR_PROCESSING,
        SECONDARY_CAPTURE,  # Hologic DBT projection objects, Modality MG
        BREAST_PROJECTION_FOR_PRESENTATION,
        BREAST_PROJECTION_FOR_PROCESSING,
    }
)


def _dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


def _sct(value: str, meaning: str) -> Code:
    return Code(value, "SCT", meaning)


# --- Report structure (TID 10001, 10002, 10005) -----------------------------
XRAY_RADIATION_DOSE_REPORT = _dcm("113701", "X-Ray Radiation Dose Report")
PROCEDURE_REPORTED = _dcm("121058", "Procedure reported")
MAMMOGRAPHY = _sct("71651007", "Mammography")
DEVICE_OBSERVER_UID = _dcm("121012", "Device Observer UID")
DEVICE_OBSERVER_NAME = _dcm("121013", "Device Observer Name")
DEVICE_OBSERVER_MANUFACTURER = _dcm("121014", "Device Observer Manufacturer")
DEVICE_OBSERVER_MODEL_NAME = _dcm("121015", "Device Observer Model Name")
DEVICE_OBSERVER_SERIAL_NUMBER = _dcm("121016", "Device Observer Serial Number")
STATION_AE_TITLE = _dcm("110119", "Station AE Title")
SCOPE_OF_ACCUMULATION = _dcm("113705", "Scope of Accumulation")
STUDY_INSTANCE_UID = _dcm("110180", "Study Instance UID")
ACCUMULATED_XRAY_DOSE_DATA = _dcm("113702", "Accumulated X-Ray Dose Data")
ACCUMULATED_AGD = _dcm("111637", "Accumulated Average Glandular Dose")
LATERALITY = _sct("272741003", "Laterality")

# --- Irradiation event (TID 10003, 10003A/B/C) ------------------------------
IRRADIATION_EVENT_XRAY_DATA = _dcm("113706", "Irradiation Event X-Ray Data")
IRRADIATION_EVENT_UID = _dcm("113769", "Irradiation Event UID")
IRRADIATION_EVENT_LABEL = _dcm("113605", "Irradiation Event Label")
DATETIME_STARTED = _dcm("111526", "DateTime Started")
IRRADIATION_EVENT_TYPE = _dcm("113721", "Irradiation Event Type")
STATIONARY_ACQUISITION = _dcm("113611", "Stationary Acquisition")
STEPPING_ACQUISITION = _dcm("113612", "Stepping Acquisition")
ROTATIONAL_ACQUISITION = _dcm("113613", "Rotational Acquisition")
ACQUISITION_PROTOCOL = _dcm("125203", "Acquisition Protocol")
ANATOMICAL_STRUCTURE = _sct("91723000", "Anatomical structure")
TARGET_REGION = _dcm("123014", "Target Region")
IMAGE_VIEW = _dcm("111031", "Image View")
IMAGE_VIEW_MODIFIER = _dcm("111032", "Image View Modifier")
HALF_VALUE_LAYER = _dcm("111634", "Half Value Layer")
ENTRANCE_EXPOSURE_AT_RP = _dcm("111636", "Entrance Exposure at RP")
REFERENCE_POINT_DEFINITION = _dcm("113780", "Reference Point Definition")
AVERAGE_GLANDULAR_DOSE = _dcm("111631", "Average Glandular Dose")
NUMBER_OF_PULSES = _dcm("113768", "Number of Pulses")
PULSE_WIDTH = _dcm("113793", "Pulse Width")
IRRADIATION_DURATION = _dcm("113742", "Irradiation Duration")
KVP = _dcm("113733", "KVP")
XRAY_TUBE_CURRENT = _dcm("113734", "X-Ray Tube Current")
EXPOSURE_TIME = _dcm("113824", "Exposure Time")
EXPOSURE = _dcm("113736", "Exposure")
FOCAL_SPOT_SIZE = _dcm("113766", "Focal Spot Size")
ANODE_TARGET_MATERIAL = _dcm("111632", "Anode Target Material")
XRAY_FILTERS = _dcm("113771", "X-Ray Filters")
XRAY_FILTER_TYPE = _dcm("113772", "X-Ray Filter Type")
XRAY_FILTER_MATERIAL = _dcm("113757", "X-Ray Filter Material")
XRAY_FILTER_THICKNESS_MIN = _dcm("113758", "X-Ray Filter Thickness Minimum")
XRAY_FILTER_THICKNESS_MAX = _dcm("113773", "X-Ray Filter Thickness Maximum")
XRAY_GRID = _dcm("111635", "X-Ray Grid")
POSITIONER_PRIMARY_ANGLE = _dcm("112011", "Positioner Primary Angle")
POSITIONER_SECONDARY_ANGLE = _dcm("112012", "Positioner Secondary Angle")
POSITIONER_PRIMARY_END_ANGLE = _dcm("113739", "Positioner Primary End Angle")
POSITIONER_SECONDARY_END_ANGLE = _dcm("113740", "Positioner Secondary End Angle")
COMPRESSION_THICKNESS = _dcm("111633", "Compression Thickness")
COMPRESSION_FORCE = _dcm("111647", "Compression Force")
COMPRESSION_PRESSURE = _dcm("111648", "Compression Pressure")
COMPRESSION_CONTACT_AREA = _dcm("111649", "Compression Contact Area")
DISTANCE_SOURCE_TO_DETECTOR = _dcm("113750", "Distance Source to Detector")
DISTANCE_SOURCE_TO_RP = _dcm("113737", "Distance Source to Reference Point")
COLLIMATED_FIELD_AREA = _dcm("113790", "Collimated Field Area")

# Reference point definitions (CID 10025) seen in mammography RDSRs.
RP_AT_SURFACE_OF_PATIENT = _dcm("113964", "At Surface of Patient")
RP_4_2_CM_BREAST = _dcm("113865", "Entrance exposure to a 4.2 cm breast thickness")

# --- Value sets mapped to short labels --------------------------------------
#: Laterality (CID 244 / CID 6022 breast sites) to L, R or B.
LATERALITY_LABELS = {
    ("SCT", "24028007"): "R",  # Right
    ("SCT", "7771000"): "L",  # Left
    ("SCT", "51440002"): "B",  # Right and left
    ("SCT", "73056007"): "R",  # Right breast
    ("SCT", "80248007"): "L",  # Left breast
}
LATERALITY_MEANINGS = {
    "right": "R",
    "left": "L",
    "right and left": "B",
    "bilateral": "B",
    "right breast": "R",
    "left breast": "L",
    "both breasts": "B",
}

#: Mammography views (CID 4014) to the abbreviations radiographers use.
VIEW_LABELS = {
    ("SCT", "399162004"): "CC",  # cranio-caudal
    ("SCT", "399368009"): "MLO",  # medio-lateral oblique
    ("SCT", "399260004"): "ML",  # medio-lateral
    ("SCT", "399352003"): "LM",  # latero-medial
    ("SCT", "399099002"): "LMO",  # latero-medial oblique
    ("SCT", "399192008"): "XCCL",  # cranio-caudal exaggerated laterally
    ("SCT", "399101009"): "XCCM",  # cranio-caudal exaggerated medially
    ("SCT", "399196006"): "FB",  # caudo-cranial (from below)
    ("SCT", "399188001"): "SIO",  # superolateral to inferomedial oblique
    ("SCT", "441555000"): "ISO",  # inferomedial to superolateral oblique
    ("SCT", "399161006"): "CV",  # cleavage
    ("SCT", "399011000"): "AT",  # axillary tail
}
VIEW_MEANINGS = {
    "cranio-caudal": "CC",
    "craniocaudal": "CC",
    "medio-lateral oblique": "MLO",
    "mediolateral oblique": "MLO",
    "medio-lateral": "ML",
    "mediolateral": "ML",
    "latero-medial": "LM",
    "lateromedial": "LM",
    "latero-medial oblique": "LMO",
    "lateromedial oblique": "LMO",
    "cranio-caudal exaggerated laterally": "XCCL",
    "cranio-caudal exaggerated medially": "XCCM",
    "caudo-cranial": "FB",
    "caudo-cranial (from below)": "FB",
    "superolateral to inferomedial oblique": "SIO",
    "inferomedial to superolateral oblique": "ISO",
    "cleavage": "CV",
    "axillary tail": "AT",
}
#: DICOM ViewPosition (0018,5101) defined terms in MG image headers.
VIEW_POSITION_LABELS = {
    "CC": "CC",
    "MLO": "MLO",
    "ML": "ML",
    "LM": "LM",
    "LMO": "LMO",
    "XCCL": "XCCL",
    "XCCM": "XCCM",
    "FB": "FB",
    "SIO": "SIO",
    "ISO": "ISO",
    "CV": "CV",
    "AT": "AT",
}

#: Materials (CID 10016 anode, CID 10006 filter) to element symbols. Legacy
#: SRT codes from PS3.16 CID 10006/10016; any scheme falls back on meaning.
MATERIAL_CODES = {
    ("SRT", "C-150F9"): "Mo",
    ("SRT", "C-167F9"): "Rh",
    ("SRT", "C-164F9"): "W",
    ("SRT", "C-137F9"): "Ag",
    ("SRT", "C-120F9"): "Al",
    ("SCT", "105830007"): "Al",
    ("SRT", "C-127F9"): "Cu",
    ("SRT", "C-1190E"): "Cu",
}
MATERIAL_WORDS = {
    "molybdenum": "Mo",
    "rhodium": "Rh",
    "tungsten": "W",
    "silver": "Ag",
    "aluminum": "Al",
    "aluminium": "Al",
    "copper": "Cu",
    "beryllium": "Be",
    "titanium": "Ti",
    "palladium": "Pd",
}


class Deviation(NamedTuple):
    """A code a device uses where the standard names another."""

    seen: tuple[str, str]  # (scheme, value) as written by the device
    means: Code  # the standard concept it stands for
    who: str  # where it was seen


#: Known vendor deviations, in one place. Each row is a code seen in a real
#: dose report that stands for a standard concept.
VENDOR_DEVIATIONS = (
    # IMS Giotto Class writes the anode under 113632 (a fluoroscopy code).
    Deviation(("DCM", "113632"), ANODE_TARGET_MATERIAL, "IMS Giotto Class"),
    # Hologic Selenia Dimensions: "X-Ray Detector Data Available" as 113745.
    Deviation(("DCM", "113745"), _dcm("113945", "X-Ray Detector Data Available"), "Hologic"),
    # Hologic: filter type "Strip filter" as 111650 instead of 113650.
    Deviation(("DCM", "111650"), _dcm("113650", "Strip filter"), "Hologic"),
)


def normalise(scheme: str, value: str) -> tuple[str, str]:
    """Return one spelling of a code: legacy SNOMED (SRT, SNM3) becomes SCT.

    Parameters
    ----------
    scheme, value
        Coding scheme designator and code value as written in the file.
    """
    scheme = (scheme or "").strip().upper()
    value = (value or "").strip()
    if scheme in ("SRT", "SNM3", "99SDM"):
        sct = SNOMED_RT_TO_CT.get(value)
        if sct:
            return "SCT", sct
        return "SRT", value
    return scheme, value


def key_of(code: Code) -> tuple[str, str]:
    """The normalised (scheme, value) key of a named constant."""
    return normalise(code.scheme_designator, code.value)
