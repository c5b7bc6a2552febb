"""deploy/k8s: every manifest valid against the Kubernetes schemas kubernetes-validate ships (strict,
offline), and what a schema cannot say: the ConfigMap's gateway.toml starts a real gateway with the
policies mounted as kubelet mounts them, probes reach the health service, secrets are referenced
and never held, containers are locked down, and the NetworkPolicy opens only what is needed."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_files import DOCKERFILE, K8S_DIR, REPO
from gateway_site import analyst_datasets, health_status, materialise, serving_here
from grpc_health.v1 import health_pb2

from gateway._settings import GatewaySettings, load_gateway_keys
from gateway.pki import PkiLayout, init_dev_pki
from gateway.policy._bundle import load_bundle, load_checked_bundle

sys.path.insert(0, str(K8S_DIR))
import render_policies  # deploy/k8s is no package: imported from its folder

# native sidecars (an init container with restartPolicy: Always) need 1.29; and the newest shipped
VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _pod() -> dict[str, Any]:
    pod: dict[str, Any] = _one("Deployment", "datashare-gateway")["spec"]["template"]["spec"]
    return pod


def _container(name: str) -> dict[str, Any]:
    pod = _pod()
    (container,) = [c for c in pod["containers"] + pod["initContainers"] if c["name"] == name]
    return container


def _config_text() -> str:
    text: str = _one("ConfigMap", "datashare-gateway-config")["data"]["gateway.toml"]
    return text


def _config() -> dict[str, Any]:
    return tomllib.loads(_config_text())


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    """mountPath -> volume name."""
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def _volume(name: str) -> dict[str, Any]:
    (volume,) = [v for v in _pod()["volumes"] if v["name"] == name]
    return volume


# --- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_for_kubernetes(manifest: Path, version: str) -> None:
    """Each document validates against kubernetes-validate's strict schemas (no unknown field)."""
    for doc in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The same validation fails on a misspelt probe key, so the test above can fail."""
    deployment = _one("Deployment", "datashare-gateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    """kustomization.yaml's resources are exactly the manifests in deploy/k8s."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_policies_configmap_and_items_are_rendered_from_policies() -> None:
    """policies.yaml and the deployment's items are what render_policies.py writes from policies/
    today (run it after editing policies/)."""
    deployment = (K8S_DIR / "deployment.yaml").read_text(encoding="utf-8")
    assert (K8S_DIR / "policies.yaml").read_text(encoding="utf-8") == render_policies.configmap()
    assert deployment == render_policies.deployment(deployment)


# --- the config against the real gateway --------------------------------------------------------


def _kubelet_volume(mount: Path, configmap: dict[str, Any], items: list[dict[str, str]]) -> None:
    """`mount` laid out as kubelet writes a ConfigMap volume with items: the files in a hidden
    timestamped folder, `..data` pointing at it, each top-level name a symlink through it."""
    stamp = mount / "..2026_12_06_10_00_00.000000001"
    for item in items:
        target = stamp / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(configmap["data"][item["key"]], encoding="utf-8")
    (mount / "..data").symlink_to(stamp.name)
    for top in sorted({item["path"].split("/")[0] for item in items}):
        (mount / top).symlink_to(Path("..data") / top)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"), listen="127.0.0.1:0")


@pytest.fixture
def site(layout: PkiLayout, tmp_path: Path) -> Path:
    """The ConfigMap's gateway.toml with real files at its paths, the policies mounted from the
    policies ConfigMap as kubelet mounts them."""
    bundle = tmp_path / _config()["policy"]["bundle"].lstrip("/")
    bundle.mkdir(parents=True)
    items = _volume("policies")["configMap"]["items"]
    _kubelet_volume(bundle, _one("ConfigMap", "datashare-policies"), items)
    return materialise(_config_text(), tmp_path, layout)


def test_configmap_config_loads_with_the_gateways_own_loaders(site: Path) -> None:
    """gateway.toml from the ConfigMap passes the settings and key loaders, and the policies it finds
    at its bundle path are the repository's bundle, revision for revision."""
    settings = GatewaySettings.from_file(site, environ={})
    load_gateway_keys(settings)
    assert settings.policy_engine == "opa"
    assert load_checked_bundle(settings.policy_bundle).revision == load_bundle(REPO / "policies").revision


def test_configmap_config_serves_and_answers_kubelets_probe(
    site: Path, layout: PkiLayout, opa_sidecar: Any, tmp_path: Path
) -> None:
    """A gateway started from the ConfigMap's config (only its network addresses and database
    moved to this machine) pushes the bundle to its OPA, answers kubelet's grpc probe (plaintext
    Health/Check of the probe's service on the health port) with SERVING, and answers an analyst
    over mTLS with OPA's decision."""
    probe = _container("gateway")["readinessProbe"]["grpc"]
    with serving_here(site, opa_url=opa_sidecar.url, database=tmp_path / "gateway.db") as gateway:
        assert health_status(gateway.health_port, probe["service"]) == health_pb2.HealthCheckResponse.SERVING
        assert analyst_datasets(layout, gateway.port) > 0
    assert opa_sidecar.decisions


# --- probes, ports, mounts ----------------------------------------------------------------------


def test_probes_ask_the_grpc_health_service_on_the_health_listener() -> None:
    """Startup, readiness and liveness are kubelet grpc probes of the whole server ("") on the
    container port the config's health_listen binds; the listener binds every pod address."""
    gateway = _container("gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    health_listen = _config()["gateway"]["health_listen"]
    assert health_listen.startswith("0.0.0.0:")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(gateway[probe]) - {"periodSeconds", "timeoutSeconds", "failureThreshold"} == {"grpc"}
        assert gateway[probe]["grpc"] == {"port": _port(health_listen), "service": ""}
    assert ports["health"] == _port(health_listen)
    assert ports["grpc"] == _port(_config()["gateway"]["listen"])


def test_service_and_opa_sidecar_match_the_config() -> None:
    """The Service targets the gRPC port of the Deployment's pods; the OPA sidecar listens on the
    loopback address the config's opa_url names, as a native sidecar, with compose's OPA image."""
    service = _one("Service", "datashare-gateway")
    labels = _one("Deployment", "datashare-gateway")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["grpc"]
    opa = _container("opa")
    opa_url = _config()["policy"]["opa_url"]
    assert opa_url.startswith("http://127.0.0.1:")
    assert f"--addr={opa_url.removeprefix('http://')}" in opa["args"]
    assert opa["restartPolicy"] == "Always"
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text(encoding="utf-8"))
    assert opa["image"] == compose["services"]["opa"]["image"]


def test_every_config_path_is_mounted() -> None:
    """Each file or folder gateway.toml names lies under a volume mount of the gateway container."""
    doc = _config()
    paths = [doc["tls"][k] for k in ("ca", "cert", "key")] + list(doc["keys"].values())
    paths += [doc["policy"]["bundle"]]
    paths += [p for table in doc["agencies"].values() for p in table["signing_keys"].values()]
    mounts = _mounts(_container("gateway"))
    for path in paths:
        assert any(Path(path).is_relative_to(m) for m in mounts), path
    (config_arg,) = [a for a in _container("gateway")["args"] if a.endswith(".toml")]
    assert _mounts(_container("gateway"))[str(Path(config_arg).parent)] == "config"


def test_private_keys_are_owner_only_copies_in_memory() -> None:
    """Every private key the config names, and PGPASSFILE, is a copy the `keys` init container makes
    with mode 0600 into a memory-backed emptyDir, mounted read-only into the gateway; the Secret
    volumes themselves are not mounted into the gateway."""
    doc = _config()
    private = [doc["tls"]["key"], *doc["keys"].values()]
    env = {e["name"]: e["value"] for e in _container("gateway")["env"]}
    private.append(env["PGPASSFILE"])
    keys_dir = {str(Path(p).parent) for p in private}
    assert len(keys_dir) == 1
    (directory,) = keys_dir
    init = _container("keys")
    command = init["command"]
    assert command[:3] == ["install", "-m", "0600"]
    assert command[-1].rstrip("/") == directory
    assert sorted(Path(s).name for s in command[3:-1]) == sorted(Path(p).name for p in private)
    gateway_mounts = {m["mountPath"]: m for m in _container("gateway")["volumeMounts"]}
    assert gateway_mounts[directory]["readOnly"] is True
    assert _volume(gateway_mounts[directory]["name"])["emptyDir"]["medium"] == "Memory"
    secret_volumes = {v["name"] for v in _pod()["volumes"] if "secret" in v}
    tls_public = _volume("tls-public")["secret"]["items"]
    assert {i["key"] for i in tls_public} == {"ca.crt", "tls.crt"}
    assert set(_mounts(_container("gateway")).values()) & secret_volumes == {"tls-public"}


def test_no_secret_values_in_the_manifests() -> None:
    """No Secret object, no key material, no secret-looking variable with a value: Secrets are
    referenced by name only."""
    assert not [d for d in _documents() if d["kind"] == "Secret"]
    for path in [*MANIFESTS, K8S_DIR / "kustomization.yaml"]:
        text = path.read_text(encoding="utf-8")
        assert "PRIVATE KEY" not in text, path
        assert not re.search(r"(?i)password\s*[:=]\s*\S", text), path
    for container in _pod()["containers"] + _pod()["initContainers"]:
        for env in container.get("env", []):
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", env["name"]):
                assert "valueFrom" in env, env["name"]


def test_containers_are_locked_down() -> None:
    """The pod runs as the image's numeric user without a service-account token, with the runtime's
    seccomp profile; every container (init, sidecar, gateway) drops all capabilities, cannot gain
    privileges, has a read-only root, and has requests and a memory limit."""
    pod = _pod()
    (user,) = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("USER ")]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    assert not [v for v in pod["volumes"] if "hostPath" in v]
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]


def test_network_policy_opens_only_grpc_in_and_postgres_and_dns_out() -> None:
    """The NetworkPolicy selects the gateway's pods for both directions; ingress is the gRPC port
    from labelled namespaces only; egress is PostgreSQL's port and DNS only."""
    policy = _one("NetworkPolicy", "datashare-gateway")["spec"]
    labels = _one("Deployment", "datashare-gateway")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert [set(peer) for peer in ingress["from"]] == [{"namespaceSelector"}]
    assert all(peer["namespaceSelector"].get("matchLabels") for peer in ingress["from"])
    egress_ports = sorted((p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"])
    assert egress_ports == [(53, "TCP"), (53, "UDP"), (5432, "TCP")]
    for rule in policy["egress"]:
        assert all(peer.get("podSelector", {}).get("matchLabels") for peer in rule["to"])
    store = _config()["store"]["url"]
    assert ":5432/" in store
