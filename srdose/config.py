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
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULTS: dict[str, Any] = {
    # Where srdose keeps its database, secret, spool and quarantine.
    "data_dir": "~/.local/share/srdose",
    # SQLAlchemy URL; empty means a SQLite file in data_dir.
    "database_url": "",
    # The key for patient pseudonyms (HMAC-SHA256); created on first run, mode 0600.
    "site_secret": "",
    # Datasets that could not be ingested, each with a .json reason beside it.
    "quarantine_dir": "",
    "log_level": "INFO",
    "ingest": {
        # Files per database transaction: larger is faster, smaller loses less on a crash.
        "batch_size": 200,
    },
    "listener": {
        "aet": "SRDOSE",
        "port": 11112,
        "host": "0.0.0.0",
        "allow": [],  # calling AE titles; empty allows any
        "spool_dir": "",
        "archive_dir": "",
        "after_ingest": "delete",  # delete | keep | archive
        "max_pdu": 0,  # 0: pynetdicom's default (16382); 0 also accepted from peers
        "max_associations": 16,
        "acse_timeout": 30,
        "dimse_timeout": 30,
        "network_timeout": 60,
        "tls_cert": "",
        "tls_key": "",  # needs tls_cert
        "tls_ca": "",  # client certificates signed by it required; needs tls_cert
        # A dataset larger than this once decoded (MB; deflated ones inflate) is refused.
        "max_dataset_mb": 512,
        # Seconds a new connection has to finish its TLS handshake and association request,
        # and how many connections may be waiting to do so (slow senders hold no slot).
        "request_timeout": 10,
        "max_pending": 32,
    },
    "recalc": {
        # Flag an event whose recalculated MGD differs from the reported AGD by
        # more than this fraction (0.25: ratio outside 0.75-1.25).
        "ratio_band": 0.25,
        # How far (kV) past a unit's measured kV range its output/HVL fits may
        # be used; further out the kV is clamped to range ± margin and flagged.
        "kv_margin": 1.0,
        # Degree of the output and HVL fits against kV (per target/filter).
        "fit_degree": 2,
        # "bundled", a factor-set CSV, or the name of a set used before.
        "default_factor_set": "bundled",
        # rdsr method, reference point at a height above the breast support
        # (Hologic, 4.2 cm): the support-to-detector gap is not in the RDSR.
        # Used, and flagged, only when the unit has no physics file giving it.
        "rdsr_support_gap_mm": 0.0,
        # Siemens DBT: a "sweep" below this mAs is taken to report one
        # projection only (a reported quirk whose source could not be traced; docs/vendors.md) and flagged.
        "dbt_min_sweep_mas": 20.0,
        # Every vendor: beyond this fraction between the kerma implied by the unit's
        # output x mAs and the RDSR's own kerma, the measured MGD is withheld
        # (inconsistent:k_vs_mas) and the rdsr method's kept.
        "k_vs_mas_tolerance": 0.30,
        # The ratio band per method and maker ("METHOD[:MAKER]=FRACTION"; the most
        # specific wins, ratio_band otherwise). Defaults justified in
        # reports/mgd-validation.md: GE's own AGD leaves out c and s (~12 %).
        "ratio_bands": ["rdsr=0.15", "rdsr:ge=0.25", "measured=0.20"],
        # Reference point of the RDSR's entrance exposure per maker or model,
        # overriding srdose's evidence-based defaults (docs/vendors.md), e.g.
        # ["hologic=surface"] or ["selenia dimensions=42mm"] after a phantom check.
        "reference_point": [],
        # Uncertainty budget (k = 1; the dossier gives the basis of each default).
        "u_dosemeter": 0.025,
        "u_rdsr_kerma": 0.10,
        "u_thickness_mm": 2.9,
        "u_hvl_measured_mm": 0.02,
        "u_hvl_rdsr_mm": 0.03,
        # The listener recalculates the events it ingests, so that the database is always current.
        "after_ingest": True,
    },
    "report": {
        # National survey numbers, "SERIAL=NUMBER" per unit (the 2D survey; the
        # DBT survey is NUMBER + 1). A unit not listed gets
        # 100000 + 2 * (CRC-32 of "manufacturer|model|serial" mod 450000):
        # even, six digits, the same on every run and machine.
        "survey_numbers": [],
        # National DRL (mGy) for the DRL standard exposure set, and where the
        # value comes from (both shown in the report). Empty: none; srdose ships
        # no national value.
        "national_drl_mgy": "",
        "national_drl_source": "",
        # The DRL standard exposure set: views, compressed thickness band (mm,
        # inclusive), acquisition (2D | DBT) and dose (recalc | reported).
        "drl_views": ["MLO"],
        "drl_band_mm": "50-60",
        "drl_acquisition": "2D",
        "drl_dose": "recalc",
        # A room (unit) enters the DRL statistics with at least this many
        # exposures in the standard set.
        "drl_min_events": 20,
        # Rows listed in an HTML table (the CSV/XLSX tables hold them all).
        "max_listed": 200,
    },
    "governance": {
        # Ages are stored in completed years, in steps of this many years (1: whole years; 5: 50, 55,
        # ...): with the study date an exact age would give the birth date away.
        "site_age_resolution_years": 1,
        # Opted-out patients (srdose optout import) are always left out of research
        # exports and research reports; in clinical audit reports: include | exclude.
        "optout_clinical_audit": "include",
        # Research export (srdose export research): dates shifted per patient by
        # ±1..N days (intervals kept); ages in bands of this many years (0: exact);
        # free-text columns written only if listed (protocol, label, study_description).
        "research_date_shift_days": 365,
        "research_age_band_years": 5,
        "research_free_text": [],
        # Keep studies this many days (by study date); `srdose purge` without
        # --before uses it. 0: no retention period configured.
        "retention_days": 0,
        # AES-256 key file (hex, mode 0600, created if missing) for the encrypted
        # pseudonym -> patient ID mapping written at ingest; empty: no mapping kept.
        # Keep it outside the data directory and the database backups.
        "reidentification_key_file": "",
    },
    "curation": {
        # Infeasible-value rules (CSV as srdose/curation/infeasible_rules.csv); empty: packaged table.
        "infeasible_rules": "",
        # A study whose patient ID or name holds one of these words (case-insensitive,
        # whole word; "re:" + a regular expression for anything else) is a test / QA
        # phantom study: marked not_patient at ingest and kept out of patient statistics.
        "not_patient_patterns": ["PHANTOM", "QA", "QC", "TEST", "DUMMY"],
        # Protocol-name mapping (CSV as srdose/curation/protocols.csv); empty: packaged table.
        "protocol_map": "",
    },
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


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
            for sub, subdefault in default.items():
                name = _env_name(key, sub)
                if name in environ:
                    default[sub] = _coerce(DEFAULTS[key][sub], environ[name], name)
        else:
            name = _env_name(key)
            if name in environ:
                cfg[key] = _coerce(DEFAULTS[key], environ[name], name)
    return cfg


def _env_name(key: str, sub: Optional[str] = None) -> str:
    return f"SRDOSE_{key.upper()}__{sub.upper()}" if sub else f"SRDOSE_{key.upper()}"


# --- validation: a setting of the wrong type or out of range is refused when loaded ----------

#: Settings whose value may be of another type than their default's.
_TYPES: dict[tuple[str, str], tuple] = {
    ("", "log_level"): (str, int),
    ("report", "national_drl_mgy"): (str, int, float),  # empty, or a number of mGy
}
#: Allowed values.
_CHOICES: dict[tuple[str, str], tuple] = {
    ("", "log_level"): ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"),
    ("listener", "after_ingest"): ("delete", "keep", "archive"),
    ("governance", "optout_clinical_audit"): ("include", "exclude"),
}
#: Inclusive bounds (None: open).
_RANGES: dict[tuple[str, str], tuple] = {
    ("ingest", "batch_size"): (1, 100_000),
    ("listener", "port"): (1, 65535),
    ("listener", "max_pdu"): (0, None),
    ("listener", "max_associations"): (1, None),
    ("listener", "acse_timeout"): (1, None),
    ("listener", "dimse_timeout"): (1, None),
    ("listener", "network_timeout"): (1, None),
    ("listener", "max_dataset_mb"): (1, None),
    ("listener", "request_timeout"): (1, None),
    ("listener", "max_pending"): (1, 10000),
    ("recalc", "ratio_band"): (0, None),
    ("recalc", "kv_margin"): (0, None),
    ("recalc", "fit_degree"): (1, None),
    ("recalc", "rdsr_support_gap_mm"): (0, None),
    ("recalc", "dbt_min_sweep_mas"): (0, None),
    ("recalc", "k_vs_mas_tolerance"): (0, None),
    ("recalc", "u_dosemeter"): (0, None),
    ("recalc", "u_rdsr_kerma"): (0, None),
    ("recalc", "u_thickness_mm"): (0, None),
    ("recalc", "u_hvl_measured_mm"): (0, None),
    ("recalc", "u_hvl_rdsr_mm"): (0, None),
    ("report", "drl_min_events"): (1, None),
    ("report", "max_listed"): (0, None),
    ("governance", "site_age_resolution_years"): (1, 20),
    ("governance", "research_date_shift_days"): (0, None),
    ("governance", "research_age_band_years"): (0, None),
    ("governance", "retention_days"): (0, None),
}
_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
               list: "a list of strings"}
# PS3.5 AE title: up to 16 characters of the default repertoire, no backslash or control character
_AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")


def _type_ok(value: Any, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, tuple(t for t in types if t is not bool))


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "whole number", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)
    return f"the {kind} {value!r}"


def _check_ae(value: str) -> bool:
    return bool(_AE_TITLE.fullmatch(value)) and bool(value.strip())


def _validate(values: dict, origin) -> None:
    """Refuse what the settings cannot mean: ConfigError naming ``[section] key`` and where it was set."""

    def bad(section: str, key: str, why: str):
        name = f"[{section}] {key}" if section else key
        raise ConfigError(f"{name} {why} ({origin(section, key)})")

    for section, key, default, value in _walk(DEFAULTS, values):
        types = _TYPES.get((section, key)) or ((float,) if isinstance(default, float) else (type(default),))
        if not _type_ok(value, types):
            hint = ""
            if list in types and isinstance(value, str):
                hint = f', e.g. {key} = ["{value}"]: a string is not read as a list'
            bad(section, key, f"must be {' or '.join(_TYPE_WORDS[t] for t in types)}, not {_describe(value)}{hint}")
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, str):
                    bad(section, key, f"must be a list of strings; {_describe(item)} is not one")
        if isinstance(value, float) and not math.isfinite(value):
            bad(section, key, f"must be a finite number, not {value!r}")
        choices = _CHOICES.get((section, key))
        if choices and isinstance(value, str) and value.upper() not in {c.upper() for c in choices}:
            bad(section, key, f"must be one of {', '.join(choices)}, not {value!r}")
        bounds = _RANGES.get((section, key))
        if bounds and isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = bounds
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                within = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
                bad(section, key, f"must be {within}, not {value!r}")
    if not str(values["data_dir"]).strip():
        bad("", "data_dir", "must not be empty")
    listener = values["listener"]
    if not _check_ae(listener["aet"]):
        bad("listener", "aet", f"must be an AE title of 1 to 16 characters (no backslash or control "
                               f"character), not {listener['aet']!r}")
    for title in listener["allow"]:
        if not _check_ae(title):
            bad("listener", "allow", f"holds {title!r}, which is not an AE title (1 to 16 characters, no "
                                     "backslash or control character)")
    for key in ("tls_key", "tls_ca"):
        if listener[key] and not listener["tls_cert"]:
            bad("listener", key, "is set without tls_cert: DICOM TLS needs the listener's certificate, and "
                                 "without it srdose would listen in plain TCP")


def _walk(defaults: dict, values: dict, section: str = ""):
    for key, default in defaults.items():
        if isinstance(default, dict):
            yield from _walk(default, values[key], key)
        else:
            yield section, key, default, values[key]


def find_config_file(explicit: Optional[str], environ=None) -> Optional[Path]:
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


class Settings:
    """The settings in force, with derived paths.

    Parameters
    ----------
    values
        The merged settings (defaults, file, environment).
    source
        The config file they came from, if any.
    """

    def __init__(self, values: dict, source: Optional[Path] = None):
        self.values = values
        self.source = source

    def __getitem__(self, key):
        return self.values[key]

    @property
    def data_dir(self) -> Path:
        return Path(self.values["data_dir"]).expanduser()

    def _path(self, key: str, default: str, section: Optional[str] = None) -> Path:
        value = (self.values[section] if section else self.values)[key]
        return Path(value).expanduser() if value else self.data_dir / default

    @property
    def database_url(self) -> str:
        return self.values["database_url"] or f"sqlite:///{self.data_dir / 'srdose.sqlite'}"

    @property
    def site_secret_path(self) -> Path:
        return self._path("site_secret", "site-secret.key")

    @property
    def quarantine_dir(self) -> Path:
        return self._path("quarantine_dir", "quarantine")

    @property
    def spool_dir(self) -> Path:
        return self._path("spool_dir", "spool", "listener")

    @property
    def archive_dir(self) -> Path:
        return self._path("archive_dir", "archive", "listener")


def load(explicit: Optional[str] = None, environ=None) -> Settings:
    """Load the settings: defaults, then the TOML file, then the environment; ConfigError when a
    setting is unknown, of the wrong type or out of range."""
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

    _validate(values, origin)
    return Settings(values, path)
