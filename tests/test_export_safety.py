"""What srdose writes for people to open: no live formula in any CSV or XLSX (events, research,
report tables), text no writer chokes on, dates as dates, private files and folders.

The commands run in-process (click's runner) on a data directory of their own, holding units
whose identity strings a hostile or broken modality could send.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import os
import stat
from pathlib import Path

import pytest

from tests import builders as B

FORMULA = "=1+2"
HOSTILE_UNITS = [
    # manufacturer, model, serial, station
    ("-2+3", "Mammo\x07X", FORMULA, "@SUM(1)"),
    ("ACME", "Mammo 1", "SN-1", "ROOM1"),
]


def cli(*args, data_dir: Path):
    from click.testing import CliRunner

    from srdose.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "250", "SRDOSE_DATA_DIR": str(data_dir)})
    gc.collect()  # openpyxl's write-only generators, collected while their files are still here
    return result


def ok(result, code=0):
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def unit_files(folder: Path, units=HOSTILE_UNITS, studies: int = 3, study_date="20250102") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, (maker, model, serial, station) in enumerate(units):
        for i in range(studies):
            ds = B.rdsr(
                events=[B.event(view=("399368009", "SCT", "medio-lateral oblique"))],
                patient={**B.PATIENT, "PatientID": f"P{k}{i}"},
            )
            ds.Manufacturer, ds.ManufacturerModelName = maker, model
            ds.DeviceSerialNumber, ds.StationName, ds.StudyDate = serial, station, study_date
            (folder / f"u{k}_{i}.dcm").write_bytes(B.to_bytes(ds))
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A data directory holding the hostile units' studies (ingested by the command)."""
    base = tmp_path_factory.mktemp("hostile")
    data = base / "data"
    ok(cli("ingest", unit_files(base / "in"), data_dir=data))
    return data


def _xlsx(path: Path):
    from openpyxl import load_workbook

    return load_workbook(path)  # not read-only: cells keep their data type and the sheet its view


def test_events_export_has_no_live_formula(hostile, tmp_path):
    ok(cli("export", "events", "--out", tmp_path / "ev.csv", data_dir=hostile))
    rows = list(csv.DictReader(open(tmp_path / "ev.csv", newline="", encoding="utf-8")))
    mine = [r for r in rows if r["device_serial"] != "SN-1"]
    assert len(mine) == 3
    for r in mine:
        assert r["device_serial"] == "'" + FORMULA and r["station"] == "'@SUM(1)" and r["manufacturer"] == "'-2+3"
        assert r["kvp"] == "28.0"  # numbers stay numbers

    ok(cli("export", "events", "--out", tmp_path / "ev.xlsx", data_dir=hostile))
    ws = _xlsx(tmp_path / "ev.xlsx")["events"]
    header = [c.value for c in ws[1]]
    col = {name: k for k, name in enumerate(header)}
    body = list(ws.iter_rows(min_row=2))
    assert len(body) == 6
    for row in body:
        for cell in row:
            assert cell.data_type != "f", (header[cell.column - 1], cell.value)
    hostile_rows = [r for r in body if r[col["device_serial"]].value != "SN-1"]
    assert {r[col["device_serial"]].value for r in hostile_rows} == {"'" + FORMULA}
    assert {r[col["model"]].value for r in hostile_rows} == {"Mammo?X"}  # a control character XLSX cannot hold
    kvp = body[0][col["kvp"]]
    assert kvp.data_type == "n" and kvp.value == 28.0


def test_xlsx_dates_filters_and_frozen_header(hostile, tmp_path):
    ok(cli("export", "events", "--out", tmp_path / "ev.xlsx", data_dir=hostile))
    ws = _xlsx(tmp_path / "ev.xlsx")["events"]
    header = [c.value for c in ws[1]]
    day = ws.cell(row=2, column=header.index("study_date") + 1)
    assert day.is_date and day.value.date() == dt.date(2025, 1, 2)
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(row=1, column=len(header)).column_letter}7"


def test_report_tables_are_inert_and_dated(tmp_path):
    from srdose.report.render import Table, write_tables

    t = Table(
        "units",
        "Units",
        ["serial", "station", "study date", "events", "delta"],
        [[FORMULA, "+SUM(A1)", "20250102", 3, -0.5], ["\tTAB", "-1.5", "2025-01-03", 4, 1.25]],
    )
    files = write_tables(tmp_path / "r" / "rep", [t])
    rows = list(csv.reader(open(tmp_path / "r" / "rep_units.csv", newline="", encoding="utf-8")))
    assert rows[1][:2] == ["'" + FORMULA, "'+SUM(A1)"] and rows[2][:2] == ["'\tTAB", "-1.5"]
    assert rows[1][3:] == ["3", "-0.5"]
    ws = _xlsx(next(p for p in files if p.suffix == ".xlsx"))["units"]
    assert [c.value for c in ws[2]][:2] == ["'" + FORMULA, "'+SUM(A1)"]
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
    assert ws.cell(row=2, column=3).is_date and ws.cell(row=3, column=3).value.date() == dt.date(2025, 1, 3)
    assert ws.cell(row=2, column=5).value == -0.5 and ws.cell(row=2, column=5).data_type == "n"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:E3"


def test_report_workbook_and_research_export_of_hostile_units(hostile, tmp_path):
    ok(
        cli(
            "report",
            "drl",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-31",
            "--min-events",
            "1",
            "--dose",
            "reported",
            "--out",
            tmp_path / "rep",
            data_dir=hostile,
        )
    )
    rooms = next((tmp_path / "rep").rglob("*_rooms.csv"))
    text = rooms.read_text(encoding="utf-8")
    assert f",'{FORMULA}," in text and ",'@SUM(1)" in text
    ws = _xlsx(next((tmp_path / "rep").rglob("*_tables.xlsx")))["rooms"]
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)

    ok(cli("export", "research", "--project", "P1", "--format", "xlsx", "--out", tmp_path / "res", data_dir=hostile))
    ws = _xlsx(tmp_path / "res" / "P1-events.xlsx").worksheets[0]
    header = [c.value for c in ws[1]]
    assert {ws.cell(row=r, column=header.index("manufacturer") + 1).value for r in range(2, ws.max_row + 1)} == {
        "'-2+3",
        "ACME",
    }
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
    assert ws.cell(row=2, column=header.index("study_date") + 1).is_date
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_exports_and_reports_are_private(tmp_path):
    data = tmp_path / "data"
    old = os.umask(0o022)  # whatever the test runner's umask: a login shell's usual one
    try:
        ok(cli("ingest", unit_files(tmp_path / "in", units=HOSTILE_UNITS[1:], studies=2), data_dir=data))
        ok(cli("export", "events", "--out", tmp_path / "ex" / "ev.xlsx", data_dir=data))
        ok(cli("export", "events", "--out", tmp_path / "ev.csv", data_dir=data))
        ok(
            cli(
                "report",
                "qa",
                "--unit",
                "SN-1",
                "--from",
                "2025-01-01",
                "--to",
                "2025-01-31",
                "--out",
                tmp_path / "reports",
                data_dir=data,
            ),
            0,
        )
        ok(cli("export", "research", "--project", "P1", "--out", tmp_path / "res", data_dir=data))
        assert os.umask(0o022) == 0o022  # the command leaves the caller's umask as it found it
    finally:
        os.umask(old)
    assert _mode(data) == 0o700
    assert _mode(data / "srdose.sqlite") == 0o600
    for f in data.glob("srdose.sqlite*"):
        assert _mode(f) == 0o600, f
    assert _mode(tmp_path / "ex") == 0o700
    assert _mode(tmp_path / "ex" / "ev.xlsx") == _mode(tmp_path / "ev.csv") == 0o600
    written = [p for p in (tmp_path / "reports").rglob("*")] + [p for p in (tmp_path / "res").rglob("*")]
    assert len(written) > 5
    for p in written + [tmp_path / "reports", tmp_path / "res"]:
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p


def test_rows_beyond_a_sheet_go_on_in_further_sheets(tmp_path):
    """A worksheet holds 1,048,576 rows, its header included (Excel's specifications and
    limits): more rows than that go on in further sheets, each with its header and filters, in
    order, none lost; a limit that leaves no room for a row is refused."""
    from openpyxl import load_workbook

    from srdose.files import XLSX_MAX_ROWS, write_xlsx

    assert XLSX_MAX_ROWS == 2**20
    rows = [(k, f"=row {k}", 0.1 * k) for k in range(7)]
    out = tmp_path / "events.xlsx"
    assert write_xlsx(iter(rows), out, ["n", "text", "value"], max_rows=4) == 7
    wb = load_workbook(out)
    assert wb.sheetnames == ["events", "events (2)", "events (3)"]
    got = []
    for ws in wb.worksheets:
        values = list(ws.values)
        assert values[0] == ("n", "text", "value") and ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:C{len(values)}" and len(values) <= 4
        got += values[1:]
    assert [r[0] for r in got] == list(range(7)) and got[3] == (3, "'=row 3", 0.3)
    with pytest.raises(ValueError, match="at least one row"):
        write_xlsx(iter(rows), out, ["n"], max_rows=1)
