"""Coded concepts used by the synthetic dose reports.

Every concept the generator writes lives here, so a vendor flavour is a
choice among these constants rather than literals scattered through the
builders.  Codes are plain named tuples (not highdicom ``CodedConcept``):
building thousands of content items must stay cheap.

Three coding styles exist for the SNOMED concepts because real devices use
all three:

``"SCT"``
    SNOMED CT identifiers, what the current standard asks for.
``"SRT"``
    The legacy SNOMED-RT identifiers (``T-04000``, ``C-164F9`` ...) still
    written by most installed mammography units.
``"SNM3"``
    Hologic's flavour: SRT codes but the view codes carry the retired
    ``SNM3`` scheme designator.

These deliberately restate the standard instead of importing the parser's
constants (:mod:`srdose.codes`): the generator is the parser's test
partner, and a code wrong in a shared table would pass a round trip
unnoticed.
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    """A coded concept: value, coding scheme designator and meaning."""

    value: str
    scheme: str
    meaning: str


def dcm(value: str, meaning: str) -> Code:
    """Return a DICOM (``DCM``) code."""
    return Code(value, "DCM", meaning)


# --- DCM concepts (same in every style) -------------------------------------
XRAY_RADIATION_DOSE_REPORT = dcm("113701", "X-Ray Radiation Dose Report")
PROCEDURE_REPORTED = dcm("121058", "Procedure reported")
OBSERVER_TYPE = dcm("121005", "Observer Type")
DEVICE = dcm("121007", "Device")
DEVICE_OBSERVER_UID = dcm("121012", "Device Observer UID")
DEVICE_OBSERVER_NAME = dcm("121013", "Device Observer Name")
DEVICE_OBSERVER_MANUFACTURER = dcm("121014", "Device Observer Manufacturer")
DEVICE_OBSERVER_MODEL = dcm("121015", "Device Observer Model Name")
DEVICE_OBSERVER_SERIAL = dcm("121016", "Device Observer Serial Number")
DEVICE_OBSERVER_LOCATION = dcm("121017", "Device Observer Physical Location During Observation")
DEVICE_ROLE = dcm("113876", "Device Role in Procedure")
IRRADIATING_DEVICE = dcm("113859", "Irradiating Device")
STATION_AE_TITLE = dcm("110119", "Station AE Title")
SCOPE_OF_ACCUMULATION = dcm("113705", "Scope of Accumulation")
STUDY = dcm("113014", "Study")
STUDY_INSTANCE_UID = dcm("110180", "Study Instance UID")
DETECTOR_DATA_AVAILABLE = dcm("113945", "X-Ray Detector Data Available")
# Hologic writes the detector flag under 113745 ("Patient Table Relationship").
DETECTOR_DATA_AVAILABLE_HOLOGIC = dcm("113745", "X-Ray Detector Data Available")
SOURCE_DATA_AVAILABLE = dcm("113943", "X-Ray Source Data Available")
MECHANICAL_DATA_AVAILABLE = dcm("113944", "X-Ray Mechanical Data Available")
ACCUMULATED_XRAY_DOSE = dcm("113702", "Accumulated X-Ray Dose Data")
ACQUISITION_PLANE = dcm("113764", "Acquisition Plane")
SINGLE_PLANE = dcm("113622", "Single Plane")
ACCUMULATED_AGD = dcm("111637", "Accumulated Average Glandular Dose")
IRRADIATION_EVENT = dcm("113706", "Irradiation Event X-Ray Data")
IRRADIATION_EVENT_UID = dcm("113769", "Irradiation Event UID")
IRRADIATION_EVENT_LABEL = dcm("113605", "Irradiation Event Label")
DATETIME_STARTED = dcm("111526", "DateTime Started")
IRRADIATION_EVENT_TYPE = dcm("113721", "Irradiation Event Type")
STATIONARY = dcm("113611", "Stationary Acquisition")
ROTATIONAL = dcm("113613", "Rotational Acquisition")
ACQUISITION_PROTOCOL = dcm("125203", "Acquisition Protocol")
TARGET_REGION = dcm("123014", "Target Region")
IMAGE_VIEW = dcm("111031", "Image View")
HALF_VALUE_LAYER = dcm("111634", "Half Value Layer")
ENTRANCE_EXPOSURE_AT_RP = dcm("111636", "Entrance Exposure at RP")
REFERENCE_POINT_DEFINITION = dcm("113780", "Reference Point Definition")
RP_4CM2_BREAST = dcm("113865", "Entrance exposure to a 4.2 cm breast thickness")
RP_PATIENT_SURFACE = dcm("113964", "At Surface of Patient")
ACQUIRED_IMAGE = dcm("113795", "Acquired Image")
AGD = dcm("111631", "Average Glandular Dose")
NUMBER_OF_PULSES = dcm("113768", "Number of Pulses")
PULSE_WIDTH = dcm("113793", "Pulse Width")
IRRADIATION_DURATION = dcm("113742", "Irradiation Duration")
KVP = dcm("113733", "KVP")
TUBE_CURRENT = dcm("113734", "X-Ray Tube Current")
EXPOSURE_TIME = dcm("113824", "Exposure Time")
EXPOSURE = dcm("113736", "Exposure")
FOCAL_SPOT = dcm("113766", "Focal Spot Size")
ANODE_TARGET_MATERIAL = dcm("111632", "Anode Target Material")
# IMS Giotto writes the anode under 113632 instead.
ANODE_TARGET_MATERIAL_GIOTTO = dcm("113632", "Anode Target Material")
XRAY_FILTERS = dcm("113771", "X-Ray Filters")
FILTER_TYPE = dcm("113772", "X-Ray Filter Type")
STRIP_FILTER = dcm("113650", "Strip filter")
# Hologic's filter type value: 111650 is not in CID 10007.
STRIP_FILTER_HOLOGIC = dcm("111650", "Strip filter")
FLAT_FILTER = dcm("113653", "Flat filter")
FILTER_MATERIAL = dcm("113757", "X-Ray Filter Material")
FILTER_THICKNESS_MIN = dcm("113758", "X-Ray Filter Thickness Minimum")
FILTER_THICKNESS_MAX = dcm("113773", "X-Ray Filter Thickness Maximum")
COLLIMATED_FIELD_AREA = dcm("113790", "Collimated Field Area")
COLLIMATED_FIELD_HEIGHT = dcm("113788", "Collimated Field Height")
COLLIMATED_FIELD_WIDTH = dcm("113789", "Collimated Field Width")
XRAY_GRID = dcm("111635", "X-Ray Grid")
NO_GRID = dcm("111646", "No grid")
FOCUSED_GRID = dcm("111642", "Focused grid")
RECIPROCATING_GRID = dcm("111643", "Reciprocating grid")
GRID_IN_HOLOGIC = Code("gridin", "99HOLX", "Grid in")
MECHANICAL_CONFIGURATION = dcm("113956", "CR/DR Mechanical Configuration")
UPRIGHT_STAND = dcm("113954", "Upright Stand Mount")
POSITIONER_PRIMARY_ANGLE = dcm("112011", "Positioner Primary Angle")
POSITIONER_SECONDARY_ANGLE = dcm("112012", "Positioner Secondary Angle")
POSITIONER_PRIMARY_END_ANGLE = dcm("113739", "Positioner Primary End Angle")
COMPRESSION_THICKNESS = dcm("111633", "Compression Thickness")
COMPRESSION_FORCE = dcm("111647", "Compression Force")
DISTANCE_SOURCE_TO_ISOCENTER = dcm("113748", "Distance Source to Isocenter")
DISTANCE_SOURCE_TO_RP = dcm("113737", "Distance Source to Reference Point")
DISTANCE_SOURCE_TO_DETECTOR = dcm("113750", "Distance Source to Detector")
EXPOSURE_INDEX = dcm("113845", "Exposure Index")
TARGET_EXPOSURE_INDEX = dcm("113846", "Target Exposure Index")
DEVIATION_INDEX = dcm("113847", "Deviation Index")
SOURCE_OF_DOSE_INFORMATION = dcm("113854", "Source of Dose Information")
AUTOMATED_DATA_COLLECTION = dcm("113856", "Automated Data Collection")
COMPUTED_FROM_IMAGE_ATTRIBUTES = dcm("113867", "Computed From Image Attributes")


# --- UCUM units ---------------------------------------------------------------
def ucum(value: str, meaning: str | None = None) -> Code:
    """Return a UCUM unit code (meaning defaults to the value)."""
    return Code(value, "UCUM", meaning or value)


UNIT_MM = ucum("mm")
UNIT_MGY = ucum("mGy")
UNIT_KV = ucum("kV")
UNIT_MA = ucum("mA")
UNIT_MS = ucum("ms")
UNIT_S = ucum("s")
UNIT_UAS = ucum("uAs")
# IMS Giotto writes "uA.s": not valid UCUM for microampere-seconds.
UNIT_UAS_GIOTTO = ucum("uA.s")
UNIT_DEG = ucum("deg")
UNIT_N = ucum("N")
UNIT_M2 = ucum("m2")
UNIT_NONE = ucum("1", "no units")

# --- SNOMED concepts per coding style ----------------------------------------
#: key -> (SRT value, SCT value, SRT meaning, SCT meaning)
_SNOMED: dict[str, tuple[str, str, str, str]] = {
    "mammography": ("P5-40010", "71651007", "Mammography", "Mammography"),
    "has_intent": ("G-C0E8", "363703001", "Has Intent", "Has Intent"),
    "diagnostic_intent": ("R-408C3", "261004008", "Diagnostic Intent", "Diagnostic Intent"),
    "yes": ("R-0038D", "373066001", "Yes", "Yes"),
    "breast": ("T-04000", "76752008", "Breast", "Breast"),
    "anatomical_structure": ("T-D0005", "91723000", "Anatomical structure", "Anatomical Structure"),
    "laterality": ("G-C171", "272741003", "Laterality", "Laterality"),
    "right": ("G-A100", "24028007", "Right", "Right"),
    "left": ("G-A101", "7771000", "Left", "Left"),
    "right_breast": ("T-04020", "73056007", "Right breast", "Right breast"),
    "left_breast": ("T-04030", "80248007", "Left breast", "Left breast"),
    "W": ("C-164F9", "26194003", "Tungsten or Tungsten compound", "Tungsten"),
    "MO": ("C-150F9", "71128006", "Molybdenum or Molybdenum compound", "Molybdenum"),
    "RH": ("C-167F9", "59801003", "Rhodium or Rhodium compound", "Rhodium"),
    "AG": ("C-137F9", "41967008", "Silver or Silver compound", "Silver"),
    "AL": ("C-120F9", "12503006", "Aluminum or Aluminum compound", "Aluminum"),
    # CID 4014 "View for Mammography"
    "CC": ("R-10242", "399162004", "cranio-caudal", "cranio-caudal"),
    "MLO": ("R-10226", "399368009", "medio-lateral oblique", "medio-lateral oblique"),
    "ML": ("R-10224", "399260004", "medio-lateral", "medial-lateral"),
    "LM": ("R-10228", "399352003", "latero-medial", "latero-medial"),
    "XCCL": ("R-1024A", "399192008", "cranio-caudal exaggerated laterally", "cranio-caudal exaggerated laterally"),
}

VIEWS = ("CC", "MLO", "ML", "LM", "XCCL")
STYLES = ("SCT", "SRT", "SNM3")


def snomed(key: str, style: str = "SCT") -> Code:
    """Return a SNOMED concept in the given coding style.

    Parameters
    ----------
    key : str
        Concept key, e.g. ``"breast"``, ``"W"`` (tungsten), ``"MLO"``.
    style : {"SCT", "SRT", "SNM3"}
        ``"SNM3"`` only changes the scheme designator of the view codes
        (Hologic); other concepts are SRT.
    """
    srt, sct, srt_meaning, sct_meaning = _SNOMED[key]
    if style == "SCT":
        return Code(sct, "SCT", sct_meaning)
    if style == "SNM3" and key in VIEWS:
        return Code(srt, "SNM3", srt_meaning)
    return Code(srt, "SRT", srt_meaning)


# --- SOP classes and transfer syntaxes ---------------------------------------
XRAY_RDSR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"
MG_FOR_PRESENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2.1"
BREAST_TOMO_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.3"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

#: Material keys to the DICOM defined terms of Anode Target Material /
#: Filter Material in image headers (0018,1191) / (0018,7050).
MATERIAL_TERMS = {
    "W": "TUNGSTEN",
    "MO": "MOLYBDENUM",
    "RH": "RHODIUM",
    "AG": "SILVER",
    "AL": "ALUMINUM",
}
