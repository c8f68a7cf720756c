"""Write synthetic studies to disk: the only module of the subpackage doing I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .mg import build_mg_images
from .model import Study
from .plan import plan_study
from .rdsr import encode_study_rdsr
from .vendors import VENDORS, get_profile

__all__ = ["generate", "write_study_with_images", "StudyFiles", "study_rng", "identifiers_of", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"


class StudyFiles(NamedTuple):
    """Files written for one study, and the study they came from."""

    rdsr: Path | None
    images: list[Path]
    study: Study


def study_rng(seed: int, vendor: str, index: int) -> np.random.Generator:
    """Generator of study ``index`` of a batch.

    Seeded from (seed, vendor, index), so study 7 of a 10-study batch is
    the same as study 7 of a 2,000-study batch, and vendors differ.
    """
    return np.random.default_rng([int(seed), VENDORS.index(get_profile(vendor).name), int(index)])


def _stem(study: Study) -> str:
    # No identifying value in file names: vendor, unit and batch index only.
    return f"{study.vendor}_u{study.unit.index + 1:02d}_s{study.index + 1:05d}"


def _write_images(study: Study, out: Path) -> list[Path]:
    paths = []
    for ds in build_mg_images(study=study):
        k = int(ds.InstanceNumber)
        path = out / f"{_stem(study)}_mg{k:02d}_{ds.ImageLaterality}{ds.ViewPosition}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def _write_study(study: Study, out: Path, rdsr: bool, images: bool) -> StudyFiles:
    rdsr_path = None
    if rdsr:
        rdsr_path = out / f"{_stem(study)}_rdsr.dcm"
        rdsr_path.write_bytes(encode_study_rdsr(study=study))
    image_paths = _write_images(study, out) if images else []
    return StudyFiles(rdsr_path, image_paths, study)


def manifest_entry(files: StudyFiles, root: Path) -> dict:
    st = files.study
    return {
        "rdsr": files.rdsr.relative_to(root).as_posix() if files.rdsr else None,
        "images": [p.relative_to(root).as_posix() for p in files.images],
        "kind": st.kind,
        "unit": st.unit.index,
        "identifiers": st.identifiers(),
        "events": st.truth(),
    }


def write_manifest(entries: Iterable[dict], path: Path, **about) -> Path:
    """Write a JSON manifest of generated studies."""
    doc = {"generator": "srdose.synth", **about, "studies": list(entries)}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def generate(
    vendor: str,
    count: int,
    out_dir: str | Path,
    seed: int = 0,
    units: int = 1,
    dbt_fraction: float | None = None,
    images: bool = False,
    progress: Callable[[Path], None] | None = None,
    *,
    rdsr: bool = True,
    manifest: bool | str | Path = False,
    **opts,
) -> list[Path]:
    """Write ``count`` synthetic studies of a vendor, one RDSR file each.

    Parameters
    ----------
    vendor : str
        One of :data:`srdose.synth.VENDORS`.
    count : int
        Number of studies (RDSR files).
    out_dir : str or Path
        Created if missing.  Files are named
        ``<vendor>_u<unit>_s<study>_rdsr.dcm`` and, with images,
        ``..._mg<k>_<lat><view>.dcm``; names carry no identifier.
    seed : int
        Same seed, same files, byte for byte (UIDs included).
    units : int
        Number of distinct units (serial, station, observer UID); studies
        are dealt round-robin.
    dbt_fraction : float, optional
        Share of studies with tomosynthesis (DBT only or combo); vendor
        default when None.
    images : bool
        Also write an MG For Presentation header per 2D exposure, with the
        Irradiation Event UIDs and SOP Instance UIDs the RDSR references.
    progress : callable, optional
        Called once per study, after its files are written, with the path
        of its RDSR (of its first image when ``rdsr=False``).
    rdsr : bool
        Write the RDSRs (False with ``images=True`` imitates a unit that
        sends no RDSR).
    manifest : bool or path
        Write a JSON manifest (identifiers written and the physical truth
        per event) to ``out_dir/manifest.json`` or to the given path.
    **opts
        Passed to :func:`srdose.synth.plan_study` (``repeat_rate``,
        ``zero_agd_rate``, ``kind``, ``date_range``, ``age_range`` ...).

    Returns
    -------
    list of Path
        Every file written, in order (the manifest excluded).
    """
    if count < 0 or units < 1:
        raise ValueError("count must be >= 0 and units >= 1")
    if not (rdsr or images):
        raise ValueError("nothing to write: rdsr and images both False")
    name = get_profile(vendor).name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    entries = []
    for i in range(count):
        study = plan_study(name, study_rng(seed, name, i), i % units, dbt_fraction=dbt_fraction, index=i, **opts)
        files = _write_study(study, out, rdsr, images)
        if files.rdsr is not None:
            written.append(files.rdsr)
        written += files.images
        if manifest:
            entries.append(manifest_entry(files, out))
        if progress is not None:
            first = files.rdsr or (files.images[0] if files.images else None)
            if first is not None:
                progress(first)
    if manifest:
        path = out / MANIFEST_NAME if manifest is True else Path(manifest)
        write_manifest(
            entries,
            path,
            vendor=name,
            count=count,
            seed=seed,
            units=units,
            dbt_fraction=dbt_fraction,
            images=images,
            rdsr=rdsr,
        )
    return written


def write_study_with_images(
    vendor: str, out_dir: str | Path, seed: int = 0, unit: int = 0, index: int = 0, **opts
) -> StudyFiles:
    """Write one study as both an RDSR and its MG image headers.

    The images carry the same Irradiation Event UIDs as the RDSR events and
    are the instances the RDSR's Acquired Image items reference, so a
    de-duplicating importer must count each exposure once.

    Parameters
    ----------
    vendor : str
        One of :data:`srdose.synth.VENDORS`.
    out_dir : str or Path
        Created if missing.
    seed, index : int
        Select the study as in :func:`generate`.
    unit : int
        Unit index.
    **opts
        Passed to :func:`srdose.synth.plan_study`; ``kind`` defaults to
        ``"2D"`` so every exposure has an image.

    Returns
    -------
    StudyFiles
        ``(rdsr, images, study)``.
    """
    name = get_profile(vendor).name
    opts.setdefault("kind", "2D")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = plan_study(name, study_rng(seed, name, index), unit, index=index, **opts)
    return _write_study(study, out, True, True)


def identifiers_of(ds: Dataset) -> dict:
    """Identifying values present in a dataset (header and observer context).

    Useful to check, on real or synthetic files alike, that none of them
    reappears in exports.
    """
    out = {}
    for kw in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "AccessionNumber",
        "ReferringPhysicianName",
        "OperatorsName",
        "PerformingPhysicianName",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
        "DeviceSerialNumber",
        "StudyID",
        "StudyInstanceUID",
    ):
        value = ds.get(kw)
        if value not in (None, ""):
            out[kw] = str(value)
    # Device observer name / serial in the SR observer context.
    for item in ds.get("ContentSequence", []):
        if item.get("RelationshipType") == "HAS OBS CONTEXT" and item.get("ValueType") == "TEXT":
            out[f"observer:{item.ConceptNameCodeSequence[0].CodeMeaning}"] = str(item.TextValue)
    return out
