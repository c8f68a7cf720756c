"""Regenerate the committed ``sample_data/`` directory.

Run ``python -m srdose.synth.sample`` (or ``--out DIR`` to write elsewhere).
Every file is planned from :data:`SEED` and a fixed study index, so the
output is the same byte for byte on every run; ``sample_data/README.md``
and ``sample_data/manifest.json`` are rewritten with it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pydicom

from .generate import StudyFiles, manifest_entry, study_rng, write_manifest
from .mg import build_mg_images
from .model import Study
from .plan import plan_study
from .rdsr import encode_study_rdsr
from .vendors import get_profile

SEED = 2025
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "sample_data"


@dataclass(frozen=True)
class Sample:
    """One committed sample: which study, how it is written, why it is there."""

    path: str  # RDSR path (or image prefix) relative to the output directory
    vendor: str
    index: int  # study index for study_rng(SEED, vendor, index)
    kind: str
    why: str
    unit: int = 0
    opts: tuple = ()
    rdsr: bool = True
    images: bool = False


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "hologic/hologic_2d.dcm",
        "hologic",
        1,
        "2D",
        "Selenia Dimensions 2D screening: W/Rh (W/Ag if thick), SNM3 views, 113745, 111650, gridin/99HOLX, RP 113865",
    ),
    Sample(
        "hologic/hologic_combo.dcm",
        "hologic",
        2,
        "COMBO",
        "combo: a DBT sweep (W/Al 0.7 mm, -7.4 to 7.6 deg) then a 2D exposure per view",
    ),
    Sample("hologic/hologic_dbt.dcm", "hologic", 3, "DBT", "tomosynthesis only"),
    Sample(
        "hologic/hologic_2d_zero_agd_20kv.dcm",
        "hologic",
        4,
        "2D",
        "one extra 20 kV event with AGD = HVL = entrance exposure = 0",
        opts=(("zero_agd_rate", 1.0),),
    ),
    Sample(
        "ge/ge_pristina_2d_prepulse.dcm",
        "ge",
        1,
        "2D",
        "Pristina 2D: 2 pulses per event (~2 mA pre-pulse + main), per-pulse kV/mA/width, "
        "no uAs item, two filter containers without thickness",
    ),
    Sample(
        "ge/ge_pristina_combo.dcm",
        "ge",
        2,
        "COMBO",
        "2D + DBT per view; DBT = pre-pulse + 9 projections over 25 deg, Rh/Ag",
    ),
    Sample("ge/ge_essential_2d.dcm", "ge", 3, "2D", "Senographe Essential unit (unit 3): Mo/Mo, Mo/Rh, Rh/Rh", unit=2),
    Sample(
        "giotto/giotto_dbt_big_endian.dcm",
        "giotto",
        1,
        "DBT",
        "Explicit VR Big Endian; 11 projections with per-pulse kV, mA and uA.s (first about "
        "half); anode under 113632; a filter container per pulse",
    ),
    Sample("giotto/giotto_2d.dcm", "giotto", 2, "2D", "Giotto 2D (big endian, 1 pulse)"),
    Sample("giotto/giotto_combo.dcm", "giotto", 3, "COMBO", "Giotto DBT + 2D per view"),
    Sample(
        "siemens/siemens_revelation_2d.dcm", "siemens", 1, "2D", "standard TID 10003 in SRT codes, compression force"
    ),
    Sample(
        "siemens/siemens_revelation_dbt_one_projection.dcm",
        "siemens",
        2,
        "DBT",
        "DBT events give exposure time and uAs of ONE projection (25 projections, 50 deg)",
    ),
    Sample(
        "siemens/siemens_inspiration_combo.dcm",
        "siemens",
        3,
        "COMBO",
        "Mammomat Inspiration (unit 2), 2D + DBT",
        unit=1,
    ),
    Sample(
        "fujifilm/fujifilm_2d.dcm", "fujifilm", 1, "2D", "standard TID 10003 in SCT codes, W/Rh, exposure index items"
    ),
    Sample("fujifilm/fujifilm_dbt.dcm", "fujifilm", 2, "DBT", "W/Al 0.7 mm DBT, 15 projections"),
    Sample("fujifilm/fujifilm_combo.dcm", "fujifilm", 3, "COMBO", "2D + DBT per view"),
    Sample(
        "rdsr_and_images/hologic",
        "hologic",
        5,
        "2D",
        "one study written both as an RDSR and as its MG image headers (same Irradiation "
        "Event UIDs; the RDSR references the images' SOP Instance UIDs)",
        images=True,
    ),
    Sample(
        "images_only/ge_essential",
        "ge",
        6,
        "2D",
        "MG image headers only, as from a unit that sends no RDSR",
        unit=2,
        rdsr=False,
        images=True,
    ),
)


def _plan(s: Sample) -> Study:
    return plan_study(s.vendor, study_rng(SEED, s.vendor, s.index), s.unit, kind=s.kind, index=s.index, **dict(s.opts))


def _write(s: Sample, study: Study, out: Path) -> StudyFiles:
    target = out / s.path
    target.parent.mkdir(parents=True, exist_ok=True)
    rdsr_path = None
    images = []
    if s.rdsr:
        rdsr_path = target if target.suffix == ".dcm" else target.with_name(target.name + "_rdsr.dcm")
        rdsr_path.write_bytes(encode_study_rdsr(study=study))
    if s.images:
        for ds in build_mg_images(study=study):
            p = target.with_name(
                f"{target.name}_mg{int(ds.InstanceNumber):02d}_{ds.ImageLaterality}{ds.ViewPosition}.dcm"
            )
            pydicom.dcmwrite(p, ds, enforce_file_format=True)
            images.append(p)
    return StudyFiles(rdsr_path, images, study)


def _readme(rows: list[tuple[Sample, StudyFiles]], out: Path) -> str:
    lines = [
        "# sample_data — synthetic mammography dose objects",
        "",
        "Everything here is **synthetic**: patients, accession numbers, units and institutions "
        "are invented (patient IDs use the NHS test range 999…). No file is copied from a real "
        "device; the vendor structures imitate public vendor test files (OpenREM's: "
        "Hologic, GE, IMS Giotto) or follow the DICOM templates "
        "(Siemens, Fujifilm).",
        "",
        "## How they were made",
        "",
        "```",
        "python -m srdose.synth.sample            # rewrites this directory",
        "```",
        "",
        f"Seed `{SEED}`; each study is `plan_study(vendor, study_rng({SEED}, vendor, index), unit, "
        "kind=...)` with the index, unit and kind listed in `SAMPLES` of "
        "`srdose/synth/sample.py`. The output is identical byte for byte on every run "
        "(UIDs are drawn from the seeded generator). `manifest.json` lists, per file, the "
        "identifiers written and the physical truth per event (thickness, kV, total mAs, "
        "HVL, incident air kerma, AGD) before vendor quirks.",
        "",
        "Bulk data for benchmarks is not committed; make it with e.g. "
        "`srdose synth --vendor hologic --count 2000 --out DIR` "
        "(`srdose.synth.generate`).",
        "",
        "## Files",
        "",
        "| file(s) | unit | kind | events | why it is here |",
        "|---|---|---|---|---|",
    ]
    for s, files in rows:
        st = files.study
        names = [p.relative_to(out).as_posix() for p in ([files.rdsr] if files.rdsr else []) + files.images]
        shown = names[0] if len(names) == 1 else f"{names[0]} … ({len(names)} files)"
        lines.append(
            f"| `{shown}` | {st.unit.manufacturer} {st.unit.model} "
            f"(unit {st.unit.index + 1}) | {st.kind} | {len(st.events)} | {s.why} |"
        )
    total = sum(p.stat().st_size for p in out.rglob("*.dcm"))
    lines += ["", f"Total size of the DICOM files: {total / 1024:.0f} KiB.", ""]
    return "\n".join(lines)


def write_samples(out: Path = DEFAULT_OUT) -> list[Path]:
    """Write every sample, the manifest and the README; return the DICOM paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in SAMPLES:
        get_profile(s.vendor)  # fail early on a typo
        rows.append((s, _write(s, _plan(s), out)))
    entries = []
    for s, files in rows:
        entry = manifest_entry(files, out)
        entry["why"] = s.why
        entries.append(entry)
    write_manifest(entries, out / "manifest.json", seed=SEED, script="srdose/synth/sample.py")
    (out / "README.md").write_text(_readme(rows, out), encoding="utf-8")
    return [p for _, f in rows for p in ([f.rdsr] if f.rdsr else []) + f.images]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m srdose.synth.sample [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    paths = write_samples(args.out)
    size = sum(p.stat().st_size for p in paths)
    print(json.dumps({"files": len(paths), "bytes": size, "out": str(args.out)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
