"""The deployment files, checked offline: every Kubernetes manifest against Kubernetes' own JSON schemas (the
ones ``kubernetes-validate`` ships), the images they run against what ``make image`` builds, and every
``PENNY_*`` variable they and the compose file set against the settings it must name."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from pydantic import BaseModel

from assistant.settings import Settings
from tests.conftest import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
# The oldest Kubernetes release still maintained when these were written, and the newest the schemas cover.
VERSIONS = ("1.32", kubernetes_validate.utils.latest_version())
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGES = {f"localhost/penny{suffix}" for suffix in ("", "-postgres", "-redis")}  # deploy/container/build.sh


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFESTS = [
    (path, doc)
    for path in sorted(KUBERNETES.glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for doc in documents(path)
]
DOCS = [doc for _, doc in MANIFESTS]
# KEDA's CRD is not among Kubernetes' schemas: what it embeds of Kubernetes' is checked on its own below. Any
# other kind without a schema fails the test.
KEDA = [doc for doc in DOCS if doc["apiVersion"].startswith("keda.sh/")]


def definitions(version: str) -> dict[str, Any]:
    release = kubernetes_validate.utils.major_minor(version)
    return schema_contents(f"kubernetes-json-schema/v{release}.0-local-strict/_definitions.json", version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")
        for path, doc in MANIFESTS
        if doc not in KEDA
    ],
)
def test_every_manifest_matches_the_kubernetes_schema(doc: dict[str, Any], version: str) -> None:
    # strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict` makes it.
    kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    """The check above would fail a real mistake, not pass anything."""
    doc = DOCS[0]
    broken = {**doc, "metadata": {**doc["metadata"], "namspace": "penny"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="namspace"):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("scaled", KEDA, ids=[doc["metadata"]["name"] for doc in KEDA])
def test_keda_scaled_object_embeds_valid_kubernetes_parts(scaled: dict[str, Any]) -> None:
    assert scaled["kind"] == "ScaledObject"
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    schema = {
        **definitions(VERSIONS[-1]),
        "$ref": "#/$defs/io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior",
    }
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(behavior)
    assert not validator.is_valid({**behavior, "scaleUP": {}})  # strict here too
    deployments = {doc["metadata"]["name"] for doc in DOCS if doc["kind"] == "Deployment"}
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments


def test_the_worker_service_serves_both_capacities_and_spot_pods_only_land_on_spot_nodes() -> None:
    (service,) = [d for d in DOCS if d["kind"] == "Service" and d["metadata"]["name"] == "penny-worker"]
    workers = {
        d["spec"]["template"]["metadata"]["labels"]["capacity"]: d
        for d in DOCS
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("penny-worker")
    }
    assert set(workers) == {"on-demand", "spot"}
    for deployment in workers.values():  # the Service sends requests to both
        assert (
            service["spec"]["selector"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    pod = workers["spot"]["spec"]["template"]["spec"]
    affinity = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert len(affinity["nodeSelectorTerms"]) >= 3  # GKE, EKS / Karpenter, AKS spot labels
    assert pod["terminationGracePeriodSeconds"] <= 30  # drained within a spot reclaim's notice


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def test_pods_run_the_images_make_image_builds_as_non_root() -> None:
    pods = [doc for doc in DOCS if containers(doc)]
    assert {doc["metadata"]["name"] for doc in pods} >= {"penny-api", "penny-worker", "penny-chroma"}
    for doc in pods:
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in containers(doc):
            name, _, tag = container["image"].partition(":")
            assert name in IMAGES and tag == VERSION, container["image"]
            assert container["imagePullPolicy"] == "IfNotPresent"  # an image loaded into the cluster is used


def test_kustomization_lists_every_manifest_but_the_autoscalers_and_maps_every_image() -> None:
    (kustomization,) = documents(KUBERNETES / "kustomization.yaml")
    autoscalers = {"keda-scaledobject.yaml", "hpa-prometheus-adapter.yaml", "kustomization.yaml"}
    autoscalers |= {"workers-spot.yaml", "keda-scaledobject-spot.yaml"}  # optional: clusters with spot nodes
    assert set(kustomization["resources"]) == {p.name for p in KUBERNETES.glob("*.yaml")} - autoscalers
    assert {(i["name"], i["newTag"]) for i in kustomization["images"]} == {(i, VERSION) for i in IMAGES}


def setting_exists(variable: str) -> bool:
    """``PENNY_POOL__REMOTE_URLS`` names ``Settings().pool.remote_urls``; a few name no setting on purpose."""
    if variable in ("PENNY_PAID_API_KEY", "PENNY_ADMIN_KEY", "PENNY_CONFIG"):
        return True
    model: type[BaseModel] = Settings
    for part in variable.removeprefix("PENNY_").lower().split("__"):
        field = model.model_fields.get(part)
        if field is None:
            return False
        nested = field.annotation
        model = nested if isinstance(nested, type) and issubclass(nested, BaseModel) else BaseModel
    return True


def set_variables() -> set[str]:
    """Every variable the pods and the compose services are given: env, ConfigMap data, environment."""
    names: set[str] = set()
    for doc in DOCS:
        names |= set(doc.get("data", {}))
        for container in containers(doc):
            names |= {env["name"] for env in container.get("env", [])}
    for service in yaml.safe_load(COMPOSE.read_text())["services"].values():
        names |= set(service.get("environment", {}))
    return {name for name in names if name.startswith("PENNY_")}


def test_every_penny_variable_names_a_setting() -> None:
    variables = set_variables()
    assert {"PENNY_LEDGER__DB_URL", "PENNY_INDEX__CHROMA_URL", "PENNY_REDIS_URL"} <= variables
    assert [v for v in sorted(variables) if not setting_exists(v)] == []
    assert not setting_exists("PENNY_LEDGER__URL")  # the check knows a wrong name


def test_compose_runs_this_versions_images() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    images = {service["image"] for service in compose["services"].values()}
    assert images == {
        f"${{PENNY_IMAGE:-localhost/penny}}{suffix}:${{PENNY_VERSION:-{VERSION}}}"
        for suffix in ("", "-postgres", "-redis", "-haproxy")
    }
