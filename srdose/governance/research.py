"""Research export for a trusted research environment (``srdose export research``).

One row per irradiation event of patients (not test / phantom studies, not
opted out: the opt-out list is read at export time, so a patient who opts
out is missing from every export made afterwards), de-identified:

* ``patient`` is a second, per-project pseudonym of the site pseudonym
  (:class:`srdose.governance.keys.ProjectKeys`): the recipient cannot link two
  projects nor get back to the site pseudonym; ``study`` likewise replaces
  the Study Instance UID; no UID, accession or site pseudonym is written;
* dates are shifted per patient by a keyed ±1..N days (``study_date``,
  ``event_datetime``), the same shift for all of a patient's dates, so
  intervals are kept;
* ages are banded (``[governance] research_age_band_years``; 0: whole years);
* free text (``protocol``, ``label``, ``study_description``) is dropped unless
  allow-listed in ``[governance] research_free_text``; the standard protocol
  (:func:`srdose.curation.protocols.standard_protocol`) is always written;
* the unit is an opaque per-project label (``unit-3fa2c1d0``) with its
  manufacturer and model, never the serial, station or institution;
* a manifest (JSON) says what was exported, when, under which rules, how
  many rows and the SHA-256 of every file.

Files: ``<project>-events.csv`` (or ``.xlsx``), ``<project>-events.parquet``
(when pyarrow is installed) and ``<project>-manifest.json`` in ``--out``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from srdose import __version__
from srdose.curation.protocols import protocol_mapper
from srdose.files import private_dir, private_file, write_csv, write_xlsx
from srdose.governance.keys import ProjectKeys, age_band, shift_date, shift_datetime
from srdose.store.governance import (
    iter_research_rows,
    opted_out_pseudonyms,
    research_counts,
)

FREE_TEXT = ("protocol", "label", "study_description")
BASE_COLUMNS = (
    "patient",
    "study",
    "study_date",
    "event_datetime",
    "age_band",
    "sex",
    "unit",
    "manufacturer",
    "model",
    "acquisition",
    "laterality",
    "view",
    "protocol_standard",
    "kvp",
    "mas",
    "exposure_time_ms",
    "n_pulses",
    "anode",
    "filter",
    "filter_thickness_mm",
    "compressed_thickness_mm",
    "compression_force_n",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_reported_mgy",
    "mgd_recalc_mgy",
    "flags",
)
NUMERIC = {
    "kvp",
    "mas",
    "exposure_time_ms",
    "filter_thickness_mm",
    "compressed_thickness_mm",
    "compression_force_n",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_reported_mgy",
    "mgd_recalc_mgy",
}


class ResearchExportError(ValueError):
    pass


def columns_for(free_text: Iterable[str]) -> tuple[str, ...]:
    allowed = [c for c in FREE_TEXT if c in set(free_text)]
    return BASE_COLUMNS + tuple(allowed)


def research_rows(
    store,
    keys: ProjectKeys,
    columns: Sequence[str],
    band: int,
    since: str | None,
    until: str | None,
    exclude_flagged: bool,
    counts: dict,
    protocol: Callable[[str | None], str],
) -> Iterator[tuple]:
    """The de-identified rows of the extract, one tuple of ``columns`` per event; ``counts`` gets
    ``flagged_excluded``, ``patients`` and ``studies``."""
    patients, studies = set(), set()
    for r in iter_research_rows(store, since, until):
        if exclude_flagged and r["flags"] and "infeasible:" in r["flags"]:
            counts["flagged_excluded"] += 1
            continue
        site = r["patient_pseudonym"]
        # a study without a patient ID is its own patient for pseudonym and shift
        patient_key = site if site else "study:" + (r["study_instance_uid"] or "")
        shift = keys.shift_days(patient_key)
        out = {
            "patient": keys.patient(patient_key),
            "study": keys.study(r["study_instance_uid"]),
            "study_date": shift_date(r["study_date"], shift),
            "event_datetime": shift_datetime(r["datetime_started"], shift),
            "age_band": age_band(r["age_years"], band),
            "sex": r["sex"],
            "unit": keys.unit(r["manufacturer"], r["model"], r["serial"]),
            "manufacturer": r["manufacturer"],
            "model": r["model"],
            "acquisition": r["acquisition"],
            "laterality": r["laterality"],
            "view": r["view"],
            "protocol_standard": protocol(r["protocol"]),
            "kvp": r["kvp"],
            "mas": r["mas"],
            "exposure_time_ms": r["exposure_time_ms"],
            "n_pulses": r["n_pulses"],
            "anode": r["anode"],
            "filter": r["filter_material"],
            "filter_thickness_mm": r["filter_thickness_mm"],
            "compressed_thickness_mm": r["compressed_thickness_mm"],
            "compression_force_n": r["compression_force_n"],
            "hvl_mm": r["hvl_mm"],
            "entrance_exposure_mgy": r["entrance_exposure_mgy"],
            "agd_reported_mgy": r["agd_mgy"],
            "mgd_recalc_mgy": r["mgd_recalc_mgy"],
            "flags": r["flags"],
            "protocol": r["protocol"],
            "label": r["label"],
            "study_description": r["description"],
        }
        patients.add(out["patient"])
        studies.add(out["study"])
        yield tuple(out[c] for c in columns)
    counts["patients"] = len(patients)
    counts["studies"] = len(studies)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_parquet(rows: list[tuple], columns, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for i, c in enumerate(columns):
        values = [r[i] for r in rows]
        if c in NUMERIC:
            typ = pa.float64()
        elif c == "n_pulses":
            typ = pa.int64()
        else:
            typ = pa.string()
            values = [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, type=typ))
    with private_file(path, "wb") as fh:
        pq.write_table(pa.Table.from_arrays(arrays, names=list(columns)), fh)


def parquet_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def export_research(
    store,
    site_secret: bytes,
    project: str,
    out_dir: Path,
    settings,
    fmt: str = "csv",
    parquet: bool | None = None,
    since: str | None = None,
    until: str | None = None,
    exclude_flagged: bool = False,
) -> dict:
    """Write the extract of ``project`` to ``out_dir``; returns the manifest (also written)."""
    if fmt not in ("csv", "xlsx"):
        raise ResearchExportError(f"unknown format {fmt!r}: use csv or xlsx")
    gov = settings.governance
    free_text = list(gov.research_free_text)
    unknown = set(free_text) - set(FREE_TEXT)
    if unknown:
        raise ResearchExportError(
            f"[governance] research_free_text: unknown column(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(FREE_TEXT)}"
        )
    if parquet is None:
        parquet = parquet_available()
    elif parquet and not parquet_available():
        raise ResearchExportError("Parquet needs pyarrow: pip install pyarrow (or use --no-parquet)")
    keys = ProjectKeys(site_secret, project, gov.research_date_shift_days)
    band = gov.research_age_band_years
    columns = columns_for(free_text)
    out_dir = private_dir(Path(out_dir))
    counts = {"flagged_excluded": 0}
    protocol = protocol_mapper(settings.curation.protocol_map or None)
    rows = list(research_rows(store, keys, columns, band, since, until, exclude_flagged, counts, protocol))
    files = {}
    table = out_dir / f"{project}-events.{fmt}"
    (write_csv if fmt == "csv" else write_xlsx)(iter(rows), table, columns)
    files[table.name] = table
    if parquet:
        pq_path = out_dir / f"{project}-events.parquet"
        _write_parquet(rows, columns, pq_path)
        files[pq_path.name] = pq_path
    held = research_counts(store, since, until)
    manifest = {
        "project": project,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "srdose_version": __version__,
        "period": {"from": since, "to": until},
        "rows": len(rows),
        "patients": counts.get("patients", 0),
        "studies": counts.get("studies", 0),
        "excluded": {
            "not_patient_events": held["not_patient"],
            "opted_out_events": held["opted_out"],
            "infeasible_flagged_events": counts["flagged_excluded"],
            "opted_out_patients_on_list": len(opted_out_pseudonyms(store)),
        },
        "rules": {
            "patient": "per-project pseudonym: HMAC-SHA256 of the site pseudonym under a key derived "
            "from the site secret and the project name",
            "study": "per-project pseudonym of the Study Instance UID",
            "dates": f"shifted per patient by a keyed offset of +/-1..{keys.max_shift_days} days; "
            "intervals within a patient kept",
            "age": f"bands of {band} years" if band > 0 else "whole years",
            "free_text": sorted(free_text) or "none (protocol, label, study description dropped)",
            "unit": "per-project label; serial, station and institution dropped",
            "excluded": "test / QA phantom studies; opted-out patients (list read at export time)"
            + (
                "; events with infeasible values"
                if exclude_flagged
                else "; events with infeasible values kept, see flags"
            ),
            "identifiers": "no name, patient ID, birth date, accession number, UID or site pseudonym",
        },
        "columns": list(columns),
        "files": {name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for name, p in files.items()},
    }
    if not parquet:
        manifest["parquet"] = "not written (pyarrow not installed or --no-parquet)"
    man_path = out_dir / f"{project}-manifest.json"
    with private_file(man_path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2) + "\n")
    manifest["manifest_path"] = str(man_path)
    manifest["manifest_sha256"] = _sha256(man_path)
    return manifest
