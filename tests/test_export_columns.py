"""The events export written by columns (Arrow, a piece at a time) is byte for byte the CSV that
csv.writer makes of the same rows read one by one, on both engines: numbers as Python writes
them (``repr(round(x, 6))``), text made inert and quoted, NULL apart from an empty text; and the
number formatting agrees with Python's for every double, ties and exponents included."""

import math

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select, update

from srdose.export import export_events
from srdose.files import csv_bytes, csv_text, decimal_text, text_cells
from srdose.physics.factors import load_bundled
from srdose.recalc import Params, run
from srdose.store import bulk
from srdose.store import models as M
from srdose.store.database import (
    EVENT_EXPORT_COLUMNS,
    DoseStore,
    event_export_query,
    event_export_tables,
    iter_event_rows,
)
from tests.conftest import add_sample_rdsrs

# values whose text is not settled by a double's arithmetic alone: exact ties at the 7th decimal
# (1/128 = 0.0078125), a classic near-tie (2.675), signed zeros, what repr writes with an exponent,
# the edges of the range formatted in C, and what is not a number
EDGES = [
    0.0,
    -0.0,
    1e-7,
    -1e-7,
    5e-7,
    4.9999999e-7,
    1.5e-6,
    2.5e-6,
    0.0078125,
    -0.0078125,
    2.675,
    0.0001,
    0.00009999995,
    5e-05,
    28.0,
    34.300000000000004,
    999999999.9999995,
    1e9 - 1e-7,
    1e16,
    1e20,
    -1e300,
    math.inf,
    -math.inf,
    math.nan,
]


def _python(value: float, digits: int, short: bool) -> str | None:
    if math.isnan(value):
        return None
    if not short:
        return repr(round(value, digits))
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@pytest.mark.parametrize(("digits", "short"), [(6, False), (2, True), (1, True), (0, True)])
def test_decimal_text_is_pythons_text(digits, short):
    rng = np.random.default_rng(20261128)
    values = np.concatenate(
        [
            EDGES,
            rng.uniform(-100, 100, 20000),
            rng.lognormal(0, 6, 20000),  # 1e-8 to 1e8
            np.round(rng.uniform(0, 50, 20000), 3),  # values as units report them
            rng.integers(-(10**6), 10**6, 2000) / 2 * 10.0**-digits,  # every one a tie
        ]
    )
    got = decimal_text(values, digits, short).to_pylist()
    want = [_python(v, digits, short) for v in values.tolist()]
    wrong = [(v, g, w) for v, g, w in zip(values.tolist(), got, want) if g != w]
    assert wrong == []


def test_cells_are_csv_writers():
    texts = ["plain", "", None, "=1+2", "-0.5", "+44 20", "@sum", "\tx", 'a "b"', "a,b", "one\ntwo", "\rcr", "ü"]
    numbers = [28.0, None, 34.300000000000004, -0.0, 5e-05, 1e16, 2.675, 0.0078125, 1.0, -3.25, 7.0, 0.1, 1e-7]
    ints = [1, None, -2, 0, 10**12, 3, 4, 5, 6, 7, 8, 9, 10]
    got = csv_bytes([text_cells(pa.array(c)) for c in (texts, numbers, ints)])
    header, rows = "".join(csv_text(zip(texts, numbers, ints), ["t", "n", "i"])).split("\r\n", 1)
    assert got.decode() == rows
    assert b"'=1+2,-0.0,0\r\n-0.5," in got and b'"a ""b""",' in got and b'"one\ntwo",' in got


ODD = 'CC, "tomo"\nsecond line \\N'


@pytest.fixture
def store(db_url, pseudonymiser):
    st = DoseStore(db_url, pseudonymiser)
    add_sample_rdsrs(st)
    E, D = M.Event, M.Device
    with st.begin() as conn:
        first, second, third = conn.execute(select(E.id).order_by(E.id).limit(3)).scalars()
        conn.execute(update(E).where(E.id == first).values(reference_point=ODD, agd_mgy=5e-05, kvp=0.0078125))
        conn.execute(update(E).where(E.id == second).values(reference_point="", entrance_exposure_mgy=1e16))
        conn.execute(update(E).where(E.id == third).values(reference_point=None, flags="=cmd|' /C calc'!A0"))
        device = conn.execute(select(E.device_id).where(E.id == first)).scalar_one()
        conn.execute(update(D).where(D.id == device).values(station="-0.5", model="+44 model"))
    run(st, load_bundled(), Params())  # results to export too
    yield st
    st.close()


def _by_rows(store, **filters) -> str:
    return "".join(csv_text(iter_event_rows(store, **filters), EVENT_EXPORT_COLUMNS))


def test_export_by_columns_is_the_rows_csv(store, tmp_path):
    out = tmp_path / "events.csv"
    n = export_events(store, out)
    text = out.read_bytes().decode()
    assert text == _by_rows(store)
    assert n == text.count("\r\n") - text.count('\n"') - 1 == len(list(iter_event_rows(store)))
    assert ODD.replace('"', '""') in text and "'=cmd" in text and ",-0.5," in text and ",'+44 model," in text
    assert ",5e-05," in text and ",1e+16," in text and ",0.007812," in text  # Python's texts


def test_export_in_small_pieces_and_for_several_units(store, tmp_path):
    first = event_export_tables(store)
    types = next(first)().schema.types
    first.close()
    with store.engine.connect() as conn:
        pieces = [piece() for piece in bulk.read_pieces(conn, event_export_query(), types, rows=7, piece_bytes=300)]
    assert len(pieces) > 3
    body = b"".join(csv_bytes([text_cells(c) for c in p.columns]) for p in pieces)
    assert body.decode() == _by_rows(store).split("\r\n", 1)[1]

    serials = sorted({r[EVENT_EXPORT_COLUMNS.index("device_serial")] for r in iter_event_rows(store)})[:2]
    out = tmp_path / "two.csv"
    n = export_events(store, out, serials=serials)
    rows = [r for r in iter_event_rows(store) if r[EVENT_EXPORT_COLUMNS.index("device_serial")] in serials]
    assert 0 < n == len(rows)
    assert out.read_bytes().decode() == "".join(csv_text(rows, EVENT_EXPORT_COLUMNS))
