"""Database access: engine set-up, migrations, and writing dose reports."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from srdose.dates import dt_seconds
from srdose.digest import coarse_age, content_digest
from srdose.files import private_dir
from srdose.parse.records import DoseReport, IrradiationEvent
from srdose.parse.values import uid_problem
from srdose.pseudonym import Pseudonymiser
from srdose.store import bulk
from srdose.store import models as M
from srdose.vocab import Outcome, SourceKind

MIGRATIONS = Path(__file__).with_name("migrations")


#: The unique keys of what two writers can store at the same moment (several listeners, or a
#: listener and ``srdose ingest``, on one PostgreSQL database): a unit, a study, an object. The
#: later INSERT waits for the first writer's commit, then fails on the key; tried again, the
#: transaction finds the row held.
RACED_KEYS = frozenset({"uq_device_identity", "studies_study_instance_uid_key", "source_objects_sop_instance_uid_key"})


def raced(exc: BaseException) -> bool:
    """Another writer committed the same unit, study or object while this transaction was
    writing it: nothing is wrong with the dataset, the transaction is to be tried again."""
    if not isinstance(exc, sa_exc.IntegrityError):
        return False
    diag = getattr(exc.orig, "diag", None)  # psycopg's; SQLite has one writer at a time
    return getattr(diag, "constraint_name", None) in RACED_KEYS


def is_transient(exc: BaseException) -> bool:
    """A database error that says nothing about the dataset (disk full,
    database locked, connection lost or timed out, serialisation failure or
    deadlock, a row another writer stored first): retry it, never quarantine
    for it."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if raced(exc):
        return True
    return isinstance(
        exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError)
    )


def _without_nul(value: str) -> str:
    return value.replace("\x00", "")


def fit_row(model, row: dict, flag: Callable[[str], None]) -> dict:
    """``row`` with every text value storable in ``model``'s columns: NUL
    characters (PostgreSQL refuses them) removed and values longer than the
    column cut, each with a flag naming the column."""
    columns = model.__table__.columns
    for name, value in row.items():
        if not isinstance(value, str) or name not in columns:
            continue
        kind = columns[name].type
        if not isinstance(kind, (String, Text)):
            continue
        if "\x00" in value:
            value = _without_nul(value)
            flag(f"nul:{name}")
        length = getattr(kind, "length", None)
        if length and len(value) > length:
            value = value[:length]
            flag(f"truncated:{name}")
        row[name] = value
    return row


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic), creating it if empty."""
    from alembic import command

    cfg = _alembic_config(str(engine.url))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database (which
    each new pool would see as a different, empty database)."""
    database = make_url(url).database
    if not database or database == ":memory:" or "mode=memory" in url:
        return None
    return database


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine with the settings srdose relies on.

    SQLite: WAL (readers do not block a writer, nor a writer its readers),
    foreign keys on, a 60 s busy timeout (a writer waits for the one before
    it rather than fails), and transactions begun explicitly so that
    SAVEPOINTs work (the pysqlite driver otherwise manages transactions
    itself).

    Every transaction of a normal engine is ``BEGIN IMMEDIATE``: it takes the
    write lock at once, so a transaction that reads and then writes never
    fails upgrading its lock (in WAL, SQLITE_BUSY_SNAPSHOT, which the busy
    timeout does not retry) because another writer committed in between.
    That serialises readers too, so a ``read_only`` engine begins with a
    plain (deferred) ``BEGIN``, a snapshot that neither waits for nor blocks
    the writer, and sets ``query_only`` so that a write slipped onto it fails
    at once instead of risking that lock upgrade.
    """
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            if read_only:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


_EVENT_COLUMNS = [
    f.name for f in fields(IrradiationEvent) if f.name not in ("pulses", "filters", "flags", "view_modifiers")
]


def _event_key(ev) -> str:
    """What identifies one exposure across an RDSR and its images."""
    if ev.event_uid:
        return "uid:" + ev.event_uid
    return f"t:{ev.datetime_started}|{ev.laterality}|{ev.view}"


#: An image and an RDSR event with no shared UID are the same exposure when
#: laterality and view agree and their start times are this close.
SAME_EXPOSURE_SECONDS = 10.0


class DoseStore:
    """A srdose database.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:////data/srdose.sqlite`` or
        ``postgresql+psycopg://srdose@localhost/srdose``.
    pseudonymiser
        Turns patient IDs and accession numbers into keyed pseudonyms; needed
        to write, not to read.
    migrate
        Bring the schema to the current revision on opening.
    concurrent_reads
        Make ``engine`` a read-only engine whose transactions do not take
        SQLite's write lock (see :func:`make_engine`), while :meth:`begin`
        keeps writing through ``write_engine``: for a server whose many
        concurrent requests mostly read (the web application). Otherwise
        ``engine`` is ``write_engine``. Either way ``read_engine`` reads
        without the write lock; on PostgreSQL, and for an in-memory SQLite
        database, all three are the one engine.
    """

    def __init__(
        self,
        url: str,
        pseudonymiser: Pseudonymiser | None = None,
        migrate: bool = True,
        age_resolution_years: int = 1,
        concurrent_reads: bool = False,
    ):
        self.url = url
        self.write_engine = make_engine(url)
        # a second pool for SQLite's deferred reads: a connection's BEGIN is
        # fixed by its engine, so reads and writes cannot share connections
        separate = url.startswith("sqlite") and _sqlite_file(url) is not None
        self.read_engine = make_engine(url, read_only=True) if separate else self.write_engine
        #: what ``store.engine.connect()`` reads through, here and in the modules that take a store
        self.engine = self.read_engine if concurrent_reads else self.write_engine
        self.pseudonymiser = pseudonymiser
        self.age_resolution_years = max(1, int(age_resolution_years))
        # device ids of committed rows, and of rows written by the transaction
        # in progress: these join the first only once it has committed, and
        # are forgotten on any rollback (a rolled-back device row is gone)
        self._devices: dict[tuple, tuple] = {}
        self._pending_devices: dict[tuple, tuple] = {}
        # events written by the transaction in progress, and committed since the planner's
        # statistics were last taken (see wrote); None: not yet looked up
        self._pending_events = 0
        self._events_since_analyze = 0
        self._events_at_analyze: int | None = None
        event.listen(self.write_engine, "rollback", self._forget_pending)
        event.listen(self.write_engine, "rollback_savepoint", self._forget_pending)
        if migrate:
            upgrade(self.write_engine)
            if not self.has_statistics() and self._has_events():
                self.analyze()  # e.g. a database from before srdose took statistics

    def _forget_pending(self, *_args) -> None:
        self._pending_devices.clear()
        self._pending_events = 0

    def close(self) -> None:
        self.write_engine.dispose()
        self.read_engine.dispose()

    # --- the query planner's statistics -------------------------------------------

    #: Statistics are taken again once the events have grown by this fraction since they were
    #: last taken (as PostgreSQL's autovacuum_analyze_scale_factor), and by this many at least.
    ANALYZE_GROWTH = 0.1
    ANALYZE_MIN_EVENTS = 1000

    def analyzed_events(self) -> int | None:
        """The number of events the planner's statistics were taken over; None: none taken."""
        with self.write_engine.connect() as conn:
            if self.write_engine.dialect.name == "sqlite":
                if not conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").all():
                    return None
                stat = conn.exec_driver_sql(
                    "SELECT stat FROM sqlite_stat1 WHERE tbl = 'events' AND idx = 'ix_events_study_id'"
                ).scalar()
                return int(stat.split()[0]) if stat else None
            # PostgreSQL: reltuples is -1 until the table is first analyzed
            n = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'events'").scalar()
            return int(n) if n is not None and n >= 0 else None

    @property
    def shared(self) -> bool:
        """Whether another process can open this database: a server's or a file, not memory."""
        return not self.url.startswith("sqlite") or _sqlite_file(self.url) is not None

    def _has_events(self) -> bool:
        with self.write_engine.connect() as conn:
            return conn.execute(select(M.Event.id).limit(1)).first() is not None

    def has_statistics(self) -> bool:
        """Whether the planner has statistics of the events (an empty table has none)."""
        return self.analyzed_events() is not None

    def wrote(self, rows: int) -> None:
        """``rows`` events, or recalculated results of events, were committed: refresh the
        statistics when there are none yet, or when the rows written since they were taken reach
        :data:`ANALYZE_GROWTH` of the events. Every writer passes here (a folder ingest and the
        listener through :meth:`begin`, a recalculation with its count), so a database filled a
        few objects at a time keeps statistics that match it, and the listener's small
        recalculations every few seconds do not each analyze the whole database."""
        if self._events_at_analyze is None:
            self._events_at_analyze = self.analyzed_events() or 0
        self._events_since_analyze += rows
        threshold = max(self.ANALYZE_MIN_EVENTS, self.ANALYZE_GROWTH * self._events_at_analyze)
        if self._events_at_analyze == 0 or self._events_since_analyze >= threshold:
            self.analyze()

    def analyze(self) -> None:
        """Refresh the query planner's statistics after the tables have grown or changed shape (a
        bulk ingest, a recalculation). Without them SQLite's planner guesses how selective a
        filter is, and on a large database guesses wrong: e.g. it sorted every event for the
        event list's first page instead of reading the newest studies from their index.
        PostgreSQL's autovacuum gets there too, but only a while after a bulk load."""
        # SQLite: every row, not a sample (analysis_limit): sampled counts were 40 times too low
        # for the unit index; a full ANALYZE takes about half a second per million events
        with self.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        self._events_at_analyze = self.analyzed_events() or 0
        self._events_since_analyze = 0

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection that reads one snapshot without taking SQLite's write lock."""
        with self.read_engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; commits on success, rolls back on error."""
        self._forget_pending()
        try:
            with self.write_engine.begin() as conn:
                yield conn
        except BaseException:
            self._forget_pending()
            raise
        self._devices.update(self._pending_devices)
        self._pending_devices.clear()
        added, self._pending_events = self._pending_events, 0
        if added:
            self.wrote(added)

    # --- writing -------------------------------------------------------------

    def has_sop_instance(self, conn: Connection, sop_instance_uid: str) -> bool:
        return (
            conn.execute(select(M.SourceObject.id).where(M.SourceObject.sop_instance_uid == sop_instance_uid)).first()
            is not None
        )

    def _device_id(self, conn: Connection, report: DoseReport, now: dt.datetime) -> int:
        d = report.device
        row = fit_row(
            M.Device,
            dict(
                manufacturer=d.manufacturer or "",
                model=d.model or "",
                serial=d.serial or "",
                station=d.station,
                institution=d.institution,
                department=d.department,
                software=d.software,
            ),
            report.flags.append,
        )
        identity = (row["manufacturer"], row["model"], row["serial"])
        labels = {k: row[k] for k in ("station", "institution", "department", "software")}
        cached = self._pending_devices.get(identity) or self._devices.get(identity)
        if cached is not None and cached[1] == labels and cached[2] == now.date():
            return cached[0]
        found = conn.execute(
            select(M.Device.id).where(
                M.Device.manufacturer == identity[0],
                M.Device.model == identity[1],
                M.Device.serial == identity[2],
            )
        ).first()
        if found is None:
            key = conn.execute(
                insert(M.Device).values(
                    manufacturer=identity[0],
                    model=identity[1],
                    serial=identity[2],
                    first_seen=now,
                    last_seen=now,
                    **labels,
                )
            ).inserted_primary_key
            assert key is not None  # a single-row INSERT has one
            device_id = key[0]
        else:
            device_id = found[0]
            # the station name is a label that can change: keep the latest
            conn.execute(update(M.Device).where(M.Device.id == device_id).values(last_seen=now, **labels))
        # written again when a label changes, and at least once a day (last_seen)
        self._pending_devices[identity] = (device_id, labels, now.date())
        return device_id

    def _study(self, conn: Connection, report: DoseReport, device_id: int) -> tuple[int, str | None, str | None, bool]:
        """The study's id, date and time (as held: a study written before keeps its own), and
        whether this call wrote it."""
        st = report.study
        # the study's row is locked until this transaction ends: another writer storing an
        # object of the same study waits, then sees this one's objects and events (PostgreSQL;
        # SQLite has one writer at a time)
        row = conn.execute(
            select(M.Study.id, M.Study.study_date, M.Study.study_time)
            .where(M.Study.study_instance_uid == st.study_instance_uid)
            .with_for_update()
        ).first()
        if row is not None:
            return row[0], row[1], row[2], False
        p = self.pseudonymiser
        if p is None:
            raise RuntimeError("DoseStore needs a Pseudonymiser to write studies")
        values = fit_row(
            M.Study,
            dict(
                study_instance_uid=st.study_instance_uid,
                device_id=device_id,
                study_date=st.study_date,
                study_time=st.study_time,
                description=st.description,
                procedure=st.procedure,
                patient_pseudonym=p.patient(st.patient_id),
                accession_pseudonym=p.accession(st.accession),
                age_years=self._coarse_age(st.age_years),
                sex=st.sex,
                not_patient=bool(st.not_patient),  # phantom / QA study, set at ingest
            ),
            report.flags.append,
        )
        # one statement whatever the values: compiled once, not per study
        key = conn.execute(insert(M.Study), values).inserted_primary_key
        assert key is not None  # a single-row INSERT has one
        return key[0], values["study_date"], values["study_time"], True

    def _coarse_age(self, age: float | None) -> int | None:
        return coarse_age(age, self.age_resolution_years)

    def content_digest(self, report: DoseReport) -> str:
        """See :func:`content_digest`."""
        return content_digest(report, self.pseudonymiser, self.age_resolution_years)

    def _held_conflicts(self, conn: Connection, report: DoseReport, sha256: str, digest: str) -> bool | None:
        """None when the SOP instance is not held; False when it is held with
        the same content; True when it is held with other content."""
        S, St = M.SourceObject, M.Study
        held = conn.execute(
            select(S.sha256, S.content_sha256, St.study_instance_uid, St.patient_pseudonym)
            .outerjoin(St, S.study_id == St.id)
            .where(S.sop_instance_uid == report.sop_instance_uid)
        ).first()
        if held is None:
            return None
        if held.sha256 == sha256:
            return False
        if held.content_sha256 is not None:
            return held.content_sha256 != digest
        # held before content digests were kept: compare the study and the patient
        p = self.pseudonymiser
        pseudonym = p.patient(report.study.patient_id) if p else held.patient_pseudonym
        return held.study_instance_uid != report.study.study_instance_uid or held.patient_pseudonym != pseudonym

    def _events_of(self, conn: Connection, source_ids: list[int]) -> Sequence[Any]:
        if not source_ids:
            return []
        return conn.execute(
            select(
                M.Event.id,
                M.Event.source_object_id,
                M.Event.event_uid,
                M.Event.datetime_started,
                M.Event.laterality,
                M.Event.view,
            ).where(M.Event.source_object_id.in_(source_ids))
        ).all()

    def add(
        self,
        conn: Connection,
        report: DoseReport,
        sha256: str,
        received_from: str | None = None,
        digest: str | None = None,
    ) -> Outcome:
        """Write one report inside the caller's transaction.

        Parameters
        ----------
        conn
            A connection in a transaction (see :meth:`begin`).
        report
            The parsed report; its patient identifiers are pseudonymised here
            and go no further.
        sha256
            Checksum of the file or dataset as received.
        received_from
            Calling AE title or path the object came from.
        digest
            The report's :meth:`content_digest`, when the caller computed it already.
        """
        digest = digest or self.content_digest(report)
        conflict = self._held_conflicts(conn, report, sha256, digest)
        if conflict is not None:
            return Outcome.CONFLICT if conflict else Outcome.DUPLICATE
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        device_id = self._device_id(conn, report, now)
        study_id, study_date, study_time, new_study = self._study(conn, report, device_id)
        row = fit_row(
            M.SourceObject,
            dict(
                sop_instance_uid=report.sop_instance_uid,
                sop_class_uid=report.sop_class_uid,
                kind=report.source,
                study_id=study_id,
                sha256=sha256,
                content_sha256=digest,
                received_at=now,
                received_from=received_from,
            ),
            report.flags.append,
        )
        row["flags"] = _without_nul(";".join(report.flags)) or None
        key = conn.execute(insert(M.SourceObject), row).inserted_primary_key
        assert key is not None  # a single-row INSERT has one
        source_id = key[0]

        # a study this call wrote has no other objects (its row is locked until commit)
        live = (
            []
            if new_study
            else conn.execute(
                select(M.SourceObject.id, M.SourceObject.kind).where(
                    M.SourceObject.study_id == study_id,
                    M.SourceObject.superseded_by.is_(None),
                    M.SourceObject.id != source_id,
                )
            ).all()
        )
        rdsr_ids = [r.id for r in live if r.kind == SourceKind.RDSR]
        image_ids = [r.id for r in live if r.kind == SourceKind.IMAGE]
        events = report.events
        outcome = Outcome.INGESTED

        if report.source == SourceKind.RDSR:
            new_keys = {_event_key(e) for e in events}
            held = self._events_of(conn, rdsr_ids)
            by_source: dict[int, set] = {}
            for row in held:
                by_source.setdefault(row.source_object_id, set()).add(
                    "uid:" + row.event_uid if row.event_uid else f"t:{row.datetime_started}|{row.laterality}|{row.view}"
                )
            for sid in rdsr_ids:
                old_keys = by_source.get(sid, set())
                if old_keys <= new_keys:
                    # the new RDSR says everything the old one did, and maybe more
                    conn.execute(delete(M.Event).where(M.Event.source_object_id == sid))
                    conn.execute(delete(M.AccumulatedDose).where(M.AccumulatedDose.source_object_id == sid))
                    conn.execute(update(M.SourceObject).where(M.SourceObject.id == sid).values(superseded_by=source_id))
                    outcome = Outcome.REPLACED
                elif new_keys < old_keys:
                    conn.execute(update(M.SourceObject).where(M.SourceObject.id == source_id).values(superseded_by=sid))
                    return Outcome.SUPERSEDED
                else:
                    # partly overlapping reports: count each exposure once
                    events = [e for e in events if _event_key(e) not in old_keys]
            # the RDSR wins over image headers of the same exposures
            for row in self._events_of(conn, image_ids):
                if any(self._same_exposure(row, e) for e in report.events):
                    conn.execute(delete(M.Event).where(M.Event.id == row.id))
                    conn.execute(
                        update(M.SourceObject)
                        .where(M.SourceObject.id == row.source_object_id)
                        .values(superseded_by=source_id)
                    )
        else:
            held = self._events_of(conn, rdsr_ids + image_ids)
            if any(self._same_exposure(row, e) for row in held for e in events):
                conn.execute(
                    update(M.SourceObject)
                    .where(M.SourceObject.id == source_id)
                    .values(superseded_by=held[0].source_object_id)
                )
                return Outcome.COVERED

        self._insert_events(conn, events, source_id, (study_id, study_date, study_time), device_id)
        if report.accumulated:
            conn.execute(
                insert(M.AccumulatedDose),
                [
                    fit_row(
                        M.AccumulatedDose,
                        {
                            "source_object_id": source_id,
                            "study_id": study_id,
                            "laterality": a.laterality,
                            "agd_mgy": a.agd_mgy,
                        },
                        lambda _f: None,
                    )
                    for a in report.accumulated
                ],
            )
        return outcome

    @staticmethod
    def _same_exposure(row, ev: IrradiationEvent) -> bool:
        if row.event_uid and ev.event_uid:
            return row.event_uid == ev.event_uid
        if row.laterality != ev.laterality or row.view != ev.view:
            return False
        # NaN (no time of day) never compares close
        return abs(dt_seconds(row.datetime_started) - dt_seconds(ev.datetime_started)) <= SAME_EXPOSURE_SECONDS

    def _insert_events(
        self,
        conn: Connection,
        events: list[IrradiationEvent],
        source_id: int,
        study: tuple[int, str | None, str | None],
        device_id: int,
    ) -> None:
        """``study``: the study's id, date and time (see :meth:`_study`)."""
        if not events:
            return
        study_id, study_date, study_time = study
        rows = []
        for ev in events:
            row = {name: getattr(ev, name) for name in _EVENT_COLUMNS}
            row.update(
                source_object_id=source_id,
                study_id=study_id,
                study_date=study_date,
                study_time=study_time,
                device_id=device_id,
                view_modifiers=";".join(ev.view_modifiers) or None,
            )
            fit_row(M.Event, row, ev.flag)
            for f in ev.filters:
                f.filter_type = fit_row(M.Filter, {"filter_type": f.filter_type}, ev.flag)["filter_type"]
            row["flags"] = _without_nul(";".join(ev.flags)) or None
            rows.append(row)
        ids = conn.execute(insert(M.Event).returning(M.Event.id, sort_by_parameter_order=True), rows).scalars().all()
        self._pending_events += len(ids)
        pulses, filters = [], []
        for event_id, ev in zip(ids, events):
            for p in ev.pulses:
                pulses.append(
                    {
                        "event_id": event_id,
                        "pulse_index": p.index,
                        "kvp": p.kvp,
                        "tube_current_ma": p.tube_current_ma,
                        "exposure_mas": p.exposure_mas,
                        "pulse_width_ms": p.pulse_width_ms,
                    }
                )
            for i, f in enumerate(ev.filters):
                filters.append(
                    {
                        "event_id": event_id,
                        "filter_index": i,
                        "material": f.material,
                        "filter_type": f.filter_type,
                        "thickness_min_mm": f.thickness_min_mm,
                        "thickness_max_mm": f.thickness_max_mm,
                    }
                )
        if pulses:
            conn.execute(insert(M.Pulse), pulses)
        if filters:
            conn.execute(insert(M.Filter), filters)

    def add_quarantine(
        self,
        conn: Connection,
        kind: str,
        reason: str,
        sha256: str | None,
        sop_instance_uid: str | None,
        stored_as: str | None,
        received_from: str | None = None,
    ) -> None:
        """Record a quarantined dataset. Whatever the dataset held, this row
        can be written: a UID that is not one is left out (the reason says
        it), text is cut to its column and cleared of NUL characters."""
        if sop_instance_uid is not None and uid_problem(str(sop_instance_uid)):
            sop_instance_uid = None
        row = fit_row(
            M.Quarantine,
            dict(
                at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                kind=kind,
                reason=(reason or "")[:4000],
                sha256=sha256,
                sop_instance_uid=sop_instance_uid,
                stored_as=stored_as,
                received_from=received_from,
            ),
            lambda _f: None,
        )
        # in a savepoint: a failure here leaves the caller's transaction usable
        with conn.begin_nested():
            conn.execute(insert(M.Quarantine).values(**row))

    # --- reading ---------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per table, for summaries and ``srdose status``."""
        out = {}
        with self.engine.connect() as conn:
            for name, model in (
                ("devices", M.Device),
                ("studies", M.Study),
                ("source_objects", M.SourceObject),
                ("events", M.Event),
                ("quarantine", M.Quarantine),
            ):
                out[name] = conn.execute(select(func.count()).select_from(model)).scalar_one()
        return out


#: Columns of ``srdose export events``, in contract order.
EVENT_EXPORT_COLUMNS = (
    "sop_instance_uid",
    "event_uid",
    "source",
    "manufacturer",
    "model",
    "device_serial",
    "station",
    "study_date",
    "study_time",
    "patient_pseudonym",
    "age_years",
    "laterality",
    "view",
    "acquisition",
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
    "reference_point",
    "agd_reported_mgy",
    "flags",
    # MGD recalculation (``srdose recalc``); empty until an event is recalculated
    "mgd_recalc_mgy",
    "method",
    "k_mgy",
    "hvl_used_mm",
    "hvl_source",
    "g",
    "c",
    "s",
    "t_factor",
    "factor_set",
    "ratio_recalc_to_reported",
    "recalc_flags",
    # expanded uncertainty (k = 2) of mgd_recalc_mgy
    "mgd_u_mgy",
)


def event_export_query(since: str | None = None, until: str | None = None, serial: str | None = None):
    """SELECT of the events export, one row per live irradiation event."""
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    q = (
        select(
            S.sop_instance_uid,
            E.event_uid,
            S.kind.label("source"),
            D.manufacturer,
            D.model,
            D.serial.label("device_serial"),
            D.station,
            St.study_date,
            St.study_time,
            St.patient_pseudonym,
            St.age_years,
            E.laterality,
            E.view,
            E.acquisition,
            E.kvp,
            E.mas,
            E.exposure_time_ms,
            E.n_pulses,
            E.anode,
            E.filter_material.label("filter"),
            E.filter_thickness_mm,
            E.compressed_thickness_mm,
            E.compression_force_n,
            E.hvl_mm,
            E.entrance_exposure_mgy,
            E.reference_point,
            E.agd_mgy.label("agd_reported_mgy"),
            E.flags,
            R.mgd_recalc_mgy,
            R.method,
            R.k_mgy,
            R.hvl_used_mm,
            R.hvl_source,
            R.g,
            R.c,
            R.s,
            R.t_factor,
            R.factor_set,
            R.ratio_recalc_to_reported,
            R.flags.label("recalc_flags"),
            R.mgd_u_mgy,
        )
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(D, E.device_id == D.id)
        .outerjoin(R, R.event_id == E.id)
        .where(S.superseded_by.is_(None))
        .order_by(St.study_date, St.study_time, St.id, E.datetime_started, E.id)
    )
    if since:
        q = q.where(St.study_date >= since)
    if until:
        q = q.where(St.study_date <= until)
    if serial:
        q = q.where(D.serial == serial)
    return q


#: PostgreSQL's memory for each sort and hash of a report's or an export's read (its default,
#: 4 MB, spills the joins and the sort of a million events to disk in hundreds of batches).
REPORT_WORK_MEM = "256MB"


def _arrow_type(column) -> pa.DataType:
    python = column.type.python_type
    return pa.float64() if python is float else pa.int64() if python is int else pa.string()


def event_export_tables(store: DoseStore, **filters) -> Iterator[Callable[[], pa.Table]]:
    """The events export as Arrow tables of :data:`EVENT_EXPORT_COLUMNS`, in order, a piece at a
    time, each as a function that returns it (:func:`srdose.store.bulk.read_pieces`): PostgreSQL
    by COPY (its sort in memory where it fits), SQLite through the driver."""
    q = event_export_query(**filters)
    types = [_arrow_type(c) for c in q.selected_columns]
    with store.engine.connect() as conn:
        for piece in bulk.read_pieces(conn, q, types, work_mem=REPORT_WORK_MEM):
            yield partial(_named, piece)


def _named(piece: Callable[[], pa.Table]) -> pa.Table:
    return piece().rename_columns(list(EVENT_EXPORT_COLUMNS))


def iter_event_rows(store: DoseStore, **filters) -> Iterator[tuple]:
    """Rows of the events export, streamed."""
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(event_export_query(**filters))
        for row in result:
            yield tuple(row)


def reception_counts(store: DoseStore) -> list[dict]:
    """Ingested objects and quarantined datasets per source (calling AE or
    'files'), with the last time each was seen."""
    S, Q = M.SourceObject, M.Quarantine
    rows: dict[str, dict] = {}

    def key(origin):
        return origin if origin and origin.startswith("dicom:") else "files"

    with store.engine.connect() as conn:
        for origin, n, last in conn.execute(
            select(S.received_from, func.count(), func.max(S.received_at)).group_by(S.received_from)
        ):
            r = rows.setdefault(key(origin), {"ingested": 0, "quarantined": 0, "last_seen": None})
            r["ingested"] += n
            r["last_seen"] = max(filter(None, [r["last_seen"], str(last)[:19]]), default=None)
        for origin, n, last in conn.execute(
            select(Q.received_from, func.count(), func.max(Q.at)).group_by(Q.received_from)
        ):
            r = rows.setdefault(key(origin), {"ingested": 0, "quarantined": 0, "last_seen": None})
            r["quarantined"] += n
            r["last_seen"] = max(filter(None, [r["last_seen"], str(last)[:19]]), default=None)
    return [{"source": k, **v} for k, v in sorted(rows.items())]


def held_sop_instances(store: DoseStore) -> set[str]:
    """SOP instance UIDs already ingested or quarantined (retrieval skips them)."""
    with store.engine.connect() as conn:
        held = set(conn.execute(select(M.SourceObject.sop_instance_uid)).scalars())
        held.update(u for u in conn.execute(select(M.Quarantine.sop_instance_uid)).scalars() if u)
    return held


def create_private_sqlite_file(url: str) -> None:
    """Create a new SQLite database file readable by its owner only (its journal and WAL files
    take the same mode), in a folder of the same kind. Other URLs and existing files are left alone."""
    try:
        parsed = make_url(url)
    except Exception:
        return  # the store reports the bad URL
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
        or parsed.database.startswith("file:")
    ):
        return
    path = Path(parsed.database).expanduser()
    if path.exists():
        return
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"
