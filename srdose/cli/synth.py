"""``srdose synth``: synthetic mammography RDSRs imitating a vendor's structure."""

from __future__ import annotations

from pathlib import Path

import click

from srdose import synth as S
from srdose.cli.context import console, progress_bar


@click.command()
@click.option(
    "--vendor",
    type=click.Choice(["hologic", "ge", "giotto", "siemens", "fujifilm", "all"]),
    default="hologic",
    show_default=True,
)
@click.option(
    "--count", type=click.IntRange(1, 10_000_000), default=20, show_default=True, help="Studies (one RDSR each)."
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--units", type=click.IntRange(1, 1000), default=1, show_default=True, help="Distinct X-ray units per vendor."
)
@click.option("--images", is_flag=True, help="Also write the MG image headers of each study.")
@click.option(
    "--dbt-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of tomosynthesis studies (default: the vendor's).",
)
@click.option(
    "--manifest", is_flag=True, help="Also write manifest.json: identifiers written and the true values per event."
)
def synth(
    vendor: str,
    count: int,
    out_dir: Path,
    seed: int,
    units: int,
    images: bool,
    dbt_fraction: float | None,
    manifest: bool,
) -> None:
    """Write realistic synthetic mammography RDSRs imitating a vendor's structure.

    Patients, units and institutions are invented. Different seeds give
    different UIDs; the same seed gives the same files.
    """
    vendors = S.VENDORS if vendor == "all" else (vendor,)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    with progress_bar() as bar:
        task = bar.add_task("writing", total=count * len(vendors), rate="")
        for i, v in enumerate(vendors):
            files = S.generate(
                v,
                count,
                out_dir / v if len(vendors) > 1 else out_dir,
                seed=seed + i,
                units=units,
                images=images,
                dbt_fraction=dbt_fraction,
                manifest=manifest,
                progress=lambda *_: bar.update(task, advance=1),
            )
            written += len(files)
    console.print(f"wrote {written} files to {out_dir}")
