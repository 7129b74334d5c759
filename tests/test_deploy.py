"""deploy/: the Helm chart renders (Helm's own Go SDK, from PyPI's helm-python-sdk), passes
`helm lint`, and its manifests validate against the Kubernetes API schemas
(kubernetes-validate); the compose file's replicas share one PostgreSQL. The container
commands of both are parsed by strata's own CLI parser, so a renamed flag fails here.

What cannot run here: no container engine or cluster on these machines, so neither the
images nor the pods are started (docs/REPLICAS.md says how to try them)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli.main import build_parser

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) renders the chart")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) checks the manifests"
)

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "strata"
COMPOSE = ROOT / "deploy" / "compose.yaml"
#: Kubernetes version the manifests are validated against (native gRPC probes: >= 1.27).
KUBERNETES = "1.30.0"
URL = "postgresql+psycopg://strata:secret@db.example:5432/strata"


def render_files(values: dict[str, Any], release: str = "demo") -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return dict(chart.render(values, name=release, namespace="strata"))


def render(values: dict[str, Any], release: str = "demo") -> list[dict[str, Any]]:
    manifests = render_files(values, release)
    documents = []
    for name, text in manifests.items():
        if name.endswith(".yaml"):
            documents += [d for d in yaml.safe_load_all(text) if d]
    return documents


def by_kind(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        kinds.setdefault(document["kind"], []).append(document)
    return kinds


def serve_args(command: list[str]) -> Any:
    """Parse a container's `strata serve ...` command with strata's own parser. The image has
    no ENTRYPOINT, so the command must name the program itself."""
    assert command[0] == "strata", command
    args = build_parser().parse_args([str(part) for part in command[1:]])
    assert args.command == "serve"
    return args


def test_chart_lints_clean() -> None:
    report = helm.lint(str(CHART))
    assert report["errors"] == [], report
    assert all(m["severity"] < 3 for m in report["messages"]), report  # no errors, info only


def test_chart_refuses_to_render_without_a_database() -> None:
    with pytest.raises(Exception, match="strata needs a database"):
        render({})


@pytest.mark.parametrize(
    "values",
    [
        {"database": {"url": URL}},
        {"database": {"existingSecret": "strata-db"}, "ray": {"enabled": False}},
        {
            "postgresql": {"enabled": True},
            "ray": {"workers": {"gpus": 1}},
            "replicaCount": 3,
            "sharedIndex": {"existingClaim": "strata-builds"},
        },
    ],
    ids=["external-url", "existing-secret-no-ray", "bundled-postgresql-gpu-workers"],
)
def test_chart_renders_valid_kubernetes_manifests(values: dict[str, Any]) -> None:
    documents = render(values)
    kinds = by_kind(documents)
    for document in documents:
        if document["apiVersion"].startswith("ray.io/"):
            continue  # KubeRay's CRD: checked by hand below
        kubernetes_validate.validate(document, KUBERNETES, strict=True)

    (deployment,) = kinds["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == values.get("replicaCount", 2)
    pod = spec["template"]
    (container,) = pod["spec"]["containers"]
    assert "args" not in container  # it would replace the image's CMD, not follow it
    args = serve_args(container["command"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.listen == f"0.0.0.0:{ports['grpc']}"
    assert args.metrics_listen == f"0.0.0.0:{ports['metrics']}"
    assert args.log_format == "json"
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe  # gRPC health
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    env = {e["name"]: e for e in container["env"]}
    claim = values.get("sharedIndex", {}).get("existingClaim")
    if claim:  # one builder: every pod mounts the same claim where the setting points
        (shared,) = [v for v in pod["spec"]["volumes"] if v["name"] == "shared"]
        assert shared["persistentVolumeClaim"]["claimName"] == claim
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "shared"]
        assert env["STRATA_SHARED_INDEX_DIR"]["value"] == mount["mountPath"]
    else:
        assert "STRATA_SHARED_INDEX_DIR" not in env
    secret_name = env["STRATA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]

    (service,) = (
        kinds["Service"]
        if "StatefulSet" not in kinds
        else [s for s in kinds["Service"] if "postgresql" not in s["metadata"]["name"]]
    )
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}

    existing = values.get("database", {}).get("existingSecret")
    if existing:
        assert secret_name == existing and "Secret" not in kinds
    else:
        (secret,) = kinds["Secret"]
        assert secret["metadata"]["name"] == secret_name
        url = secret["stringData"]["url"]
        if "postgresql" in values:
            (statefulset,) = kinds["StatefulSet"]
            host = url.split("@", 1)[1].split(":", 1)[0]
            assert host == statefulset["spec"]["serviceName"]
            assert any(s["metadata"]["name"] == host for s in kinds["Service"])
        else:
            assert url == URL

    if values.get("ray", {}).get("enabled", True):
        (ray,) = kinds["RayCluster"]
        assert ray["apiVersion"] == "ray.io/v1"
        head = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        (workers,) = ray["spec"]["workerGroupSpecs"]
        worker = workers["template"]["spec"]["containers"][0]
        assert head["image"] == worker["image"] == container["image"]  # same engine code
        assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
        gpus = values.get("ray", {}).get("workers", {}).get("gpus", 0)
        assert worker["resources"]["limits"].get("nvidia.com/gpu", 0) == gpus
        # The KubeRay pod templates are core PodSpecs: validate them as Pods.
        for template in (ray["spec"]["headGroupSpec"]["template"], workers["template"]):
            pod_doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, **template}
            kubernetes_validate.validate(pod_doc, KUBERNETES, strict=True)
    else:
        assert "RayCluster" not in kinds


def test_compose_runs_two_replicas_on_one_postgresql_and_a_ray_cluster() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "strata-1", "strata-2", "ray-head", "ray-worker"} <= set(services)
    replicas = [services["strata-1"], services["strata-2"]]
    urls = {r["environment"]["STRATA_DATABASE_URL"] for r in replicas}
    assert len(urls) == 1 and "@postgres:5432/" in urls.pop()
    host_ports = [p for r in replicas for p in r["ports"]]
    assert len(set(host_ports)) == len(host_ports) == 4
    assert replicas[0]["volumes"][0] != replicas[1]["volumes"][0]  # own index files each
    shared = {r["environment"]["STRATA_SHARED_INDEX_DIR"] for r in replicas}
    assert len(shared) == 1  # ...and one shared folder for the builder's files
    for replica in replicas:
        assert any(v.endswith(":" + next(iter(shared))) for v in replica["volumes"])
    for replica in replicas:
        args = serve_args(replica["command"])
        assert args.metrics_listen and args.log_format == "json"
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["ray-worker"]["command"]
    assert "--address=ray-head:6379" in worker
    assert "--head" in services["ray-head"]["command"]
    assert services["ray-head"]["image"] == replicas[0]["image"]  # the same engine code
    for ray_node in ("ray-head", "ray-worker"):  # no Strata server for the image's check
        assert services[ray_node]["healthcheck"] == {"disable": True}


def strata_command_lines(text: str) -> list[list[str]]:
    """The `strata SUBCOMMAND ...` commands shown in a file's text or comments (a trailing
    backslash continues a line), split as a shell would."""
    (subparsers,) = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    subcommands = set(subparsers.choices)
    joined = re.sub(r"\\\n[#\s]*", " ", text)
    commands = []
    # `strata` and a word: a subcommand, or a flag (the global `strata --server X` form
    # that the parser refuses, which must be found to be caught).
    shown = re.compile(r"\bstrata (" + "|".join(subcommands) + r"|--?\w)")
    for line in joined.splitlines():
        for snippet in re.findall(r"`([^`]*)`", line) or [line.lstrip("# ")]:
            if match := shown.search(snippet):
                commands.append(shlex.split(snippet[match.start() :])[1:])
    return commands


def test_commands_shown_in_deploy_files_parse() -> None:
    """A new user copies these: each must be a command strata's parser accepts (the global
    `strata --server ADDRESS COMMAND` form, for one, is not)."""
    notes = render_files({"database": {"url": URL}})["strata/templates/NOTES.txt"]
    shown = {
        "NOTES.txt": notes,
        "compose.yaml": COMPOSE.read_text(),
        "values.yaml": (CHART / "values.yaml").read_text(),
        "Dockerfile": (ROOT / "deploy" / "Dockerfile").read_text(),
    }
    parser = build_parser()
    found = {}
    for name, text in shown.items():
        found[name] = strata_command_lines(text)
        for words in found[name]:
            try:
                parser.parse_args(words)
            except SystemExit:
                pytest.fail(f"{name}: `strata {' '.join(words)}` does not parse")
    counts = {name: len(commands) for name, commands in found.items()}
    assert counts == {"NOTES.txt": 2, "compose.yaml": 2, "values.yaml": 1, "Dockerfile": 1}
    # The image's exec-form CMD and HEALTHCHECK run strata as written.
    dockerfile = shown["Dockerfile"]
    exec_forms = [json.loads(f) for f in re.findall(r"CMD (\[.*\])$", dockerfile, re.M)]
    assert [words[:2] for words in exec_forms] == [["strata", "serve"], ["strata", "health"]]
    for words in exec_forms:
        parser.parse_args(words[1:])
    assert strata_command_lines("#   strata --server 127.0.0.1:50051 collections list") == [
        ["--server", "127.0.0.1:50051", "collections", "list"]  # found, so refused above
    ]
