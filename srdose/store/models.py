"""The database schema (SQLAlchemy 2 declarative models).

A unit (``Device``) is identified by manufacturer + model + serial number;
the station name is a label that can change. Patient identifiers never reach
these tables: ``Study.patient_pseudonym`` and ``Study.accession_pseudonym``
are keyed HMACs made at ingest (:mod:`srdose.pseudonym`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


#: The range of an ``Integer`` column on every engine: PostgreSQL's integer is 32-bit, and
#: binding a larger number (from a URL or a form) is an error there, not "no such row".
MAX_INTEGER = 2**31 - 1


def fits_integer(n: int) -> bool:
    """Whether ``n`` can be compared with an ``Integer`` column (an id) on every engine."""
    return -MAX_INTEGER - 1 <= n <= MAX_INTEGER


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("manufacturer", "model", "serial", name="uq_device_identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manufacturer: Mapped[str] = mapped_column(String(256), default="")
    model: Mapped[str] = mapped_column(String(256), default="")
    serial: Mapped[str] = mapped_column(String(256), default="", index=True)
    station: Mapped[str | None] = mapped_column(String(256))
    institution: Mapped[str | None] = mapped_column(String(256))
    department: Mapped[str | None] = mapped_column(String(256))
    software: Mapped[str | None] = mapped_column(String(256))
    first_seen: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # the name reports show (``srdose units rename``); None: see srdose.store.governance
    display_name: Mapped[str | None] = mapped_column(String(256))


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    procedure: Mapped[str | None] = mapped_column(String(256))
    patient_pseudonym: Mapped[str | None] = mapped_column(String(64), index=True)
    accession_pseudonym: Mapped[str | None] = mapped_column(String(64))
    age_years: Mapped[float | None] = mapped_column(Float)
    sex: Mapped[str | None] = mapped_column(String(16))
    # a test / QA phantom study (patient ID or name matched a configured
    # pattern at ingest, before pseudonymisation); kept out of patient statistics
    not_patient: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


# Studies newest first, the event list's order (NULL dates last), read from an index (and any date
# range): SQLite reads a plain index backwards in that order (NULL sorts lowest); PostgreSQL needs
# the order declared (backwards, its index would put NULLs first).
Index("ix_studies_date_time", Study.study_date, Study.study_time).ddl_if(dialect="sqlite")
Index("ix_studies_newest", Study.study_date.desc().nulls_last(), Study.study_time.desc().nulls_last()).ddl_if(
    dialect="postgresql"
)

#: Indexes that exist on one engine only (above), by name: Alembic's comparison of the schema with
#: these models does not read ``ddl_if``, so it is told (see :func:`on_engine`).
ONE_ENGINE_INDEXES = {
    "ix_studies_date_time": "sqlite",
    "ix_studies_newest": "postgresql",
    "ix_events_unit_date": "sqlite",
    "ix_events_unit_newest": "postgresql",
}


def on_engine(dialect_name: str):
    """An Alembic ``include_object`` hook: leave out the indexes of the other engine."""

    def include(obj, name, type_, reflected, compare_to) -> bool:
        return type_ != "index" or ONE_ENGINE_INDEXES.get(name, dialect_name) == dialect_name

    return include


class SourceObject(Base):
    """A DICOM object srdose ingested (RDSR or MG image)."""

    __tablename__ = "source_objects"
    # partial: only the few superseded objects (a query for live ones, IS NULL, cannot use it,
    # so it does not tempt the planner to read every live object through it)
    __table_args__ = (
        Index(
            "ix_source_objects_superseded",
            "superseded_by",
            sqlite_where=text("superseded_by IS NOT NULL"),
            postgresql_where=text("superseded_by IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # rdsr | image
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    # SHA-256 of what srdose kept from it (see DoseStore.content_digest): tells a
    # re-encoded copy of this object from another object reusing its UID
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime)
    received_from: Mapped[str | None] = mapped_column(String(256))
    # set when a later RDSR for the same study replaced this one
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("source_objects.id"))
    flags: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """One irradiation event; values in canonical units (kV, mAs, ms, mm, N, mGy)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_study_uid", "study_id", "event_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    # the study's date and time, copied when the event is written (a study's never change): a
    # unit's events are then listed newest first, and counted from a date, from one index
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(16))
    event_uid: Mapped[str | None] = mapped_column(String(64))
    datetime_started: Mapped[str | None] = mapped_column(String(32))
    event_type: Mapped[str | None] = mapped_column(String(64))
    acquisition: Mapped[str | None] = mapped_column(String(8))
    protocol: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(Text)
    view: Mapped[str | None] = mapped_column(String(16))
    view_modifiers: Mapped[str | None] = mapped_column(String(256))
    laterality: Mapped[str | None] = mapped_column(String(1))
    target_region: Mapped[str | None] = mapped_column(String(128))
    kvp: Mapped[float | None] = mapped_column(Float)
    mas: Mapped[float | None] = mapped_column(Float)
    tube_current_ma: Mapped[float | None] = mapped_column(Float)
    exposure_time_ms: Mapped[float | None] = mapped_column(Float)
    irradiation_duration_ms: Mapped[float | None] = mapped_column(Float)
    n_pulses: Mapped[int | None] = mapped_column(Integer)
    anode: Mapped[str | None] = mapped_column(String(4))
    filter_material: Mapped[str | None] = mapped_column(String(4))
    filter_thickness_mm: Mapped[float | None] = mapped_column(Float)
    focal_spot_mm: Mapped[float | None] = mapped_column(Float)
    grid: Mapped[str | None] = mapped_column(String(128))
    compressed_thickness_mm: Mapped[float | None] = mapped_column(Float)
    compression_force_n: Mapped[float | None] = mapped_column(Float)
    compression_pressure_kpa: Mapped[float | None] = mapped_column(Float)
    compression_contact_area_mm2: Mapped[float | None] = mapped_column(Float)
    hvl_mm: Mapped[float | None] = mapped_column(Float)
    entrance_exposure_mgy: Mapped[float | None] = mapped_column(Float)
    reference_point: Mapped[str | None] = mapped_column(String(128))
    agd_mgy: Mapped[float | None] = mapped_column(Float)
    positioner_primary_angle_deg: Mapped[float | None] = mapped_column(Float)
    positioner_primary_end_angle_deg: Mapped[float | None] = mapped_column(Float)
    positioner_secondary_angle_deg: Mapped[float | None] = mapped_column(Float)
    source_detector_mm: Mapped[float | None] = mapped_column(Float)
    source_rp_mm: Mapped[float | None] = mapped_column(Float)
    dose_area_product_gym2: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[str | None] = mapped_column(Text)


# A unit's events by view, newest first: the event list's filter (unit, view, from a date), its
# default order and what its page needs (study, source object) without reading the events table.
# Led by device_id it also serves every per-unit query. SQLite reads it backwards (NULL lowest) and
# keeps no INCLUDE; PostgreSQL needs the order declared, as for the studies below.
Index(
    "ix_events_unit_date",
    Event.device_id,
    Event.view,
    Event.study_date,
    Event.study_time,
    Event.id,
    Event.study_id,
    Event.source_object_id,
).ddl_if(dialect="sqlite")
Index(
    "ix_events_unit_newest",
    Event.device_id,
    Event.view,
    Event.study_date.desc().nulls_last(),
    Event.study_time.desc().nulls_last(),
    Event.id.desc(),
    postgresql_include=["study_id", "source_object_id"],
).ddl_if(dialect="postgresql")


class Pulse(Base):
    __tablename__ = "pulses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    pulse_index: Mapped[int] = mapped_column(Integer)
    kvp: Mapped[float | None] = mapped_column(Float)
    tube_current_ma: Mapped[float | None] = mapped_column(Float)
    exposure_mas: Mapped[float | None] = mapped_column(Float)
    pulse_width_ms: Mapped[float | None] = mapped_column(Float)


class Filter(Base):
    __tablename__ = "filters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    filter_index: Mapped[int] = mapped_column(Integer)
    material: Mapped[str | None] = mapped_column(String(4))
    filter_type: Mapped[str | None] = mapped_column(String(128))
    thickness_min_mm: Mapped[float | None] = mapped_column(Float)
    thickness_max_mm: Mapped[float | None] = mapped_column(Float)


class AccumulatedDose(Base):
    __tablename__ = "accumulated_doses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_object_id: Mapped[int] = mapped_column(ForeignKey("source_objects.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    laterality: Mapped[str | None] = mapped_column(String(1))
    agd_mgy: Mapped[float | None] = mapped_column(Float)


class Quarantine(Base):
    """A dataset that could not be ingested; the file is in the quarantine folder."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    stored_as: Mapped[str | None] = mapped_column(String(1024))
    received_from: Mapped[str | None] = mapped_column(String(256))


# --- MGD recalculation ------------------------------------------------------


class PhysicsSet(Base):
    """One unit's physics measurements (QA), valid from a date (``srdose physics import``).

    The unit is named as in its physics file (serial, and manufacturer when
    given) rather than by a foreign key: a physicist may load the data before
    the unit's first dose report arrives. History is kept: an event uses the
    set valid on its study date.
    """

    __tablename__ = "physics_sets"
    __table_args__ = (UniqueConstraint("serial", "manufacturer", "valid_from", name="uq_physics_set_validity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manufacturer: Mapped[str] = mapped_column(String(256), default="")
    model: Mapped[str] = mapped_column(String(256), default="")
    serial: Mapped[str] = mapped_column(String(256), index=True)
    valid_from: Mapped[str] = mapped_column(String(8))  # YYYYMMDD
    valid_to: Mapped[str | None] = mapped_column(String(8))  # inclusive
    fdd_mm: Mapped[float] = mapped_column(Float)  # focus-detector distance
    support_gap_mm: Mapped[float] = mapped_column(Float)  # breast support to detector
    d_ref_mm: Mapped[float] = mapped_column(Float)  # focus distance of the output measurement
    measured_by: Mapped[str | None] = mapped_column(String(256))
    notes: Mapped[str | None] = mapped_column(Text)
    source_file: Mapped[str | None] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime)


class PhysicsPoint(Base):
    """One measured row: tube output and HVL at a kV for a target/filter."""

    __tablename__ = "physics_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    physics_set_id: Mapped[int] = mapped_column(ForeignKey("physics_sets.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(4))
    filter_material: Mapped[str] = mapped_column(String(4))
    filter_mm: Mapped[float | None] = mapped_column(Float)
    kvp: Mapped[float] = mapped_column(Float)
    output_ugy_per_mas: Mapped[float] = mapped_column(Float)  # at d_ref, free in air
    hvl_mm: Mapped[float] = mapped_column(Float)  # mm Al


class FactorSetRecord(Base):
    """A factor set (g, c, s, T tables) that produced recalculated doses."""

    __tablename__ = "factor_sets"
    __table_args__ = (UniqueConstraint("sha256", name="uq_factor_set_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # bundled | user
    sha256: Mapped[str] = mapped_column(String(64))
    provenance: Mapped[str] = mapped_column(Text)  # JSON: sources, ranges, missing tables
    content: Mapped[str | None] = mapped_column(Text)  # the user CSV as loaded
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime)


class RecalcResult(Base):
    """The recalculated MGD of one irradiation event (``srdose recalc``)."""

    __tablename__ = "recalc_results"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(16))  # measured | rdsr
    mgd_recalc_mgy: Mapped[float | None] = mapped_column(Float)
    mgd_u_mgy: Mapped[float | None] = mapped_column(Float)  # expanded uncertainty, k = 2
    k_mgy: Mapped[float | None] = mapped_column(Float)
    hvl_used_mm: Mapped[float | None] = mapped_column(Float)
    hvl_source: Mapped[str | None] = mapped_column(String(32))  # measured_fit | rdsr
    g: Mapped[float | None] = mapped_column(Float)
    c: Mapped[float | None] = mapped_column(Float)
    s: Mapped[float | None] = mapped_column(Float)
    t_factor: Mapped[float | None] = mapped_column(Float)
    factor_set: Mapped[str] = mapped_column(String(200))  # name@version
    # not indexed: a recalculation rewrites every row, and nothing reads results by these
    factor_set_id: Mapped[int] = mapped_column(ForeignKey("factor_sets.id"))
    physics_set_id: Mapped[int | None] = mapped_column(ForeignKey("physics_sets.id", ondelete="SET NULL"))
    ratio_recalc_to_reported: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[str | None] = mapped_column(Text)
    params_hash: Mapped[str] = mapped_column(String(16))


# --- information governance and curation ---------------------------------------
# New columns on existing tables: ``Study.not_patient`` and ``Device.display_name``
# (declared on those classes above); the tables below hold no patient identifier in clear.


class OptOut(Base):
    """A patient who opted out (national data opt-out), by site pseudonym only.

    The IDs of the imported list are hashed with the site key on import
    (:meth:`srdose.pseudonym.Pseudonymiser.patient`); the clear ID is never stored.
    """

    __tablename__ = "optouts"

    patient_pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime)
    source_sha256: Mapped[str | None] = mapped_column(String(64))  # of the imported list file


class Reidentification(Base):
    """Original patient ID per site pseudonym, AES-GCM encrypted (key outside the database).

    Written at ingest only when ``[governance] reidentification_key_file`` is set;
    read only by ``srdose reidentify``, which is audited.
    """

    __tablename__ = "reidentification"

    patient_pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(32))  # hex, 12 bytes
    ciphertext: Mapped[str] = mapped_column(Text)  # hex, with the GCM tag
    key_id: Mapped[str] = mapped_column(String(16))  # which key (first hex of its SHA-256)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class AuditEntry(Base):
    """Audit trail: who (OS user) did what, when, with which parameters; append only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    who: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    parameters: Mapped[str | None] = mapped_column(Text)  # JSON
    rows: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)  # JSON: counts, checksums, outcome


class UnitAlias(Base):
    """A rule naming units: devices whose ``match_field`` equals ``match_value`` are shown
    (and counted together in statistics) as ``display_name``.

    ``match_field`` is ``serial``, ``station`` or ``institution``. An explicit
    ``Device.display_name`` (``srdose units rename``) wins over aliases.
    """

    __tablename__ = "unit_aliases"
    __table_args__ = (UniqueConstraint("match_field", "match_value", name="uq_unit_alias_match"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    match_field: Mapped[str] = mapped_column(String(16))
    match_value: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


# --- the web application ---------------------------------------------------------


class WebUser(Base):
    """A login of the web application (``srdose users``); the password only as an argon2 hash."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | physicist | admin
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_login: Mapped[dt.datetime | None] = mapped_column(DateTime)


class WebSession(Base):
    """A signed-in browser: only the SHA-256 of its cookie token is kept."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


# --- alerts ----------------------------------------------------------------------


class AlertRule(Base):
    """A rule a physicist sets; :mod:`srdose.web.alerting` evaluates it.

    ``kind``: mgd | ratio | drift | silent | listener | quarantine. ``serial`` None: every unit.
    ``threshold`` is the MGD level (mGy), the ratio band (fraction), the number of quarantined
    files in a day or the minutes a listener status may be old; ``days`` the look-back of the
    dose rules or the days a unit may be silent.
    """

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    serial: Mapped[str | None] = mapped_column(String(256))
    view: Mapped[str | None] = mapped_column(String(16))
    band_min_mm: Mapped[float | None] = mapped_column(Float)
    band_max_mm: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    days: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Alert(Base):
    """One firing of a rule. ``key`` (rule, subject, period) is unique: a rule fires once for it."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("key", name="uq_alert_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str | None] = mapped_column(String(256))
    fired_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    message: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(String(512))
    emailed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
