"""One TOML file, environment variables over it."""

import pytest

from srdose.config import ConfigError, load


def test_defaults_file_and_environment(tmp_path):
    cfg = tmp_path / "srdose.toml"
    cfg.write_text('data_dir = "/srv/srdose"\n[listener]\nport = 4242\nallow = ["MAMMO1"]\n')
    s = load(str(cfg), environ={})
    assert s.data_dir.as_posix() == "/srv/srdose"
    assert s.database_url == "sqlite:////srv/srdose/srdose.sqlite"
    assert s["listener"]["port"] == 4242 and s["listener"]["allow"] == ["MAMMO1"]
    s = load(str(cfg), environ={"SRDOSE_LISTENER__PORT": "11113", "SRDOSE_DATABASE_URL": "postgresql://x/y"})
    assert s["listener"]["port"] == 11113
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
