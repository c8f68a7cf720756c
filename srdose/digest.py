"""The digest of what srdose keeps from a dose report: two encodings of one object agree.

Apart from the store, so that parse workers compute it beside the parse without loading the
database's modules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

from srdose.parse.records import DoseReport
from srdose.pseudonym import Pseudonymiser


def coarse_age(age: float | None, step: int) -> int | None:
    """Completed years, floored to ``step`` years: never finer than a year,
    which with the study date would give the birth date."""
    if age is None or not math.isfinite(age):
        return None
    return int(math.floor(age / step) * step)


def content_digest(report: DoseReport, pseudonymiser: Pseudonymiser | None, age_resolution_years: int = 1) -> str:
    """SHA-256 of what srdose keeps from ``report`` (identifiers as their
    keyed pseudonyms, no flags): two encodings of one object agree, an
    object reusing a SOP instance UID for other content does not. A function
    of the report and the store's settings only, so that parse workers can
    compute it beside the parse."""
    p = pseudonymiser
    st = report.study
    doc = {
        "sop_class": report.sop_class_uid,
        "source": report.source,
        "study": [
            st.study_instance_uid,
            st.study_date,
            st.study_time,
            st.sex,
            coarse_age(st.age_years, max(1, int(age_resolution_years))),
            p.patient(st.patient_id) if p else None,
            p.accession(st.accession) if p else None,
        ],
        "device": [report.device.manufacturer, report.device.model, report.device.serial],
        "events": [{k: v for k, v in dataclasses.asdict(e).items() if k != "flags"} for e in report.events],
        "accumulated": [dataclasses.asdict(a) for a in report.accumulated],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=repr).encode()).hexdigest()
