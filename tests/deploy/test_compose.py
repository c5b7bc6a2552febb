"""deploy/compose: compose.yaml valid against the Compose Specification's JSON schema (the copy
check-jsonschema ships, read offline), and consistent with the gateway config it mounts, which
the gateway's own loaders read."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dockerfile
import jsonschema
import pytest
import yaml
from deploy_files import COMPOSE_DIR, DOCKERFILE, REPO
from gateway_site import analyst_datasets, health_status, materialise, serving_here
from grpc_health.v1 import health_pb2
from referencing import Registry

from gateway._settings import GatewaySettings, load_gateway_keys
from gateway.pki import PkiLayout, init_dev_pki

COMPOSE = COMPOSE_DIR / "compose.yaml"
GENERATED = {"./pki"}  # made by the set-up in deploy/README.md, git-ignored


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def _gateway_toml() -> tuple[Path, dict[str, Any]]:
    config = COMPOSE_DIR / _compose()["configs"]["gateway-config"]["file"]
    return config, tomllib.loads(config.read_text(encoding="utf-8"))


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"))


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    """compose.yaml validates against the Compose Specification schema vendored by check-jsonschema,
    resolved with an empty registry (nothing fetched)."""
    text = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    schema = json.loads(text)
    assert schema["title"] == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema, registry=Registry()).iter_errors(_compose()), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_schema_check_catches_a_misspelt_key() -> None:
    """The same validation refuses a service key the spec does not know (so the test above can fail)."""
    schema = json.loads(
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    broken = _compose()
    broken["services"]["gateway"]["healthchek"] = broken["services"]["gateway"].pop("healthcheck")
    validator = jsonschema.validators.validator_for(schema)(schema, registry=Registry())
    assert not validator.is_valid(broken)


def test_mounted_gateway_config_loads_with_the_gateways_own_loaders(
    layout: PkiLayout, tmp_path: Path
) -> None:
    """The gateway.toml compose mounts, with real files at the paths it names, passes the settings
    and key loaders, and asks for the OPA engine."""
    config, _ = _gateway_toml()
    settings = GatewaySettings.from_file(
        materialise(config.read_text(encoding="utf-8"), tmp_path, layout), environ={}
    )
    load_gateway_keys(settings)
    assert settings.policy_engine == "opa"


def test_mounted_gateway_config_serves_with_its_opa(
    layout: PkiLayout, tmp_path: Path, opa_sidecar: Any
) -> None:
    """A gateway started from the mounted config (only addresses and database moved here) pushes its
    bundle to OPA, answers the container health check's question with SERVING and an analyst
    over mTLS with OPA's decision."""
    config, _ = _gateway_toml()
    site = materialise(config.read_text(encoding="utf-8"), tmp_path / "site", layout)
    with serving_here(site, opa_url=opa_sidecar.url, database=tmp_path / "gateway.db") as gateway:
        assert health_status(gateway.health_port) == health_pb2.HealthCheckResponse.SERVING
        assert analyst_datasets(layout, gateway.port) > 0
    assert opa_sidecar.decisions


def test_every_private_key_is_a_compose_secret_of_the_gateway() -> None:
    """Each private key path in the config is /run/secrets/<name> of a secret the gateway service
    gets, read from a file under ./secrets (git-ignored), as is the database's pgpass."""
    _, doc = _gateway_toml()
    gateway = _service("gateway")
    private = {doc["tls"]["key"], *doc["keys"].values(), gateway["environment"]["PGPASSFILE"]}
    attached = {f"/run/secrets/{name}" for name in gateway["secrets"]}
    assert private == attached
    for name in gateway["secrets"]:
        assert _compose()["secrets"][name]["file"].startswith("./secrets/")
    assert (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").count("/secrets/") == 1


def test_no_secret_value_in_the_compose_file() -> None:
    """No environment variable carries a password or key: only *_FILE and PGPASSFILE point at files."""
    for name, service in _compose()["services"].items():
        for key in service.get("environment", {}):
            if re.search(r"PASSWORD|SECRET|KEY|TOKEN", key):
                assert key.endswith("_FILE"), f"{name}: {key}"
    assert "PRIVATE KEY" not in COMPOSE.read_text(encoding="utf-8")


def test_database_and_policy_engine_are_reachable_only_by_the_gateway() -> None:
    """Only the gateway publishes a port (its gRPC listen port); PostgreSQL and OPA each sit on an
    internal network shared with the gateway alone."""
    compose, (_, doc) = _compose(), _gateway_toml()
    published = {name: s.get("ports", []) for name, s in compose["services"].items()}
    listen_port = doc["gateway"]["listen"].rsplit(":", 1)[1]
    assert published == {"gateway": [f"{listen_port}:{listen_port}"], "postgres": [], "opa": []}
    for service, network in (("postgres", "store"), ("opa", "policy")):
        assert compose["services"][service]["networks"] == [network]
        assert compose["networks"][network] == {"internal": True}
        assert [n for n, s in compose["services"].items() if network in s["networks"]] == ["gateway", service]


def test_gateway_config_points_at_the_compose_services() -> None:
    """The store URL names the postgres service, its database and user; the OPA URL names the opa
    service on the port OPA listens on."""
    _, doc = _gateway_toml()
    store = urlsplit(doc["store"]["url"])
    postgres = _service("postgres")["environment"]
    assert (store.hostname, store.username, store.path) == (
        "postgres",
        postgres["POSTGRES_USER"],
        "/" + postgres["POSTGRES_DB"],
    )
    assert store.password is None
    opa = urlsplit(doc["policy"]["opa_url"])
    addr = next(a for a in _service("opa")["command"] if a.startswith("--addr="))
    assert opa.hostname == "opa"
    assert addr.rsplit(":", 1)[1] == str(opa.port)


def test_bind_mounts_and_build_exist() -> None:
    """Every bind-mount source exists in the repository (but the generated ./pki), read-only, and
    the build names deploy/Dockerfile with the repository as context."""
    gateway = _service("gateway")
    for volume in gateway["volumes"]:
        source, _target, mode = volume.split(":")
        assert mode == "ro", volume
        if source not in GENERATED:
            assert (COMPOSE_DIR / source).is_dir(), source
    _, doc = _gateway_toml()
    assert f"../../policies:{doc['policy']['bundle']}:ro" in gateway["volumes"]
    build = gateway["build"]
    assert (COMPOSE_DIR / build["context"]).resolve() == REPO
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_gateway_container_is_locked_down_and_checked() -> None:
    """The gateway runs as the image's user, read-only, without capabilities or privilege gain, and
    its health check is the image's, against the config's health listener."""
    gateway = _service("gateway")
    final = list(dockerfile.parse_file(str(DOCKERFILE)))
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    (check,) = [c for c in final if c.cmd == "HEALTHCHECK"]
    _, doc = _gateway_toml()
    assert gateway["user"] == user
    assert gateway["read_only"] is True
    assert gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert gateway["healthcheck"]["test"] == list(check.value)
    assert gateway["healthcheck"]["test"][-1] == doc["gateway"]["health_listen"]
    assert shlex.join(gateway["command"]) == "serve --config /etc/datashare/gateway.toml"
    assert _service("postgres")["healthcheck"]["test"][1] == "pg_isready"


def test_opa_image_is_the_release_the_conformance_suite_runs() -> None:
    """The OPA image's tag is the OPA version embedded in opa-golib-python-bindings, whose engine the
    conformance suite compares the policies' decisions with."""
    try:
        bindings = importlib.resources.files("opa_bindings")
    except ModuleNotFoundError:
        pytest.skip("opa-golib-python-bindings is not installed")
    library = next(p for p in bindings.iterdir() if p.name.endswith(".so"))
    versions = set(re.findall(rb"open-policy-agent/opa@v(\d+\.\d+\.\d+)", library.read_bytes()))
    assert versions == {_service("opa")["image"].rsplit(":", 1)[1].encode()}
