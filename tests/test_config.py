"""One TOML file, environment variables over it."""

import dataclasses

import pytest

from srdose.config import (
    DEFAULTS,
    ConfigError,
    CurationSettings,
    GovernanceSettings,
    IngestSettings,
    ListenerSettings,
    RecalcSettings,
    ReportSettings,
    load,
)


def test_defaults_file_and_environment(tmp_path):
    cfg = tmp_path / "srdose.toml"
    cfg.write_text('data_dir = "/srv/srdose"\n[listener]\nport = 4242\nallow = ["MAMMO1"]\n')
    s = load(str(cfg), environ={})
    assert s.data_dir.as_posix() == "/srv/srdose"
    assert s.database_url == "sqlite:////srv/srdose/srdose.sqlite"
    assert s.listener.port == 4242 and s.listener.allow == ("MAMMO1",)
    s = load(str(cfg), environ={"SRDOSE_LISTENER__PORT": "11113", "SRDOSE_DATABASE_URL": "postgresql://x/y"})
    assert s.listener.port == 11113
    assert s.database_url == "postgresql://x/y"


def test_mistakes_are_reported_clearly(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('data_dri = "/x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'data_dri'"):
        load(str(cfg), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load(str(tmp_path / "missing.toml"), environ={})
    with pytest.raises(ConfigError, match="SRDOSE_LISTENER__PORT"):
        load(None, environ={"SRDOSE_LISTENER__PORT": "eleven"})


def test_site_secret_is_private(tmp_path):
    import stat

    from srdose.pseudonym import load_or_create_secret

    path = tmp_path / "k" / "site-secret.key"
    secret = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == secret
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_secret(path)


# --- typed sections; values with structure parsed and checked when loaded ----------------------

STRUCTURED = [
    ('[recalc]\nratio_bands = ["rdsr=lots"]\n', "[recalc] ratio_bands", "SRDOSE_RECALC__RATIO_BANDS", "rdsr=lots"),
    (
        '[recalc]\nratio_bands = ["sideways=0.1"]\n',
        "[recalc] ratio_bands",
        "SRDOSE_RECALC__RATIO_BANDS",
        "sideways=0.1",
    ),
    (
        '[recalc]\nreference_point = ["hologic=sideways"]\n',
        "[recalc] reference_point",
        "SRDOSE_RECALC__REFERENCE_POINT",
        "hologic=sideways",
    ),
    ("[recalc]\nu_dosemeter = 10\n", "[recalc] u_dosemeter", "SRDOSE_RECALC__U_DOSEMETER", "10"),
    ('[report]\nsurvey_numbers = ["X"]\n', "[report] survey_numbers", "SRDOSE_REPORT__SURVEY_NUMBERS", "X"),
    ('[report]\ndrl_band_mm = "sixty"\n', "[report] drl_band_mm", "SRDOSE_REPORT__DRL_BAND_MM", "sixty"),
    ('[report]\ndrl_band_mm = "60-50"\n', "[report] drl_band_mm", "SRDOSE_REPORT__DRL_BAND_MM", "60-50"),
    ('[report]\nnational_drl_mgy = "abc"\n', "[report] national_drl_mgy", "SRDOSE_REPORT__NATIONAL_DRL_MGY", "abc"),
    ("[report]\nnational_drl_mgy = 2.5\n", "[report] national_drl_mgy", "SRDOSE_REPORT__NATIONAL_DRL_MGY", "2.5"),
    ("[report]\ndrl_views = []\n", "[report] drl_views", "SRDOSE_REPORT__DRL_VIEWS", " , "),
    ('[report]\ndrl_views = ["M L O"]\n', "[report] drl_views", "SRDOSE_REPORT__DRL_VIEWS", "M L O"),
    ('[report]\ndrl_acquisition = "3D"\n', "[report] drl_acquisition", "SRDOSE_REPORT__DRL_ACQUISITION", "3D"),
    ('[report]\ndrl_dose = "measured"\n', "[report] drl_dose", "SRDOSE_REPORT__DRL_DOSE", "measured"),
    (
        '[curation]\nnot_patient_patterns = ["re:("]\n',
        "[curation] not_patient_patterns",
        "SRDOSE_CURATION__NOT_PATIENT_PATTERNS",
        "re:(",
    ),
]


@pytest.mark.parametrize("text, named, variable, env_value", STRUCTURED)
def test_values_with_structure_are_refused_when_loaded(tmp_path, text, named, variable, env_value):
    cfg = tmp_path / "srdose.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(str(cfg), environ={})
    assert str(err.value).startswith(named + " ") and f"(in {cfg})" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(None, environ={variable: env_value})
    assert str(err.value).startswith(named + " ") and f"(environment variable {variable})" in str(err.value)


def test_typed_sections_hold_the_documented_defaults():
    s = load(None, environ={})
    assert s.recalc.ratio_band == 0.25 and isinstance(s.recalc.ratio_band, float)
    assert s.recalc.ratio_bands == (("rdsr", 0.15), ("rdsr:ge", 0.25), ("measured", 0.20))
    assert s.recalc.reference_point == () and s.recalc.after_ingest is True
    assert s.ingest.batch_size == 200 and s.listener.port == 11112 and s.listener.allow == ()
    assert s.report.drl_band_mm == (50.0, 60.0) and s.report.drl_views == ("MLO",)
    assert s.report.national_drl_mgy is None and s.report.survey_numbers == {}
    assert s.report.drl_acquisition == "2D" and s.report.drl_dose == "recalc"
    assert s.governance.optout_clinical_audit == "include" and s.governance.retention_days == 0
    assert s.curation.not_patient_patterns == ("PHANTOM", "QA", "QC", "TEST", "DUMMY")
    assert s.log_level == "INFO" and s.spool_dir == s.data_dir / "spool"
    # the dataclasses' defaults are the documented ones, and DEFAULTS (as written in TOML) comes from them
    assert (s.ingest, s.listener, s.recalc, s.report, s.governance, s.curation) == (
        IngestSettings(),
        ListenerSettings(),
        RecalcSettings(),
        ReportSettings(),
        GovernanceSettings(),
        CurationSettings(),
    )
    assert DEFAULTS["recalc"]["ratio_bands"] == ["rdsr=0.15", "rdsr:ge=0.25", "measured=0.20"]
    assert DEFAULTS["report"]["drl_band_mm"] == "50-60" and DEFAULTS["recalc"]["ratio_band"] == 0.25
    assert list(DEFAULTS) == [
        "data_dir",
        "database_url",
        "site_secret",
        "quarantine_dir",
        "log_level",
        "ingest",
        "listener",
        "recalc",
        "report",
        "governance",
        "curation",
        "web",
        "alerts",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.recalc.ratio_band = 0.5


def test_values_with_structure_are_parsed(tmp_path):
    cfg = tmp_path / "srdose.toml"
    cfg.write_text(
        '[recalc]\nratio_band = 1\nratio_bands = ["Measured:Hologic = 0.1"]\n'
        'reference_point = ["Selenia Dimensions=42 mm"]\n'
        '[report]\nsurvey_numbers = ["SN-1=4100"]\nnational_drl_mgy = 2\nnational_drl_source = "ref"\n'
        'drl_views = ["mlo", "cc"]\ndrl_band_mm = "45–65"\ndrl_acquisition = "dbt"\n'
    )
    s = load(str(cfg), environ={})
    assert s.recalc.ratio_band == 1.0 and s.recalc.ratio_bands == (("measured:hologic", 0.1),)
    assert s.recalc.reference_point == (("selenia dimensions", "42mm"),)
    assert s.report.survey_numbers == {"SN-1": 4100} and s.report.national_drl_mgy == 2.0
    assert s.report.drl_views == ("MLO", "CC") and s.report.drl_band_mm == (45.0, 65.0)
    assert s.report.drl_acquisition == "DBT"
    # as written, for `srdose config`
    assert s.values["report"]["drl_views"] == ["mlo", "cc"] and s.values["recalc"]["ratio_band"] == 1


def test_environment_overrides_a_list_and_a_bool():
    s = load(
        None,
        environ={
            "SRDOSE_LISTENER__ALLOW": "MAMMO1, PACS",
            "SRDOSE_RECALC__AFTER_INGEST": "off",
            "SRDOSE_RECALC__RATIO_BANDS": "rdsr=0.1, measured:ge=0.3",
        },
    )
    assert s.listener.allow == ("MAMMO1", "PACS") and s.values["listener"]["allow"] == ["MAMMO1", "PACS"]
    assert s.recalc.after_ingest is False
    assert s.recalc.ratio_bands == (("rdsr", 0.1), ("measured:ge", 0.3))


def test_command_line_overrides_are_checked_as_the_file_is():
    s = load(None, environ={"SRDOSE_LISTENER__PORT": "11113"})
    listener = s.with_overrides("listener", {"aet": "MAMMO_QA", "allow": ["PACS"]})
    assert listener.aet == "MAMMO_QA" and listener.allow == ("PACS",) and listener.port == 11113
    with pytest.raises(ConfigError, match=r"^\[listener\] aet .*on the command line"):
        s.with_overrides("listener", {"aet": "A" * 17})
    with pytest.raises(ConfigError, match=r"^\[listener\] max_pending .*on the command line"):
        s.with_overrides("listener", {"max_pending": 0})
