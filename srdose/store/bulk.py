"""Bulk transport between the database and numpy: columns, not a Python object per value.

A million events through the driver one object per value cost more than anything a report or a
recalculation does with them. PostgreSQL streams a query's rows with COPY in CSV, which pyarrow
parses in C a piece at a time, and takes columns back the same way; SQLite's driver has no such
path, and its readers and writers go through the driver's tuples with the garbage collector
paused.
"""

from __future__ import annotations

import gc
import io
import select
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from srdose.columns import CodedColumn

#: CSV parsed at a time (memory stays bounded whatever the number of rows).
PIECE_BYTES = 8 << 20


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while millions of row tuples are made and dropped: it would walk them
    over and over (1 M rows of text: 1.2 s, paused 0.4 s)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def release_unused() -> None:
    """Hand back to the system what Arrow's allocator keeps of the pieces read and dropped: after
    ten million events' pieces it held 600 MB that nothing used."""
    pa.default_memory_pool().release_unused()


def raw_chunks(conn, query, chunk: int):
    """Rows of ``query`` as plain DB-API tuples, ``chunk`` at a time.

    For 400,000 events SQLAlchemy's Row objects cost about a second; the
    columns read here need no type processing (numbers, text, booleans as
    0/1), so the driver's own cursor is used.
    """
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    if compiled.positiontup is not None:
        params = tuple(compiled.params[name] for name in compiled.positiontup)
    else:
        params = compiled.params
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        while True:
            rows = cursor.fetchmany(chunk)
            if not rows:
                break
            yield rows
    finally:
        cursor.close()


def _arrow_column(values: tuple, kind: pa.DataType) -> pa.Array:
    if kind == pa.bool_():  # SQLite's booleans are 0 and 1
        return pa.array([None if v is None else bool(v) for v in values], type=kind)
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # SQLite holds what it was given: a value of another type is kept as its text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def read_pieces(
    conn, query, types: list[pa.DataType], rows: int = 20_000, piece_bytes: int | None = None, **settings: str
) -> Iterator[Callable[[], pa.Table]]:
    """The rows of ``query`` as Arrow tables (columns c0, c1, ... of the Arrow ``types``), in
    order, on either engine, each piece as a function that returns its table: PostgreSQL's
    pieces are parsed when that is called (by another thread, while the next piece is read),
    ``piece_bytes`` of CSV at a time by :func:`copy_csv` (``settings``: planner settings for this
    read, e.g. ``work_mem``); SQLite's, ``rows`` at a time, are read through the driver."""
    if conn.dialect.name == "postgresql":
        parse = csv_reader(types)
        for data in copy_csv(conn, query, piece_bytes, **settings):
            yield partial(parse, data)
        return
    names = [f"c{k}" for k in range(len(types))]
    for part in raw_chunks(conn, query, rows):
        with gc_paused():
            table = pa.table([_arrow_column(c, t) for c, t in zip(zip(*part), types)], names=names)
        yield partial(_same, table)


def _same(table: pa.Table) -> pa.Table:
    return table


def csv_reader(types: list[pa.DataType]) -> Callable[[bytes], pa.Table]:
    """A parser of :func:`copy_csv`'s pieces into Arrow tables, columns c0, c1, ... of ``types``
    (booleans as PostgreSQL writes them, t and f)."""
    names = [f"c{k}" for k in range(len(types))]
    read = pacsv.ReadOptions(column_names=names)
    convert = pacsv.ConvertOptions(
        column_types=dict(zip(names, types)),
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,  # COPY writes NULL unquoted and empty, an empty text quoted
        true_values=["t"],
        false_values=["f"],
    )

    def parse(data: bytes) -> pa.Table:
        return pacsv.read_csv(io.BytesIO(data), read_options=read, convert_options=convert)

    return parse


def copy_csv(conn, query, piece_bytes: int | None = None, **settings: str) -> Iterator[bytes]:
    """PostgreSQL: the rows of ``query`` as CSV, in pieces of whole rows of about ``piece_bytes``
    (default :data:`PIECE_BYTES`), in order.

    Just-in-time compilation is off: compiling a report's query cost up to 1.5 s, more than
    running it for one unit. ``settings``: planner settings for this transaction (``work_mem``:
    the default 4 MB makes a sort or a hash join of millions of rows spill to disk)."""
    limit = PIECE_BYTES if piece_bytes is None else piece_bytes
    yield from _copy_query(conn, query, "csv", limit, settings)


def _copy_query(conn, query, form: str, limit: int, settings: Mapping[str, str]) -> Iterator[bytes]:
    """``COPY (query) TO STDOUT`` in ``form`` (csv or binary), ``limit`` bytes at a time, with JIT
    off and the planner ``settings`` for this transaction."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    conn.exec_driver_sql("SET LOCAL jit = off")
    for name, value in settings.items():
        conn.exec_driver_sql("SELECT set_config(%(name)s, %(value)s, true)", {"name": name, "value": value})
    import psycopg  # PostgreSQL's driver: installed with srdose[postgres]

    raw = conn.connection.driver_connection  # psycopg, in this connection's transaction
    sql = psycopg.ClientCursor(raw).mogrify(f"COPY ({compiled.string}) TO STDOUT (FORMAT {form})", compiled.params)
    yield from _copy_out_rows(raw.pgconn, sql.encode(raw.info.encoding), limit)


def copy_floats(conn, query, width: int) -> np.ndarray:
    """PostgreSQL: the rows of ``query``, whose ``width`` columns are all ``double precision``
    and never NULL (a NaN where there is none), as an (n, width) float array.

    One binary COPY: every row has the same width, so the rows are one numpy record array and
    no value is formatted as text by the server or parsed by this process (a quarter of a
    million events' rows, unsorted: 1.0 s of the server's time as CSV, 0.5-0.7 s in binary).

    Raises
    ------
    psycopg.DatabaseError
        When the rows are not what was asked for (a NULL, a column of another type).
    """
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k in range(width):
        fields += [(f"size{k}", ">i4"), (f"value{k}", ">f8")]
    row = np.dtype(fields)
    body = b"".join(_copy_query(conn, query, "binary", PIECE_BYTES, {}))
    start = len(_COPY_HEADER)
    if body[: start - 4] != _COPY_HEADER[:-4]:
        raise _bad_copy("no binary COPY signature")
    start += int.from_bytes(body[start - 4 : start], "big")  # past the header's extension, if any
    end = len(body) - len(_COPY_TRAILER)
    unlike = f"rows are not {width} numbers each (a NULL, or a column of another type)"
    if body[end:] != _COPY_TRAILER or (end - start) % row.itemsize:
        raise _bad_copy(unlike)
    rows = np.frombuffer(body, dtype=row, offset=start, count=(end - start) // row.itemsize)
    if (rows["count"] != width).any() or any((rows[f"size{k}"] != 8).any() for k in range(width)):
        raise _bad_copy(unlike)
    out = np.empty((len(rows), width))
    for k in range(width):
        out[:, k] = rows[f"value{k}"]
    return out


def _bad_copy(what: str) -> Exception:
    import psycopg

    return psycopg.DatabaseError(f"binary COPY: {what}")


def _copy_out_rows(pgconn, sql: bytes, limit: int) -> Iterator[bytes]:
    """Run a COPY ... TO STDOUT on libpq's connection and return its rows, ``limit`` bytes at a
    time. The server sends a message a row: psycopg's Copy reads each through a Python generator
    (about 3 µs a row, 30 s of ten million), here a row already received is taken at once."""
    from psycopg import pq

    pgconn.send_query(sql)
    while pgconn.flush():
        _wait(pgconn, write=True)
    first = _next_result(pgconn)
    if first is None or first.status != pq.ExecStatus.COPY_OUT:
        _drain(pgconn)
        raise _error(first)
    buf = io.BytesIO()
    ended = False
    try:
        while True:
            nbytes, data = pgconn.get_copy_data(1)
            if nbytes > 0:
                buf.write(data)
                if buf.tell() >= limit:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            elif nbytes == 0:  # nothing received yet
                _wait(pgconn)
                pgconn.consume_input()
            else:
                break
        ended = True
        final = _next_result(pgconn)
        _drain(pgconn)
        if final is None or final.status != pq.ExecStatus.COMMAND_OK:
            raise _error(final)
    finally:
        if not ended:  # stopped early: the server stops sending, the connection is left usable
            pgconn.get_cancel().cancel()
            while pgconn.get_copy_data(0)[0] >= 0:
                pass
            _drain(pgconn)
    if buf.tell():
        yield buf.getvalue()


def _wait(pgconn, write: bool = False) -> None:
    if write:
        select.select([], [pgconn.socket], [])
    else:
        select.select([pgconn.socket], [], [])


def _next_result(pgconn):
    """libpq's next result of the query sent (None: no more), waiting for it."""
    pgconn.consume_input()
    while pgconn.is_busy():
        _wait(pgconn)
        pgconn.consume_input()
    return pgconn.get_result()


def _drain(pgconn) -> None:
    while _next_result(pgconn) is not None:
        pass


def _error(result) -> Exception:
    import psycopg

    message = "no answer" if result is None else result.error_message.decode("utf-8", "replace").strip()
    return psycopg.DatabaseError(f"COPY failed: {message}")


def copy_out(
    conn, query, types: list[pa.DataType], piece_bytes: int | None = None, **settings: str
) -> Iterator[pa.Table]:
    """PostgreSQL: the rows of ``query`` as Arrow tables of about ``piece_bytes`` of CSV each (see
    :func:`copy_csv` and :func:`csv_reader`), in order. No rows: no table."""
    parse = csv_reader(types)
    for data in copy_csv(conn, query, piece_bytes, **settings):
        yield parse(data)


def coded(column: pa.ChunkedArray) -> CodedColumn:
    """A column read as ``pa.dictionary(pa.int32(), pa.string())`` (each piece coded by pyarrow
    as it parsed it) as one code per row into its texts, NULL the text None."""
    chunks = column.unify_dictionaries().chunks
    if not chunks:
        return CodedColumn(np.zeros(0, dtype=np.int64), [])
    dictionary = chunks[0].dictionary
    none = len(dictionary)
    codes = [chunk.indices.fill_null(none).to_numpy().astype(np.int64) for chunk in chunks]
    return CodedColumn(np.concatenate(codes), [*dictionary.to_pylist(), None])


def copy_table(conn, query, types: list[pa.DataType]) -> pa.Table:
    """PostgreSQL: every row of ``query`` in one Arrow table (see :func:`copy_out`)."""
    pieces = list(copy_out(conn, query, types))
    if not pieces:
        return pa.table({f"c{k}": pa.array([], type=t) for k, t in enumerate(types)})
    return pa.concat_tables(pieces)


#: PostgreSQL's binary COPY: the signature, no flags, no header extension (PostgreSQL's manual,
#: COPY, "Binary Format").
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
#: The wire type of each kind of column the binary COPY takes: PostgreSQL int4, float8.
_WIRE_TYPES = {"i": ">i4", "f": ">f8"}


def copy_in(conn, table: str, columns: Mapping[str, np.ndarray]) -> None:
    """PostgreSQL: ``columns`` (name -> a numpy array, one value per row) into ``table`` by one
    binary COPY: integer arrays as ``integer``, float arrays as ``double precision``.

    Every row has the same width, so the whole COPY is one numpy record array written in C: no
    value is formatted or parsed as text on either side. There is no NULL: a NaN arrives as
    NaN, for the statement that reads ``table`` to turn into NULL where it means none.
    """
    arrays = [np.asarray(v) for v in columns.values()]
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, values in enumerate(arrays):
        wire = _WIRE_TYPES.get(values.dtype.kind)
        if wire is None or values.ndim != 1:
            raise TypeError(f"binary COPY takes 1-D integer or float arrays, not {values.dtype} ({list(columns)[k]})")
        fields += [(f"size{k}", ">i4"), (f"value{k}", wire)]
    rows = np.empty(len(arrays[0]) if arrays else 0, dtype=np.dtype(fields))
    rows["count"] = len(arrays)
    for k, values in enumerate(arrays):
        rows[f"size{k}"] = rows.dtype[f"value{k}"].itemsize
        if values.dtype.kind == "i" and len(values) and (values.min() < -(2**31) or values.max() >= 2**31):
            raise OverflowError(f"{list(columns)[k]}: a value does not fit PostgreSQL's integer")
        rows[f"value{k}"] = values
    raw = conn.connection.driver_connection  # psycopg, in this connection's transaction
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(_COPY_HEADER)
            copy.write(rows.view(np.uint8).data)
            copy.write(_COPY_TRAILER)
