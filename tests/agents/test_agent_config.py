"""The agent's config file and key files: strict, and every error names the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_testkit import Workspace, write_secret

from agents import ConfigError, FileKeySource, load_config
from agents._config import DEFAULT_BATCH_SIZE, DateField, LookupField, MapField
from agents.cli import main


def test_config_loads_with_paths_relative_to_its_folder(workspace: Workspace) -> None:
    """Relative paths resolve against the config's folder, whatever the working directory."""
    config = load_config(workspace.config)
    root = workspace.root.resolve()
    assert config.agent.state_dir == root / "state"
    assert config.keys.linkage_key == root / "keys" / "linkage.key"
    assert config.source.path == root / "data" / "ed_visits.csv"
    assert config.gateway.server_name == "localhost"
    assert config.gateway.retries == 3
    event = config.field("event_date")
    assert isinstance(event, DateField)
    assert (event.column, event.format) == ("arrival_time", "%Y-%m-%d %H:%M")
    sex = config.field("sex")
    assert isinstance(sex, MapField)
    assert dict(sex.mapping) == {"F": "F", "M": "M", "U": "X", "": "X"}
    assert isinstance(config.field("district"), LookupField)


def test_only_mapped_columns_are_read(workspace: Workspace) -> None:
    """The columns the agent reads are exactly those some field maps; names and notes are not among them."""
    columns = load_config(workspace.config).source_columns()
    assert set(columns) == {
        "patient_national_id",
        "arrival_time",
        "date_of_birth",
        "sex",
        "home_postcode",
        "triage_code",
        "departure_time",
    }


def _edit(workspace: Workspace, old: str, new: str) -> None:
    text = workspace.config.read_text()
    assert old in text
    workspace.config.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("batch_size = 1000", "batch_size = 1000\ncolour = 3", r"agent\.colour: unknown key"),
        ("retries = 3", "retries = 3\nretry = 4", r"gateway\.retry: unknown key"),
        ('column = "sex"', 'column = "sex"\ncolumns = ["x"]', r"fields\.sex\.columns: unknown key"),
        ("batch_size = 1000", "batch_size = 0", r"agent\.batch_size: must be a whole number from 1 to 20000"),
        ("batch_size = 1000", 'batch_size = "many"', r"agent\.batch_size: must be a whole number"),
        ('agency = "health"', 'agency = "Health Dept"', r"agent\.agency: must be lower-case"),
        ('signing_key_id = "health-1"\n', "", r"keys\.signing_key_id: is required"),
        ('type = "csv"', 'type = "excel"', r"source\.type: must be one of: csv"),
        ('encoding = "utf-8"', 'encoding = "utf-9"', r"source\.encoding: is not a text encoding"),
        ('delimiter = ","', 'delimiter = ",,"', r"source\.delimiter: must be one character"),
        (
            'format = "%Y-%m-%d"',
            'format = "no date here"',
            r"fields\.age_band\.format: must be a strptime format with the year, month and day",
        ),
        ('transform = "pseudonymise"', 'transform = "hash"', r"fields\.subject\.transform: must be one of"),
        ('transform = "age_band"', 'transform = "pseudonymise"', r"fields\.age_band\.transform: the subject"),
        ("timeout_s = 5", "timeout_s = -1", r"gateway\.timeout_s: must be a number"),
        ('["arrival_time", "departure_time"]', '["arrival_time"]', r"must list exactly 2 columns"),
        ("[fields.subject]", "[fields.subjects]", r"fields\.subjects\.transform: the subject field"),
    ],
)
def test_bad_settings_name_file_and_key(workspace: Workspace, old: str, new: str, message: str) -> None:
    """Unknown keys, wrong types and out-of-range values are ConfigErrors naming the file and key."""
    _edit(workspace, old, new)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(workspace.config)
    assert str(caught.value).startswith(str(workspace.config.resolve()))


def test_batch_size_defaults_to_10000_records(workspace: Workspace) -> None:
    """A config without batch_size seals batches of 10,000 records (issue 7: the gateway's
    per-batch work dominated at 1,000)."""
    _edit(workspace, "batch_size = 1000\n", "")

    assert load_config(workspace.config).agent.batch_size == DEFAULT_BATCH_SIZE == 10000


def test_tab_delimiter_is_allowed(workspace: Workspace) -> None:
    """A tab is a legitimate one-character delimiter."""
    _edit(workspace, 'delimiter = ","', 'delimiter = "\\t"')
    assert load_config(workspace.config).source.delimiter == "\t"


def test_missing_event_date_field(workspace: Workspace) -> None:
    """The event_date field is required by name."""
    _edit(workspace, "[fields.event_date]", "[fields.when]")
    with pytest.raises(ConfigError, match=r"fields\.when\.transform: the event_date field"):
        load_config(workspace.config)


def test_not_toml(tmp_path: Path) -> None:
    """A file that is not TOML is named as such."""
    path = tmp_path / "agent.toml"
    path.write_text("[agent\n")
    with pytest.raises(ConfigError, match=r"agent\.toml: not valid TOML"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    """A config that does not exist is named."""
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the config file"):
        load_config(tmp_path / "nope.toml")


def test_world_readable_linkage_key_is_refused(workspace: Workspace) -> None:
    """A linkage key file readable by others is refused, naming the file."""
    path = workspace.root / "keys" / "linkage.key"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"linkage\.key: key file is accessible by group or others"):
        FileKeySource(load_config(workspace.config).keys).linkage_key()


def test_group_readable_signing_key_is_refused(workspace: Workspace) -> None:
    """A signing key file readable by the group is refused too."""
    (workspace.root / "keys" / "signing.key").chmod(0o640)
    with pytest.raises(ConfigError, match=r"signing\.key: key file is accessible by group or others"):
        FileKeySource(load_config(workspace.config).keys).signing_key()


def test_world_readable_key_exits_2_naming_the_file(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agent push` with a world-readable key exits 2 with one line naming the file."""
    path = workspace.root / "keys" / "linkage.key"
    path.chmod(0o604)
    workspace.write_rows([])

    assert main(["push", "--config", str(workspace.config)]) == 2

    err = capsys.readouterr().err
    named = path.resolve()
    assert (
        err == f"agent: error: {named}: key file is accessible by group or others; run: chmod 600 {named}\n"
    )


def test_short_linkage_key_is_refused(workspace: Workspace) -> None:
    """A linkage key under 256 bits is refused."""
    write_secret(workspace.root / "keys" / "linkage.key", b"00" * 31)
    with pytest.raises(ConfigError, match=r"linkage\.key: linkage key must be at least 32 bytes"):
        FileKeySource(load_config(workspace.config).keys).linkage_key()


def test_linkage_key_must_be_hex(workspace: Workspace) -> None:
    """A linkage key that is not hex text is refused naming the file, never echoing its content."""
    write_secret(workspace.root / "keys" / "linkage.key", b"correct horse battery staple " * 3)
    with pytest.raises(ConfigError, match=r"linkage\.key: linkage key file must hold hex text") as caught:
        FileKeySource(load_config(workspace.config).keys).linkage_key()
    assert "horse" not in str(caught.value)


def test_linkage_key_is_read(workspace: Workspace) -> None:
    """A good linkage key file gives its bytes back (surrounding whitespace ignored)."""
    assert FileKeySource(load_config(workspace.config).keys).linkage_key() == bytes(range(32))


def test_signing_key_must_be_ed25519(workspace: Workspace) -> None:
    """A PEM key of another kind is refused naming the file."""
    write_secret(workspace.root / "keys" / "signing.key", workspace.pki.agent_key.read_bytes())  # an EC key
    with pytest.raises(ConfigError, match=r"signing\.key: the signing key must be an Ed25519 key"):
        FileKeySource(load_config(workspace.config).keys).signing_key()
