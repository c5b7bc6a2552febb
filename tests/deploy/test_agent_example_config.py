"""deploy/agent/agent.example.toml: a complete ED-visits config that fits the systemd unit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from deploy_files import CREDENTIALS_DIR, EXAMPLE_CONFIG, unit_settings

from agents import AgentConfig, load_config
from agents._config import DateField, HoursBetweenField, LookupField, MapField, PseudonymiseField


def test_example_config_loads() -> None:
    """agents.load_config accepts the example (its paths need not exist for that), with the service
    interval of 15 minutes and every field of the ed_visits contract mapped."""
    config = load_config(EXAMPLE_CONFIG)
    assert config.agent.dataset == "ed_visits"
    assert config.run.interval_s == 900
    assert {spec.name for spec in config.fields} == {
        "subject",
        "event_date",
        "age_band",
        "sex",
        "district",
        "presentation",
        "length_of_stay_hours",
    }
    assert isinstance(config.field("subject"), PseudonymiseField)
    assert isinstance(config.field("event_date"), DateField)
    assert isinstance(config.field("sex"), MapField)
    assert isinstance(config.field("district"), LookupField)
    assert isinstance(config.field("length_of_stay_hours"), HoursBetweenField)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(lambda c: c.keys.linkage_key, id="linkage_key"),
        pytest.param(lambda c: c.keys.signing_key, id="signing_key"),
        pytest.param(lambda c: c.gateway.key, id="tls_key"),
    ],
)
def test_example_config_reads_each_secret_from_a_unit_credential(
    secret: Callable[[AgentConfig], Path | None],
) -> None:
    """Each private key is read from /run/credentials/datashare-agent.service/<name>, and the unit
    loads a credential of that name (LoadCredential=<name>:<root-only file>)."""
    path = secret(load_config(EXAMPLE_CONFIG))
    assert isinstance(path, Path)
    assert path.parent == CREDENTIALS_DIR
    loaded = {value.split(":", 1)[0] for value in unit_settings()["LoadCredential"]}
    assert path.name in loaded


def test_example_config_keeps_state_in_the_units_state_directory() -> None:
    """[agent] state_dir is /var/lib/<StateDirectory=>, the one place the unit lets the agent write."""
    (state_directory,) = unit_settings()["StateDirectory"]
    assert load_config(EXAMPLE_CONFIG).agent.state_dir == Path("/var/lib") / state_directory
