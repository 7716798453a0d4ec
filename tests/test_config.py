"""Configuration: defaults, file, environment and flags in that order; clear one-line errors; init's output."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from plyrd import keys
from plyrd.config import OPTIONS, ConfigError, example_toml, load_config, read_toml

ROOT = Path(__file__).parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg.host == "127.0.0.1" and cfg.port == 8000
    assert cfg.data_dir == tmp_path / "plyrd-data"
    assert cfg.source is None
    assert cfg.public_url == "http://127.0.0.1:8000"
    assert cfg["storage.max_upload_mb"] == 1536
    assert not cfg.secure_cookies


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[server]\nport = 9001\nhost = "0.0.0.0"\n[log]\nlevel = "debug"\n')
    cfg = load_config(path, env={"PLYRD_SERVER_PORT": "9002"}, overrides={"server.host": "::1"})
    assert cfg.port == 9002  # env beats file
    assert cfg.host == "::1"  # flag beats file
    assert cfg["log.level"] == "debug"  # file beats default
    assert cfg.public_url == "http://[::1]:9002"


def test_env_types_and_lists(tmp_path: Path) -> None:
    cfg = load_config(env={
        "PLYRD_DATA": str(tmp_path / "d"),
        "PLYRD_SERVER_BEHIND_PROXY": "yes",
        "PLYRD_SERVER_GRACEFUL_TIMEOUT": "2.5",
        "PLYRD_AUTH_ADMINS": "did:plc:abc, label.example.com",
    })
    assert cfg.data_dir == tmp_path / "d"
    assert cfg["server.behind_proxy"] is True
    assert cfg["server.graceful_timeout"] == 2.5
    assert cfg["auth.admins"] == ["did:plc:abc", "label.example.com"]


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PLYRD_SERVER_PORT"):
        load_config(env={"PLYRD_SERVER_PORT": "eighty"})


def test_config_in_data_dir_is_read_implicitly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write(data / "config.toml", "[server]\nport = 9100\n")
    cfg = load_config(env={"PLYRD_DATA": str(data)})
    assert cfg.port == 9100 and cfg.source == data / "config.toml"


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc" / "plyrd.toml", '[storage]\ndata_dir = "../music"\n')
    assert load_config(path, env={}).data_dir == tmp_path / "music"


@pytest.mark.parametrize(("text", "message"), [
    ("[server]\nprot = 1\n", "unknown key server.prot"),
    ("[sever]\nport = 1\n", "unknown section [sever]"),
    ('[server]\nport = "80"\n', "server.port must be a whole number"),
    ("[server]\nbehind_proxy = 1\n", "server.behind_proxy must be true or false"),
    ("[auth]\nadmins = [1, 2]\n", "auth.admins must be a list of strings"),
    ('[log]\nlevel = "loud"\n', "log.level must be one of debug, info, warning, error"),
    ("[server]\nport = 70000\n", "server.port must be a port number"),
    ('[server]\npublic_url = "music.example.com"\n', "server.public_url must be an http(s) URL"),
    ('[server]\npublic_url = "https://x.example/app"\n', "without a path"),
    ("[server\nport = 1\n", "not valid TOML"),
    ("server = 1\n", "server must be a [section] table"),
])
def test_broken_config_names_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml", env={})


def test_example_file_documents_every_option_with_its_default() -> None:
    committed = (ROOT / "config.example.toml").read_text()
    assert committed == example_toml(), "config.example.toml is stale: regenerate it from plyrd.config.example_toml()"
    values = read_toml(ROOT / "config.example.toml")
    assert set(values) == {o.name for o in OPTIONS}
    for opt in OPTIONS:
        assert values[opt.name] == opt.default
        assert opt.help.splitlines()[0] in committed


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    cfg = load_config(env={"PLYRD_DATA": str(tmp_path)})
    first = keys.resolve(cfg)
    path = tmp_path / "secrets.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.resolve(cfg) == first
    for name, value in first.items():
        assert keys.check(name, value) is None


def test_secret_from_environment_wins_and_bad_secret_is_refused(tmp_path: Path) -> None:
    fresh = keys.generate()
    cfg = load_config(env={"PLYRD_DATA": str(tmp_path), "PLYRD_SECRETS_COOKIE_KEY": fresh["cookie_key"]})
    assert keys.resolve(cfg)["cookie_key"] == fresh["cookie_key"]
    bad = load_config(env={"PLYRD_DATA": str(tmp_path), "PLYRD_SECRETS_TOKEN_KEY": "c2hvcnQ="})
    with pytest.raises(ConfigError, match=r"secrets\.token_key must decode to 32 bytes"):
        keys.resolve(bad)
