"""The command line refuses what it cannot mean (exit 2, saying what it expected) and shows
whatever a modality sent without choking on it.

The commands run in-process (click's runner); the settings from files and the environment as
``srdose`` reads them.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest

from srdose.config import ConfigError, load
from tests import builders as B


def cli(*args, data_dir: Path, env=None):
    from click.testing import CliRunner

    from srdose.cli import main

    result = CliRunner().invoke(
        main, [str(a) for a in args], env={"COLUMNS": "250", "SRDOSE_DATA_DIR": str(data_dir), **(env or {})}
    )
    gc.collect()  # openpyxl's write-only generators, collected while their files are still here
    return result


def ok(result, code=0):
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def flat(text: str) -> str:
    """Output without rich's line wrapping."""
    return " ".join(text.split())


LONG = "[/]" + "S" * 247  # rich markup, and too long for a file name
UNITS = [
    # manufacturer, model, serial, station, study date
    ("ACME", "Mammo\x1b[31m1", "$\\frac{$", "[/]", "20250102"),
    ("ACME", "Mammo 2", LONG, "Room Two", "20250103"),
    ("ACME", "Mammo 3", "SN-3", "[bold]ROOM3", "20241231"),
]


@pytest.fixture(scope="module")
def units_db(tmp_path_factory):
    """Data directory with three units whose names break markup, mathtext and file names."""
    base = tmp_path_factory.mktemp("units")
    src = base / "in"
    src.mkdir()
    for k, (maker, model, serial, station, day) in enumerate(UNITS):
        for i in range(3):
            ds = B.rdsr(
                events=[B.event(view=("399368009", "SCT", "medio-lateral oblique"), start=f"{day}093000")],
                patient={**B.PATIENT, "PatientID": f"P{k}{i}"},
            )
            ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = maker, model, serial
            ds.StationName, ds.StudyDate = station, day
            (src / f"u{k}_{i}.dcm").write_bytes(B.to_bytes(ds))
    data = base / "data"
    ok(cli("ingest", src, data_dir=data))
    return data


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, named",
    [
        ('[listener]\nallow = "MAMMO1"\n', "[listener] allow"),
        ('[listener]\nport = "eleven"\n', "[listener] port"),
        ("[listener]\nport = 70000\n", "[listener] port"),
        ('[listener]\ntls_ca = "/etc/ca.pem"\n', "[listener] tls_ca"),
        ('[listener]\ntls_key = "/etc/key.pem"\n', "[listener] tls_key"),
        ('[listener]\nallow = ["MAMMO1", 7]\n', "[listener] allow"),
        ('[listener]\nallow = ["AN AE TITLE TOO LONG"]\n', "[listener] allow"),
        ("[listener]\nmax_dataset_mb = 0\n", "[listener] max_dataset_mb"),
        ('[governance]\nretention_days = "forever"\n', "[governance] retention_days"),
        ('[recalc]\nafter_ingest = "yes"\n', "[recalc] after_ingest"),
        ("[recalc]\nratio_band = nan\n", "[recalc] ratio_band"),
        ("[recalc]\njobs = -1\n", "[recalc] jobs"),
        ('[report]\ndrl_views = "MLO"\n', "[report] drl_views"),
        ("database_url = 5\n", "database_url"),
    ],
)
def test_bad_settings_are_refused_when_loaded(tmp_path, text, named):
    cfg = tmp_path / "srdose.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(str(cfg), environ={})
    assert str(err.value).startswith(named + " ") and str(cfg) in str(err.value)
    r = cli("--config", cfg, "config", data_dir=tmp_path / "d")
    assert r.exit_code == 2
    assert named in flat(r.output)


def test_environment_settings_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match=r"^\[listener\] port .*SRDOSE_LISTENER__PORT"):
        load(None, environ={"SRDOSE_LISTENER__PORT": "0"})
    with pytest.raises(ConfigError, match="SRDOSE_RECALC__AFTER_INGEST"):
        load(None, environ={"SRDOSE_RECALC__AFTER_INGEST": "maybe"})
    s = load(None, environ={"SRDOSE_RECALC__AFTER_INGEST": "off", "SRDOSE_LISTENER__ALLOW": "MAMMO1, PACS"})
    assert s.recalc.after_ingest is False and s.listener.allow == ("MAMMO1", "PACS")


def test_defaults_hold_the_new_keys_and_good_settings_load(tmp_path):
    s = load(None, environ={})
    assert s.listener.max_dataset_mb == 512 and s.recalc.after_ingest is True
    cfg = tmp_path / "srdose.toml"
    cfg.write_text(
        '[listener]\nport = 104\nallow = ["MAMMO1"]\ntls_cert = "c.pem"\ntls_ca = "ca.pem"\n'
        '[recalc]\nratio_band = 1\n[report]\nnational_drl_mgy = 2.5\nnational_drl_source = "x"\n'
    )
    s = load(str(cfg), environ={})
    assert s.listener.port == 104 and s.recalc.ratio_band == 1


def test_messages_keep_their_config_section(tmp_path):
    r = cli("purge", "--dry-run", data_dir=tmp_path / "d")
    assert r.exit_code == 2
    assert "[governance] retention_days" in flat(r.output)


# --- dates, units, output files --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["export", "events", "--out", "ev.csv", "--to", "2024/12/31"],
        ["export", "events", "--out", "ev.csv", "--from", "banana"],
        ["export", "events", "--out", "ev.csv", "--from", "20250101"],
        ["export", "events", "--out", "ev.csv", "--to", "2025-02-30"],
        ["export", "research", "--project", "P1", "--out", "res", "--from", "2025/01/01"],
        ["report", "survey", "--from", "2025-01-01", "--to", "31/12/2025"],
        ["report", "drl", "--from", "yesterday", "--to", "2025-12-31"],
        ["qc", "--from", "2025-1-1", "--to", "2025-12-31"],
        ["recalc", "--since", "2025/01/01"],
        ["purge", "--before", "2025/01/01", "--dry-run"],
        ["audit", "--since", "banana"],
    ],
)
def test_a_date_is_yyyy_mm_dd_everywhere(units_db, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    r = cli(*args, data_dir=units_db)
    assert r.exit_code == 2, r.output
    assert "expected YYYY-MM-DD" in flat(r.output)
    assert not list(tmp_path.iterdir())  # nothing written


def test_recalc_jobs_out_of_range_is_a_usage_error(units_db):
    r = cli("recalc", "--jobs", "0", data_dir=units_db)
    assert r.exit_code == 2 and "--jobs" in flat(r.output) and "1<=x<=256" in flat(r.output)


def test_export_dates_select_what_they_say(units_db, tmp_path):
    out = tmp_path / "ev.csv"
    ok(cli("export", "events", "--out", out, "--to", "2024-12-31", data_dir=units_db))
    assert len(out.read_text().splitlines()) == 1 + 3
    ok(cli("export", "events", "--out", out, "--from", "2025-01-03", "--to", "2025-01-03", data_dir=units_db))
    assert len(out.read_text().splitlines()) == 1 + 3
    r = cli("export", "events", "--out", out, "--from", "2025-02-01", "--to", "2025-01-01", data_dir=units_db)
    assert r.exit_code == 2 and "after" in r.output


def test_unsupported_output_suffix_is_a_usage_error(units_db, tmp_path):
    r = cli("export", "events", "--out", tmp_path / "ev.json", data_dir=units_db)
    assert r.exit_code == 2 and ".csv" in r.output and ".xlsx" in r.output
    assert not (tmp_path / "ev.json").exists()


def test_a_unit_by_serial_station_or_name_in_any_case(units_db, tmp_path):
    out = tmp_path / "ev.csv"
    for ref in ("SN-3", "sn-3", "[BOLD]room3", "room two"):
        ok(cli("export", "events", "--out", out, "--unit", ref, data_dir=units_db))
        assert len(out.read_text().splitlines()) == 1 + 3, ref
    r = cli("export", "events", "--out", out, "--unit", "NOSUCH", data_dir=units_db)
    assert r.exit_code == 2
    said = flat(r.output)
    assert "no unit 'NOSUCH'" in said and "SN-3" in said and "$\\frac{$" in said
    for args in (
        ["report", "qa", "--unit", "NOSUCH"],
        ["report", "survey", "--unit", "nosuch"],
        ["report", "drl", "--unit", "nosuch"],
        ["qc", "--unit", "nosuch"],
    ):
        r = cli(*args, "--from", "2025-01-01", "--to", "2025-12-31", "--out", tmp_path / "rep", data_dir=units_db)
        assert r.exit_code == 2 and "known units" in flat(r.output), args
    r = cli("recalc", "--unit", "nosuch", data_dir=units_db)
    assert r.exit_code == 2 and "known units" in flat(r.output)
    assert not (tmp_path / "rep").exists()


def test_a_shared_name_covers_its_units(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k, serial in enumerate(("A-1", "B-2", "C-3")):
        ds = B.rdsr(patient={**B.PATIENT, "PatientID": f"P{k}"})
        ds.DeviceSerialNumber, ds.StationName = serial, "SHARED" if k < 2 else "OTHER"
        (src / f"{k}.dcm").write_bytes(B.to_bytes(ds))
    data = tmp_path / "data"
    ok(cli("ingest", src, data_dir=data))
    ok(cli("units", "alias", "--serial", "C-3", "Breast Unit", data_dir=data))
    out = tmp_path / "ev.csv"
    ok(cli("export", "events", "--out", out, "--unit", "shared", data_dir=data))
    assert len(out.read_text().splitlines()) == 1 + 2
    ok(cli("export", "events", "--out", out, "--unit", "breast unit", data_dir=data))
    assert len(out.read_text().splitlines()) == 1 + 1
    r = cli(
        "report",
        "qa",
        "--unit",
        "SHARED",
        "--from",
        "2025-01-01",
        "--to",
        "2025-12-31",
        "--out",
        tmp_path / "rep",
        data_dir=data,
    )
    assert r.exit_code == 2 and "give one serial" in flat(r.output)


# --- what a modality sends, shown literally ------------------------------------------------


def test_units_list_and_check_show_markup_literally(units_db):
    r = ok(cli("units", "list", data_dir=units_db))
    said = flat(r.output)
    assert "[/]" in said and "[bold]ROOM3" in said
    assert "\x1b" not in r.output  # no escape sequence from the data reaches the terminal
    ok(cli("check", data_dir=units_db), 0)


def test_reports_of_units_with_hostile_names(units_db, tmp_path):
    out = tmp_path / "rep"
    # mathtext ($\frac{$) and a control character in the room labels of the plots
    r = cli(
        "report",
        "drl",
        "--from",
        "2024-01-01",
        "--to",
        "2025-12-31",
        "--min-events",
        "1",
        "--dose",
        "reported",
        "--out",
        out,
        data_dir=units_db,
    )
    ok(r)
    # a 250-character serial: file names stay short, and distinct per unit
    r = ok(cli("report", "survey", "--from", "2024-01-01", "--to", "2025-12-31", "--out", out, data_dir=units_db))
    names = [p.name for p in out.rglob("*")]
    assert max(len(n.encode()) for n in names) < 160
    htmls = sorted(p.name for p in out.rglob("survey_*.html"))
    assert len(htmls) == 3 and len(set(htmls)) == 3
    r = ok(
        cli(
            "report",
            "qa",
            "--unit",
            LONG,
            "--from",
            "2024-01-01",
            "--to",
            "2025-12-31",
            "--out",
            out,
            data_dir=units_db,
        )
    )
    assert max(len(p.name.encode()) for p in out.rglob("qa_*")) < 160


def test_survey_before_recalc_says_what_to_run(units_db, tmp_path):
    r = ok(
        cli(
            "report",
            "survey",
            "--unit",
            "SN-3",
            "--from",
            "2024-01-01",
            "--to",
            "2025-12-31",
            "--out",
            tmp_path / "rep",
            data_dir=units_db,
        )
    )
    said = flat(r.output)
    assert re.search(r"3 of 3 exposures .* never been recalculated", said)
    assert "AGD as reported" in said and "srdose recalc" in said


def test_status_shows_a_calling_ae_literally(tmp_path):
    """A calling AE title of ``[/]`` (valid in DICOM) crashed `srdose status` through rich markup."""
    from srdose.parse import read_bytes
    from srdose.pseudonym import Pseudonymiser
    from srdose.store import DoseStore

    data = tmp_path / "data"
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(B.to_bytes(B.rdsr()))
    ok(cli("ingest", src, data_dir=data))
    store = DoseStore(f"sqlite:///{data / 'srdose.sqlite'}", Pseudonymiser(b"x" * 32))
    with store.begin() as conn:
        store.add(conn, read_bytes(B.to_bytes(B.rdsr())), "3" * 64, "dicom:[/]")
    store.close()
    r = ok(cli("status", data_dir=data))
    assert "dicom:[/]" in flat(r.output)
