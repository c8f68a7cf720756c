"""Configuration: one TOML file, environment variables override it.

Where the file is looked for, first found wins:

1. ``--config FILE`` on the command line;
2. ``$SRDOSE_CONFIG``;
3. ``./srdose.toml``;
4. ``~/.config/srdose/srdose.toml``.

No file is needed: every setting has a default. An environment variable
``SRDOSE_<KEY>`` overrides a top-level key and ``SRDOSE_<SECTION>__<KEY>`` a
key in a section, e.g. ``SRDOSE_DATABASE_URL=postgresql+psycopg://...`` or
``SRDOSE_LISTENER__PORT=11113``. ``srdose config`` prints what is in force.

Each section is a frozen dataclass below (``settings.recalc.ratio_band``), one
field per key with its default and what it means; :data:`DEFAULTS` (the
settings as written in TOML) is generated from them. Every value is checked,
and a value with structure (``"KEY=VALUE"`` lists, a thickness band, a regular
expression) is parsed, when the settings are loaded: a ConfigError names the
``[section] key`` and where the value came from.
"""

from __future__ import annotations

import copy
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from srdose.vocab import Acquisition, Method

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """The configuration cannot be used; the message says what to change."""


# --- parsers of the values with structure ------------------------------------------------------
# Each takes the value as written in TOML and gives the typed value, or raises a ValueError whose
# message starts with the setting's name. The recalculation and the reports call them too, for
# values given to them directly (tests, command-line options).


def _rules(items: Any, name: str, check: Callable[[str, str, Any], Any]) -> tuple:
    """``["KEY=VALUE", ...]`` -> ``((key, value), ...)``, keys lower-case, each value checked by ``check``."""
    if isinstance(items, str):
        raise ValueError(f'{name} must be a list of "KEY=VALUE" strings, not a single string')
    out = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{name} entry {item!r} is not KEY=VALUE")
        key = key.strip().lower()
        out.append((key, check(key, value.strip(), item)))
    return tuple(out)


def _band(key: str, value: str, item: Any) -> float:
    method = key.partition(":")[0]
    if method not in {m.value for m in Method}:
        raise ValueError(
            f"[recalc] ratio_bands entry {item!r}: the method must be one of {', '.join(m.value for m in Method)}"
        )
    try:
        f = float(value)
    except ValueError:
        f = -1.0
    if not 0.0 < f < 10.0:
        raise ValueError(f"[recalc] ratio_bands entry {item!r}: the band must be a fraction such as 0.15")
    return f


def parse_ratio_bands(items: Any) -> tuple[tuple[str, float], ...]:
    """``["METHOD[:MAKER]=FRACTION", ...]`` -> ``(("rdsr:ge", 0.25), ...)``."""
    return _rules(items, "[recalc] ratio_bands", _band)


def _rp(key: str, value: str, item: Any) -> str:
    v = value.lower().replace(" ", "")
    if v in ("surface", "rdsr"):
        return v
    m = re.fullmatch(r"(\d+(?:\.\d+)?)mm", v)
    if m:
        return f"{float(m.group(1)):g}mm"
    raise ValueError(f"[recalc] reference_point entry {item!r}: expected surface, rdsr or a height such as 42mm")


def parse_reference_points(items: Any) -> tuple[tuple[str, str], ...]:
    """``["MAKER_OR_MODEL=surface|rdsr|HEIGHTmm", ...]`` -> ``(("hologic", "42mm"), ...)``."""
    return _rules(items, "[recalc] reference_point", _rp)


def parse_survey_numbers(entries: Any) -> dict[str, int]:
    """``["SERIAL=NUMBER", ...]`` -> {serial: number}."""
    out: dict[str, int] = {}
    for entry in entries or []:
        if "=" not in str(entry):
            raise ValueError(f"[report] survey_numbers entry {entry!r}: expected SERIAL=NUMBER")
        serial, number = str(entry).rsplit("=", 1)
        try:
            n = int(number.strip())
        except ValueError:
            raise ValueError(f"[report] survey_numbers entry {entry!r}: NUMBER must be a whole number") from None
        if n < 0:
            raise ValueError(f"[report] survey_numbers entry {entry!r}: NUMBER must not be negative")
        out[serial.strip()] = n
    return out


def parse_band(text: Any) -> tuple[float, float]:
    """A compressed-thickness band: ``'50-60'`` -> ``(50.0, 60.0)`` (mm, inclusive)."""
    parts = str(text).replace("–", "-").split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{text!r} is not a thickness band: expected LOW-HIGH in mm, e.g. 50-60") from None
    if not (0 <= lo < hi):
        raise ValueError(f"thickness band {text!r}: LOW must be below HIGH")
    return lo, hi


def parse_national_drl(value: Any) -> float | None:
    """``[report] national_drl_mgy``: None when empty, else a positive number of mGy."""
    if value in ("", None):
        return None
    try:
        mgy = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"[report] national_drl_mgy must be a number of mGy, or empty, not {value!r}") from None
    if not (math.isfinite(mgy) and mgy > 0):
        raise ValueError(f"[report] national_drl_mgy must be positive, not {value!r}")
    return mgy


def parse_drl_views(items: Any) -> tuple[str, ...]:
    """The DRL standard set's view codes (``MLO``, ``CC``, ...), upper-case; at least one."""
    views = tuple(str(v).strip().upper() for v in items if str(v).strip())
    if not views:
        raise ValueError("[report] drl_views must name at least one view, e.g. MLO")
    for view in views:
        if not re.fullmatch(r"[A-Z0-9]+", view):
            raise ValueError(f"[report] drl_views entry {view!r} is not a view code such as MLO or CC")
    return views


def _patterns(items: Any) -> tuple[str, ...]:
    # the "re:" patterns are compiled by curation at ingest; a broken one would quarantine every file
    for item in items:
        if item.startswith("re:"):
            try:
                re.compile(item[3:])
            except re.error as exc:
                raise ValueError(
                    f"[curation] not_patient_patterns entry {item!r} is not a valid regular expression: {exc}"
                ) from None
    return tuple(items)


def _choice(*options: str, kind: Callable[[str], Any] = str) -> Callable[[Any], Any]:
    """One of ``options``, matched case-insensitively, as written in ``options``."""

    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # log_level may be a number
        for option in options:
            if value.upper() == option.upper():
                return kind(option)
        raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")

    return parse


# PS3.5 AE title: up to 16 characters of the default repertoire, no backslash or control character
_AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")


def _is_ae(value: str) -> bool:
    return bool(_AE_TITLE.fullmatch(value)) and bool(value.strip())


def _aet(value: str) -> str:
    if not _is_ae(value):
        raise ValueError(
            f"must be an AE title of 1 to 16 characters (no backslash or control character), not {value!r}"
        )
    return value


def _allow(titles: list) -> tuple[str, ...]:
    for title in titles:
        if not _is_ae(title):
            raise ValueError(
                f"holds {title!r}, which is not an AE title (1 to 16 characters, no backslash or control character)"
            )
    return tuple(titles)


def _not_empty(value: str) -> str:
    if not str(value).strip():
        raise ValueError("must not be empty")
    return value


# --- the settings ----------------------------------------------------------------------------


def _setting(
    default: Any,
    *,
    parse: Callable[[Any], Any] | None = None,
    types: tuple = (),
    within: tuple | None = None,
    below: float | None = None,
) -> Any:
    """A setting's field. ``default`` is as written in TOML; ``parse`` turns what was written into the
    field's value; ``types`` when the TOML value may be of another type than the default's;
    ``within`` inclusive bounds (None: open) and ``below`` an exclusive upper bound."""
    meta = {
        "raw": default,
        "parse": parse,
        "within": within,
        "below": below,
        "types": types or ((float,) if isinstance(default, float) else (type(default),)),
    }
    value = _typed(default, default, parse)
    if value.__hash__ is None:
        return field(default_factory=lambda: copy.deepcopy(value), metadata=meta)
    return field(default=value, metadata=meta)


def _typed(default: Any, value: Any, parse: Callable[[Any], Any] | None) -> Any:
    """A value as written (already of an accepted type) as the field holds it."""
    if parse is not None:
        return parse(value)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


@dataclass(frozen=True)
class TopLevel:
    """The keys outside any section; :class:`Settings` gives the paths derived from them."""

    # Where srdose keeps its database, secret, spool and quarantine.
    data_dir: str = _setting("~/.local/share/srdose", parse=_not_empty)
    # SQLAlchemy URL; empty means a SQLite file in data_dir.
    database_url: str = _setting("")
    # The key for patient pseudonyms (HMAC-SHA256); created on first run, mode 0600.
    site_secret: str = _setting("")
    # Datasets that could not be ingested, each with a .json reason beside it.
    quarantine_dir: str = _setting("")
    log_level: str | int = _setting(
        "INFO", types=(str, int), parse=_choice("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
    )


@dataclass(frozen=True)
class IngestSettings:
    """``[ingest]``."""

    # Files per database transaction: larger is faster, smaller loses less on a crash.
    batch_size: int = _setting(200, within=(1, 100_000))
    # Processes parsing files while one writes the database; 0: one per core.
    jobs: int = _setting(0, within=(0, 256))


@dataclass(frozen=True)
class ListenerSettings:
    """``[listener]``: the DICOM storage listener."""

    aet: str = _setting("SRDOSE", parse=_aet)
    port: int = _setting(11112, within=(1, 65535))
    host: str = _setting("0.0.0.0")
    # calling AE titles; empty allows any
    allow: tuple[str, ...] = _setting([], parse=_allow)
    spool_dir: str = _setting("")
    archive_dir: str = _setting("")
    # delete | keep | archive
    after_ingest: str = _setting("delete", parse=_choice("delete", "keep", "archive"))
    # 0: pynetdicom's default (16382); 0 also accepted from peers
    max_pdu: int = _setting(0, within=(0, None))
    max_associations: int = _setting(16, within=(1, None))
    acse_timeout: int = _setting(30, within=(1, None))
    dimse_timeout: int = _setting(30, within=(1, None))
    network_timeout: int = _setting(60, within=(1, None))
    tls_cert: str = _setting("")
    # needs tls_cert
    tls_key: str = _setting("")
    # client certificates signed by it required; needs tls_cert
    tls_ca: str = _setting("")
    # A dataset larger than this once decoded (MB; deflated ones inflate) is refused.
    max_dataset_mb: int = _setting(512, within=(1, None))
    # Seconds a new connection has to finish its TLS handshake and association request,
    # and how many connections may be waiting to do so (slow senders hold no slot).
    request_timeout: int = _setting(10, within=(1, None))
    max_pending: int = _setting(32, within=(1, 10000))


@dataclass(frozen=True)
class RecalcSettings:
    """``[recalc]``: the MGD recalculation."""

    # Flag an event whose recalculated MGD differs from the reported AGD by
    # more than this fraction (0.25: ratio outside 0.75-1.25).
    ratio_band: float = _setting(0.25, within=(0, None))
    # How far (kV) past a unit's measured kV range its output/HVL fits may
    # be used; further out the kV is clamped to range ± margin and flagged.
    kv_margin: float = _setting(1.0, within=(0, None))
    # Degree of the output and HVL fits against kV (per target/filter).
    fit_degree: int = _setting(2, within=(1, None))
    # "bundled", a factor-set CSV, or the name of a set used before.
    default_factor_set: str = _setting("bundled")
    # rdsr method, reference point at a height above the breast support
    # (Hologic, 4.2 cm): the support-to-detector gap is not in the RDSR.
    # Used, and flagged, only when the unit has no physics file giving it.
    rdsr_support_gap_mm: float = _setting(0.0, within=(0, None))
    # Siemens DBT: a "sweep" below this mAs is taken to report one
    # projection only (a reported quirk whose source could not be traced; docs/vendors.md) and flagged.
    dbt_min_sweep_mas: float = _setting(20.0, within=(0, None))
    # Every vendor: beyond this fraction between the kerma implied by the unit's
    # output x mAs and the RDSR's own kerma, the measured MGD is withheld
    # (inconsistent:k_vs_mas) and the rdsr method's kept.
    k_vs_mas_tolerance: float = _setting(0.30, within=(0, None))
    # The ratio band per method and maker ("METHOD[:MAKER]=FRACTION"; the most
    # specific wins, ratio_band otherwise). Defaults justified in
    # reports/mgd-validation.md: GE's own AGD leaves out c and s (~12 %).
    ratio_bands: tuple[tuple[str, float], ...] = _setting(
        ["rdsr=0.15", "rdsr:ge=0.25", "measured=0.20"], parse=parse_ratio_bands
    )
    # Reference point of the RDSR's entrance exposure per maker or model,
    # overriding srdose's evidence-based defaults (docs/vendors.md), e.g.
    # ["hologic=surface"] or ["selenia dimensions=42mm"] after a phantom check.
    reference_point: tuple[tuple[str, str], ...] = _setting([], parse=parse_reference_points)
    # Uncertainty budget (k = 1; the dossier gives the basis of each default).
    u_dosemeter: float = _setting(0.025, within=(0, None), below=10)
    u_rdsr_kerma: float = _setting(0.10, within=(0, None), below=10)
    u_thickness_mm: float = _setting(2.9, within=(0, None), below=10)
    u_hvl_measured_mm: float = _setting(0.02, within=(0, None), below=10)
    u_hvl_rdsr_mm: float = _setting(0.03, within=(0, None), below=10)
    # The listener recalculates the events it ingests, so that the database is always current.
    after_ingest: bool = _setting(True)
    # Processes reading and computing ranges of events while one writes the results
    # (srdose recalc over many events); 0: one per core on SQLite, none on PostgreSQL.
    jobs: int = _setting(0, within=(0, 256))


@dataclass(frozen=True)
class ReportSettings:
    """``[report]``."""

    # National survey numbers, "SERIAL=NUMBER" per unit (the 2D survey; the
    # DBT survey is NUMBER + 1). A unit not listed gets
    # 100000 + 2 * (CRC-32 of "manufacturer|model|serial" mod 450000):
    # even, six digits, the same on every run and machine.
    survey_numbers: dict[str, int] = _setting([], parse=parse_survey_numbers)  # noqa: RUF009  a field()
    # National DRL (mGy) for the DRL standard exposure set, and where the
    # value comes from (both shown in the report). Empty: none; srdose ships
    # no national value.
    national_drl_mgy: float | None = _setting("", types=(str, int, float), parse=parse_national_drl)
    national_drl_source: str = _setting("")
    # The DRL standard exposure set: views, compressed thickness band (mm,
    # inclusive), acquisition (2D | DBT) and dose (recalc | reported).
    drl_views: tuple[str, ...] = _setting(["MLO"], parse=parse_drl_views)
    drl_band_mm: tuple[float, float] = _setting("50-60", parse=parse_band)
    drl_acquisition: Acquisition = _setting(  # noqa: RUF009  a field()
        "2D", parse=_choice(*(a.value for a in Acquisition), kind=Acquisition)
    )
    drl_dose: str = _setting("recalc", parse=_choice("recalc", "reported"))
    # A room (unit) enters the DRL statistics with at least this many
    # exposures in the standard set.
    drl_min_events: int = _setting(20, within=(1, None))
    # Rows listed in an HTML table (the CSV/XLSX tables hold them all).
    max_listed: int = _setting(200, within=(0, None))


@dataclass(frozen=True)
class GovernanceSettings:
    """``[governance]``: pseudonymised data, research exports, retention."""

    # Ages are stored in completed years, in steps of this many years (1: whole years; 5: 50, 55,
    # ...): with the study date an exact age would give the birth date away.
    site_age_resolution_years: int = _setting(1, within=(1, 20))
    # Opted-out patients (srdose optout import) are always left out of research
    # exports and research reports; in clinical audit reports: include | exclude.
    optout_clinical_audit: str = _setting("include", parse=_choice("include", "exclude"))
    # Research export (srdose export research): dates shifted per patient by
    # ±1..N days (intervals kept); ages in bands of this many years (0: exact);
    # free-text columns written only if listed (protocol, label, study_description).
    research_date_shift_days: int = _setting(365, within=(0, None))
    research_age_band_years: int = _setting(5, within=(0, None))
    research_free_text: tuple[str, ...] = _setting([])
    # Keep studies this many days (by study date); `srdose purge` without
    # --before uses it. 0: no retention period configured.
    retention_days: int = _setting(0, within=(0, None))
    # AES-256 key file (hex, mode 0600, created if missing) for the encrypted
    # pseudonym -> patient ID mapping written at ingest; empty: no mapping kept.
    # Keep it outside the data directory and the database backups.
    reidentification_key_file: str = _setting("")


@dataclass(frozen=True)
class CurationSettings:
    """``[curation]``."""

    # Infeasible-value rules (CSV as srdose/curation/infeasible_rules.csv); empty: packaged table.
    infeasible_rules: str = _setting("")
    # A study whose patient ID or name holds one of these words (case-insensitive,
    # whole word; "re:" + a regular expression for anything else) is a test / QA
    # phantom study: marked not_patient at ingest and kept out of patient statistics.
    not_patient_patterns: tuple[str, ...] = _setting(["PHANTOM", "QA", "QC", "TEST", "DUMMY"], parse=_patterns)
    # Protocol-name mapping (CSV as srdose/curation/protocols.csv); empty: packaged table.
    protocol_map: str = _setting("")


@dataclass(frozen=True)
class WebSettings:
    """``[web]``: the web application (``srdose serve``)."""

    # Path prefix when served behind a reverse proxy under a sub-path (e.g. /srdose); empty: none.
    root_path: str = _setting("")
    # Believe the proxy's X-Forwarded-Proto / X-Forwarded-For: only when a proxy is in front.
    trust_proxy: bool = _setting(False)
    # A login lasts this long without use.
    session_minutes: int = _setting(480, within=(1, 100_000))
    # Wrong passwords in a row before an account is locked, and for how long.
    max_failed_logins: int = _setting(5, within=(1, 1000))
    lockout_minutes: int = _setting(15, within=(1, 100_000))
    # Where reports run from the browser are written; empty: <data_dir>/reports.
    reports_dir: str = _setting("")
    # Rows per page of the event list.
    page_size: int = _setting(50, within=(1, 10_000))
    # Seconds the overview, the filter's choices and each unit's charts are kept once computed
    # (each reads many events); 0: computed for every request.
    cache_seconds: int = _setting(60, within=(0, 3600))


@dataclass(frozen=True)
class AlertsSettings:
    """``[alerts]``: alert rules are evaluated by the web application and ``srdose alerts check``."""

    # SMTP server for the alert e-mails; empty: alerts are shown in the app only.
    smtp_host: str = _setting("")
    smtp_port: int = _setting(25, within=(1, 65535))
    # Upgrade the connection with STARTTLS before logging in.
    smtp_starttls: bool = _setting(False)
    # Log in as this user (empty: no login), with the password in this file (mode 0600).
    smtp_user: str = _setting("")
    smtp_password_file: str = _setting("")
    mail_from: str = _setting("srdose@localhost")
    # Who receives the alert e-mails.
    mail_to: tuple[str, ...] = _setting([])
    # The web application evaluates the rules this often.
    evaluate_minutes: int = _setting(15, within=(1, 100_000))


#: The sections, in the order ``srdose config`` prints them.
SECTIONS: dict[str, type] = {
    "ingest": IngestSettings,
    "listener": ListenerSettings,
    "recalc": RecalcSettings,
    "report": ReportSettings,
    "governance": GovernanceSettings,
    "curation": CurationSettings,
    "web": WebSettings,
    "alerts": AlertsSettings,
}


def _written(cls: type) -> dict[str, Any]:
    return {f.name: copy.deepcopy(f.metadata["raw"]) for f in fields(cls)}


#: Every setting's default as written in TOML (top-level keys, then one table per section).
DEFAULTS: dict[str, Any] = {**_written(TopLevel), **{name: _written(cls) for name, cls in SECTIONS.items()}}


def _merge(base: dict, extra: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if key not in base:
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(base))}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            out[key] = _merge(base[key], value, f"{where} [{key}]")
        else:
            out[key] = value
    return out


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(default: Any, text: str, name: str) -> Any:
    """An environment variable's text as the type of the setting's default."""
    try:
        if isinstance(default, bool):
            word = text.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")
            return word in _TRUE
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, list):
            return [p.strip() for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={text!r}: {exc}") from exc
    return text


def _env(cfg: dict, environ) -> dict:
    for key, default in cfg.items():
        if isinstance(default, dict):
            for sub in default:
                name = _env_name(key, sub)
                if name in environ:
                    default[sub] = _coerce(DEFAULTS[key][sub], environ[name], name)
        else:
            name = _env_name(key)
            if name in environ:
                cfg[key] = _coerce(DEFAULTS[key], environ[name], name)
    return cfg


def _env_name(key: str, sub: str | None = None) -> str:
    return f"SRDOSE_{key.upper()}__{sub.upper()}" if sub else f"SRDOSE_{key.upper()}"


# --- validation: a setting of the wrong type, out of range or unparsable is refused when loaded ---

_TYPE_WORDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list of strings",
}

#: Where a setting's value came from, for a message: ``origin(section, key)``.
Origin = Callable[[str, str], str]


def _type_ok(value: Any, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, tuple(t for t in types if t is not bool))


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "whole number", float: "number", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )
    return f"the {kind} {value!r}"


def _refuse(section: str, key: str, why: str, origin: Origin) -> ConfigError:
    name = f"[{section}] {key}" if section else key
    if why.startswith(name + " "):  # a parser's message names the setting itself
        why = why[len(name) + 1 :]
    return ConfigError(f"{name} {why} ({origin(section, key)})")


def _value(f: Field, value: Any, section: str, origin: Origin) -> Any:
    """One setting's value as written, checked, as its field holds it."""
    key, meta = f.name, f.metadata
    types = meta["types"]
    if not _type_ok(value, types):
        hint = ""
        if list in types and isinstance(value, str):
            hint = f', e.g. {key} = ["{value}"]: a string is not read as a list'
        raise _refuse(
            section, key, f"must be {' or '.join(_TYPE_WORDS[t] for t in types)}, not {_describe(value)}{hint}", origin
        )
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise _refuse(section, key, f"must be a list of strings; {_describe(item)} is not one", origin)
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(section, key, f"must be a finite number, not {value!r}", origin)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = meta["within"] or (None, None)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            within = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise _refuse(section, key, f"must be {within}, not {value!r}", origin)
        if meta["below"] is not None and value >= meta["below"]:
            raise _refuse(section, key, f"must be below {meta['below']}, not {value!r}", origin)
    try:
        return _typed(meta["raw"], value, meta["parse"])
    except ValueError as exc:
        raise _refuse(section, key, str(exc), origin) from None


def _build(cls: type, raw: dict, section: str, origin: Origin) -> Any:
    return cls(**{f.name: _value(f, raw[f.name], section, origin) for f in fields(cls)})


def _given(section: str, key: str) -> str:
    return "as given"


class Settings:
    """The settings in force: one typed section per table, and the paths derived from them.

    Parameters
    ----------
    values
        The merged settings as written (defaults, file, environment), shaped as :data:`DEFAULTS`;
        checked and parsed here (ConfigError).
    source
        The config file they came from, if any.
    origin
        Where a value came from, for the error messages.
    """

    ingest: IngestSettings
    listener: ListenerSettings
    recalc: RecalcSettings
    report: ReportSettings
    governance: GovernanceSettings
    curation: CurationSettings
    web: WebSettings
    alerts: AlertsSettings

    def __init__(self, values: dict, source: Path | None = None, origin: Origin = _given):
        self.values = values  # as written: what `srdose config` prints
        self.source = source
        self._origin = origin
        self._top: TopLevel = _build(TopLevel, values, "", origin)
        for name, cls in SECTIONS.items():
            setattr(self, name, _build(cls, values[name], name, origin))
        for key in ("tls_key", "tls_ca"):
            if getattr(self.listener, key) and not self.listener.tls_cert:
                raise _refuse(
                    "listener",
                    key,
                    "is set without tls_cert: DICOM TLS needs the listener's "
                    "certificate, and without it srdose would listen in plain TCP",
                    origin,
                )
        if self.report.national_drl_mgy is not None and not self.report.national_drl_source.strip():
            raise _refuse(
                "report",
                "national_drl_mgy",
                "is set without national_drl_source: cite where the value comes from",
                origin,
            )

    def with_overrides(self, section: str, changes: dict, where: str = "on the command line") -> Any:
        """Section ``section`` with ``changes`` (values as a TOML file would hold them), checked as the
        file's values are; ConfigError names the setting and ``where`` for a changed one."""
        raw = {**self.values[section], **changes}

        def origin(sec: str, key: str) -> str:
            return where if key in changes else self._origin(sec, key)

        return _build(SECTIONS[section], raw, section, origin)

    @property
    def log_level(self) -> str | int:
        return self._top.log_level

    @property
    def data_dir(self) -> Path:
        return Path(self._top.data_dir).expanduser()

    def _path(self, value: str, default: str) -> Path:
        return Path(value).expanduser() if value else self.data_dir / default

    @property
    def database_url(self) -> str:
        return self._top.database_url or f"sqlite:///{self.data_dir / 'srdose.sqlite'}"

    @property
    def site_secret_path(self) -> Path:
        return self._path(self._top.site_secret, "site-secret.key")

    @property
    def quarantine_dir(self) -> Path:
        return self._path(self._top.quarantine_dir, "quarantine")

    @property
    def spool_dir(self) -> Path:
        return self._path(self.listener.spool_dir, "spool")

    @property
    def archive_dir(self) -> Path:
        return self._path(self.listener.archive_dir, "archive")


def find_config_file(explicit: str | None, environ=None) -> Path | None:
    environ = os.environ if environ is None else environ
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if environ.get("SRDOSE_CONFIG"):
        path = Path(environ["SRDOSE_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"SRDOSE_CONFIG points to {path}, which does not exist")
        return path
    for candidate in (Path("srdose.toml"), Path("~/.config/srdose/srdose.toml").expanduser()):
        if candidate.is_file():
            return candidate
    return None


def load(explicit: str | None = None, environ=None) -> Settings:
    """Load the settings: defaults, then the TOML file, then the environment; ConfigError when a
    setting is unknown, of the wrong type, out of range or cannot be parsed."""
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit, environ)
    values = copy.deepcopy(DEFAULTS)
    from_file: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                from_file = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        values = _merge(values, from_file, str(path))
    values = _env(values, environ)

    def origin(section: str, key: str) -> str:
        name = _env_name(section or key, key if section else None)
        if name in environ:
            return f"environment variable {name}"
        if key in (from_file.get(section, {}) if section else from_file):
            return f"in {path}"
        return "the default"

    return Settings(values, path, origin)
