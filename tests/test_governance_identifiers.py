"""No patient identifier in any file srdose writes, nor in its database.

Real vendor files (when the shared material is here) and synthetic studies seeded with
known names, IDs, accession numbers and birth dates are ingested; every
command that writes something is run; then every byte of every file under
the data directory -- exports (CSV, XLSX members decompressed, Parquet
decoded), manifests, the SQLite database and its -wal -- and the commands'
output are searched for each identifier, in UTF-8 and in the DICOM person
name form (``FAMILY^GIVEN``) and its spaced forms.

Not searched: the quarantine folder. By design it holds the refused DICOM
files untouched (a physicist must be able to read, fix and re-ingest them),
identifiers included; it is created mode 0700, which is checked instead.
Not searched either: the output of ``srdose reidentify``, whose purpose is
to print the patient ID (to an authorised person, audited).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pydicom
import pytest

from tests import builders as B
from tests.conftest import SHARED_RDSR
from tests.test_governance import cli

REAL = (
    "MG-RDSR-Hologic_mix.dcm",
    "MG-RDSR-GEPristina-2D.dcm",
    "MG-RDSR-Giotto-DBT.dcm",
    "MG-Im-GE-SenDS-scaled.dcm",
    "CT-RDSR-Siemens_Flash-TAP-SS.dcm",
    "DX-RDSR-Canon_CXDI.dcm",
    "RF-RDSR-Philips_Allura.dcm",
    "RF-RDSR-Siemens-Zee.dcm",
    "CT-ESR-GE_Optima.dcm",
    "ESR_non-dose.dcm",
)
MIN_LENGTH = 5  # shorter values ("xxxx") are placeholders that occur anywhere by chance


def name_forms(pn: str) -> set[str]:
    """A person name as DICOM writes it and as people do."""
    parts = [p for p in pn.split("^") if p]
    forms = {pn, " ".join(parts)}
    if len(parts) >= 2:
        forms |= {f"{parts[1]} {parts[0]}", f"{parts[0]}, {parts[1]}"}
    return forms


def identifiers_of_file(path: Path) -> set[str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = set()
    for kw in ("PatientID", "AccessionNumber", "OtherPatientIDs"):
        v = ds.get(kw)
        if v not in (None, ""):
            out.add(str(v).strip())
    if ds.get("PatientName"):
        out |= name_forms(str(ds.PatientName))
    birth = str(ds.get("PatientBirthDate") or "")
    # an anonymiser may have written the study date as the birth date (MG-Im-GE-SenDS:
    # 20130412, "001D"); the study date is kept by design, so that value cannot be told apart
    if birth and birth != str(ds.get("StudyDate") or ""):
        out.add(birth)
    return out


def scan_targets(data_dir: Path):
    """(name, bytes) of every file under the data directory except the quarantine
    folder, with XLSX members decompressed and Parquet tables decoded as text."""
    quarantine = data_dir / "quarantine"
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        if quarantine in path.parents:
            continue
        raw = path.read_bytes()
        yield str(path), raw
        if zipfile.is_zipfile(io.BytesIO(raw)):
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                for member in z.namelist():
                    yield f"{path}!{member}", z.read(member)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield f"{path} (decoded)", json.dumps(pq.read_table(path).to_pylist(), default=str).encode()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # openpyxl, see cli()
def test_no_identifier_in_any_file_srdose_writes_or_in_the_database(srdose_env, tmp_path):
    from srdose import synth as S

    src = tmp_path / "in"
    identifiers: set[str] = set()
    for i, vendor in enumerate(S.VENDORS):
        out = src / vendor
        S.generate(vendor, 2, out, seed=40 + i, manifest=True, images=(vendor == "ge"), dbt_fraction=0.5)
        for st in json.loads((out / "manifest.json").read_text())["studies"]:
            ids = st["identifiers"]
            identifiers |= {ids["patient_id"], ids["accession_number"], ids["patient_birth_date"]}
            identifiers |= name_forms(ids["patient_name"])
    (src / "builders.dcm").write_bytes(B.to_bytes(B.rdsr(events=[B.event(), B.event(kvp="60")])))
    identifiers |= {B.PATIENT["PatientID"], B.PATIENT["AccessionNumber"], B.PATIENT["PatientBirthDate"]}
    identifiers |= name_forms(B.PATIENT["PatientName"])
    phantom = dict(B.PATIENT, PatientName="QA^PHANTOMLEEDS", PatientID="QAPHANTOM77")
    (src / "phantom.dcm").write_bytes(B.to_bytes(B.rdsr(patient=phantom)))
    identifiers |= {"QAPHANTOM77"} | name_forms("QA^PHANTOMLEEDS")
    real = [SHARED_RDSR / n for n in REAL if (SHARED_RDSR / n).is_file()]
    for path in real:
        shutil.copy(path, src / path.name)
        identifiers |= identifiers_of_file(path)
    identifiers = {v for v in identifiers if len(v) >= MIN_LENGTH}
    assert len(identifiers) > 40

    key = tmp_path / "keys" / "reid.key"  # outside the data directory, as it must be
    env = {"SRDOSE_GOVERNANCE__REIDENTIFICATION_KEY_FILE": str(key)}
    outputs = []
    r = cli("ingest", src, env=env)
    assert r.exit_code == (1 if real else 0), r.output
    outputs.append(r.output)
    exports = srdose_env / "exports"
    optout = tmp_path / "optout.txt"
    optout.write_text(B.PATIENT["PatientID"] + "\n")
    for args in (
        ("export", "events", "--out", exports / "events.csv"),
        ("export", "events", "--out", exports / "events.xlsx"),
        ("optout", "import", optout),
        ("export", "research", "--project", "trePilot", "--out", exports / "research"),
        ("export", "research", "--project", "treXlsx", "--format", "xlsx", "--out", exports / "rx"),
        ("check",),
        ("check", "--recheck"),
        ("check", "--rules"),
        ("units",),
        ("units", "rename", "1", "Breast room A"),
        ("units", "alias", "--station", "ROOM1", "Breast room B"),
        ("protocols",),
        ("optout", "status"),
        ("purge", "--dry-run", "--before", "2000-01-01"),
        ("purge", "--yes", "--before", "2000-01-01"),
        ("audit",),
        ("audit", "--json"),
    ):
        r = cli(*args, env=env)
        assert r.exit_code in (0, 1), (args, r.output, r.exception)
        outputs.append(r.output)
        if args[0] == "audit" and len(args) > 1:
            (srdose_env / "audit.jsonl").write_text(r.output)
    from srdose.config import load
    from srdose.pseudonym import Pseudonymiser, load_or_create_secret

    pseudonym = Pseudonymiser(load_or_create_secret(load().site_secret_path)).patient(B.PATIENT["PatientID"])
    r = cli("reidentify", pseudonym, "--reason", "test", env=env)  # prints the ID: its purpose
    assert r.exit_code == 0 and r.stdout.strip() == B.PATIENT["PatientID"]

    assert (exports / "research" / "trePilot-events.csv").is_file()
    assert (exports / "rx" / "treXlsx-events.xlsx").is_file()
    assert (srdose_env / "srdose.sqlite").is_file()
    scanned = list(scan_targets(srdose_env)) + [("command output", "\n".join(outputs).encode())]
    assert len(scanned) > 10
    leaks = [(name, ident) for name, data in scanned for ident in identifiers if ident.encode("utf-8") in data]
    assert not leaks, leaks[:20]

    quarantine = srdose_env / "quarantine"
    if real:
        assert quarantine.is_dir() and quarantine.stat().st_mode & 0o777 == 0o700
        # the refused files are there untouched -- and the scan finds their identifiers,
        # which shows that it would find a leak
        held = b"".join(p.read_bytes() for p in quarantine.glob("*.dcm"))
        assert any(ident.encode("utf-8") in held for ident in identifiers)
