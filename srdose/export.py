"""Export: the events table as CSV or XLSX (a column contract other tools rely on).

One row per irradiation event, columns in :data:`EVENT_EXPORT_COLUMNS` order,
values in canonical units, empty where unknown. Only pseudonyms leave the
database: no patient name, ID, birth date or accession number is exported.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from srdose.files import FORMATS, private_dir, private_file, write_csv_tables, write_xlsx
from srdose.report.render import safe_name
from srdose.store.database import EVENT_EXPORT_COLUMNS, event_export_tables, iter_event_rows
from srdose.store.summaries import BreastDose, StudyDose, study_doses


def export_events(store, out: Path, fmt: str | None = None, serials: Sequence[str] | None = None, **filters) -> int:
    """Export the events table; the format follows ``fmt`` or the file suffix. ``serials``: only
    the events of these units."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".") or "csv").lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use csv or xlsx")
    if serials and len(serials) == 1:
        filters["serial"] = serials[0]
    several = serials if serials and len(serials) > 1 else None
    if fmt == "csv":  # by columns: ten million events in the time a million took by rows
        pieces = event_export_tables(store, **filters)
        if several:
            pieces = (partial(_of_units, piece, several) for piece in pieces)
        return write_csv_tables(pieces, out, EVENT_EXPORT_COLUMNS)
    rows = iter_event_rows(store, **filters)
    if several:
        k, wanted = EVENT_EXPORT_COLUMNS.index("device_serial"), set(several)
        rows = (r for r in rows if r[k] in wanted)
    return write_xlsx(rows, out, EVENT_EXPORT_COLUMNS)


def _of_units(piece: Callable[[], pa.Table], serials: Sequence[str]) -> pa.Table:
    table = piece()
    return table.filter(pc.is_in(table.column("device_serial"), value_set=pa.array(list(serials), pa.string())))


# --- FHIR: the HL7 Radiation Dose Summary for Diagnostic Procedures --------------------------------
#
# The profile and its codes: the implementation guide hl7.fhir.uv.radiation-dose-summary (FHIR R4),
# input/fsh/RadiationDoseSummary.fsh of github.com/HL7/fhir-radiation-dose-summary-ig: profile
# RadiationDoseSummary (an Observation), code LOINC 73569-6, component codes from
# ComponentRadiationDoseSummaryVS (extensible), DICOM identifier types of its CodeSystem.

RDS_CODE_DISPLAY = "Radiation exposure and protection information [Description] Document Diagnostic imaging"
RDS_PROFILE = "http://hl7.org/fhir/uv/radiation-dose-summary/StructureDefinition/radiation-dose-summary"
RDS_IDENTIFIER_TYPE = "http://hl7.org/fhir/uv/radiation-dose-summary/CodeSystem/dicom-identifier-type"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
SCT_SYSTEM = "http://snomed.info/sct"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
#: srdose's own namespace (an OID from a UUID, ITU-T X.667): .1 its pseudonyms, .2 its codes.
SRDOSE_OID = "2.25.91184230803788301694196255030742819355"
PSEUDONYM_SYSTEM = f"urn:oid:{SRDOSE_OID}.1"
SRDOSE_CODES = f"urn:oid:{SRDOSE_OID}.2"
#: The breasts (SNOMED CT, with pydicom's meanings).
BREAST = {"R": ("73056007", "Right breast"), "L": ("80248007", "Left breast")}


def _uid_identifier(kind: str, display: str, uid: str) -> dict:
    return {
        "type": {"coding": [{"system": RDS_IDENTIFIER_TYPE, "code": kind, "display": display}]},
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{uid}",
    }


def _mgy(value: float) -> dict:
    return {"value": round(value, 4), "unit": "mGy", "system": UCUM_SYSTEM, "code": "mGy"}


def dose_observation(s: StudyDose, b: BreastDose) -> dict:
    """The Radiation Dose Summary Observation of one breast of a study: the accumulated AGD the
    unit reported (DCM 111637) and srdose's recalculated MGD (the sum of the breast's events;
    left out when some event has none)."""
    code, meaning = BREAST[b.laterality]
    study = _uid_identifier("study-instance-uid", "Study Instance UID", s.study_uid)
    whole = b.recalculated_mgy is not None and b.recalculated_events == b.events
    components = []
    if b.reported_mgy is not None:
        components.append(
            {
                "code": {
                    "coding": [
                        {"system": DCM_SYSTEM, "code": "111637", "display": "Accumulated Average Glandular Dose"}
                    ],
                    "text": f"Accumulated Average Glandular Dose, {meaning.lower()}, as the unit reported it",
                },
                "valueQuantity": _mgy(b.reported_mgy),
            }
        )
    if whole:
        assert b.recalculated_mgy is not None
        components.append(
            {
                "code": {
                    "coding": [
                        {
                            "system": SRDOSE_CODES,
                            "code": "mgd-recalculated",
                            "display": "Mean glandular dose recalculated by srdose",
                        }
                    ],
                    "text": f"Mean glandular dose, {meaning.lower()}, recalculated by srdose (Dance model)",
                },
                "valueQuantity": _mgy(b.recalculated_mgy),
            }
        )
    day = s.study_date
    summary = [f"{meaning}: {b.events} exposure(s)"]
    if b.reported_mgy is not None:
        summary.append(f"accumulated AGD {b.reported_mgy:.2f} mGy (reported)")
    if whole:
        method = ", ".join(sorted(b.methods))
        factors = ", ".join(sorted(b.factor_sets)) or "unknown factor set"
        summary.append(f"MGD {b.recalculated_mgy:.2f} mGy (recalculated: Dance model, {method}, {factors})")
    elif b.recalculated_events:
        summary.append(f"MGD not given: {b.events - b.recalculated_events} exposure(s) not recalculated")
    return {
        "resourceType": "Observation",
        "meta": {"profile": [RDS_PROFILE]},
        "identifier": [_uid_identifier("sop-instance-uid", "SOP Instance UID", uid) for uid in s.source_uids],
        "partOf": [{"identifier": study, "type": "ImagingStudy"}],
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": LOINC_SYSTEM,
                    "code": "73569-6",
                    "display": RDS_CODE_DISPLAY,
                }
            ]
        },
        "subject": {
            "identifier": {"system": PSEUDONYM_SYSTEM, "value": s.patient_pseudonym or "unknown"},
            "type": "Patient",
        },
        "focus": [{"identifier": study, "type": "ImagingStudy"}],
        "effectiveDateTime": f"{day[:4]}-{day[4:6]}-{day[6:8]}" if day and len(day) == 8 else None,
        # the dose report names no one who authorised the exposures
        "performer": [{"extension": [{"url": DATA_ABSENT, "valueCode": "unknown"}], "type": "Practitioner"}],
        "valueString": "; ".join(summary),
        "bodySite": {"coding": [{"system": SCT_SYSTEM, "code": code, "display": meaning}]},
        "component": components,
    }


def profile_problems(obs: dict) -> list[str]:
    """What ``obs`` lacks of the RadiationDoseSummary profile's required elements (the FHIR
    library checks the resource itself; it does not read the profile)."""
    problems = []
    if RDS_PROFILE not in obs.get("meta", {}).get("profile", []):
        problems.append("meta.profile does not name RadiationDoseSummary")
    if not any(
        c.get("system") == LOINC_SYSTEM and c.get("code") == "73569-6" for c in obs.get("code", {}).get("coding", [])
    ):
        problems.append("code is not LOINC 73569-6")
    for name in ("subject", "effectiveDateTime", "valueString"):
        if not obs.get(name):
            problems.append(f"{name} is required (1..1)")
    for name in ("focus", "partOf", "performer"):
        if len(obs.get(name) or []) != 1:
            problems.append(f"{name} must hold exactly one reference")
    study = (obs.get("partOf") or [{}])[0].get("identifier", {})
    if study.get("system") != "urn:dicom:uid" or not study.get("value"):
        problems.append("partOf[imagingStudyRef] needs the Study Instance UID")
    for c in obs.get("component", []):
        q = c.get("valueQuantity", {})
        if q.get("system") != UCUM_SYSTEM or not q.get("code"):
            problems.append(f"component {c['code'].get('text')} has no UCUM quantity")
    return problems


def fhir_bundle(s: StudyDose) -> dict:
    """A collection Bundle of a study's breast Observations, validated by the FHIR library
    (``fhir.resources``, FHIR R4B models; the ``fhir`` extra)."""
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError as exc:  # an optional dependency: say what to install
        raise RuntimeError("the FHIR export needs fhir.resources: pip install 'srdose[fhir]'") from exc
    entries = []
    for lat in ("R", "L"):
        if lat in s.breasts:
            obs = dose_observation(s, s.breasts[lat])
            problems = profile_problems(obs)
            if problems:
                raise ValueError(f"study {s.study_uid}: " + "; ".join(problems))
            entries.append(
                {"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, s.study_uid + lat)}", "resource": obs}
            )
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Bundle.model_validate(bundle)  # raises on anything that is not FHIR
    return bundle


def export_fhir(
    store, out_dir: Path, since: str | None = None, until: str | None = None, study_uid: str | None = None
) -> int:
    """One JSON Bundle per study (``<Study Instance UID>.json``) in ``out_dir``; returns how many."""
    out_dir = private_dir(Path(out_dir))
    n = 0
    for s in study_doses(store, since, until, study_uid):
        if not s.breasts:
            continue
        with private_file(out_dir / f"{safe_name(s.study_uid)}.json", "w", encoding="utf-8") as fh:
            json.dump(fhir_bundle(s), fh, indent=1)
        n += 1
    return n
