"""The operator's manifests against the real Kubernetes schemas and the real Helm library.

- the CRD, every patched StatefulSet / CassandraDatacenter pod template the operator renders for the
  sample objects (from `crdgen --rendered`), the plain manifests in deploy/ and every manifest the
  chart renders pass `kubernetes-validate --strict`;
- the chart lints clean and renders with default and custom values (helm-python-sdk, Helm's Go SDK);
- the chart's CRD and deploy/ equal what the repository commits.
"""

import os
import pathlib
import subprocess

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tablesnap"
CRD = ROOT / "crds" / "tablesnap.yaml"
DEPLOY = ROOT / "deploy"

# The oldest Kubernetes the operator supports (k8s-openapi feature v1_33, native sidecars GA) and
# the newest that kubernetes-validate ships schemas for.
K8S_VERSIONS = ["1.33.0", kubernetes_validate.utils.latest_version()]

RELEASE = "tablesnap"
NAMESPACE = "tablesnap-system"
CUSTOM_VALUES = {
    "image": {"repository": "registry.example.internal/tablesnap-operator", "tag": "dev", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "replicaCount": 2,
    "logFormat": "text",
    "logLevel": "tablesnap_operator=debug,info",
    "metricsPort": 9443,
    "serviceAccount": {"create": True, "name": "tsnap", "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/x"}},
    "podAnnotations": {"prometheus.io/scrape": "true"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "example": {"enabled": True, "namespace": "cassandra", "bucket": "backups", "region": "eu-west-1", "secretName": "s3-credentials"},
}


def load_all(text):
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate_strict(obj, version):
    """kubernetes-validate's library call: raises on any schema violation or unknown kind."""
    kubernetes_validate.validate(obj, version, strict=True)


def crd_schema():
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def render(values):
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {path: load_all(text) for path, text in manifests.items() if not path.endswith("NOTES.txt")}


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory):
    """The sample objects as the operator patches them, written by the crdgen binary."""
    out = tmp_path_factory.mktemp("rendered")
    subprocess.run(
        ["cargo", "run", "--quiet", "-p", "tablesnap-operator", "--bin", "crdgen", "--", "--rendered", str(out)],
        cwd=ROOT,
        check=True,
        env=dict(os.environ),
    )
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_crd_is_a_valid_custom_resource_definition(version):
    (crd,) = load_all(CRD.read_text())
    validate_strict(crd, version)
    assert crd["metadata"]["name"] == "tablesnaps.tablesnap.io"


def test_a_broken_object_is_rejected():
    """The validator really validates: an unknown field in strict mode is an error."""
    (crd,) = load_all(CRD.read_text())
    crd["spec"]["unknownField"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strict(crd, K8S_VERSIONS[0])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_patched_objects_are_valid(rendered_dir, version):
    files = sorted(rendered_dir.glob("*.json"))
    kinds = set()
    for path in files:
        (obj,) = load_all(path.read_text())
        validate_strict(obj, version)
        kinds.add(obj["kind"])
        template = obj["spec"]["template"] if obj["kind"] == "StatefulSet" else obj["template"]
        (sidecar,) = [c for c in template["spec"]["initContainers"] if c["name"] == "tablesnap"]
        assert sidecar["restartPolicy"] == "Always", path.name
        assert "readinessProbe" not in sidecar, path.name
        assert "tablesnap.io/config-hash" in template["metadata"]["annotations"], path.name
        archive = [m for m in sidecar["volumeMounts"] if m.get("subPath") == "commitlog_archive"]
        if path.name.startswith("point-in-time-"):
            # spec.commitlogArchive: the archive directory of the data volume, writable.
            (mount,) = archive
            assert not mount.get("readOnly", False), path.name
            assert "--commitlog-archive" in sidecar["args"], path.name
        else:
            assert archive == [], path.name
    # Bitnami and hand-written StatefulSets, cass-operator's datacenter, each with three TableSnap
    # variants (default, all options, point-in-time).
    prefixes = sorted({p.name.split("-statefulset-")[0].split("-cassandradatacenter-")[0] for p in files})
    assert prefixes == ["all-options", "default", "point-in-time"], [p.name for p in files]
    assert len(files) == 9, [p.name for p in files]
    assert kinds == {"StatefulSet", "PodTemplate"}


def test_chart_crd_equals_the_committed_crd():
    with helm.Chart.load(str(CHART)) as chart:
        crds = chart.crds
    assert [c["filename"] for c in crds] == ["tablesnap/crds/tablesnap.yaml"]
    assert load_all(crds[0]["data"]) == load_all(CRD.read_text())


@pytest.mark.parametrize("values", [{}, CUSTOM_VALUES], ids=["default", "custom"])
def test_chart_lints_clean(values):
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
    assert report["errors"] == [], report
    assert report["total_charts_linted"] == 1
    # Severity 2 is a warning, 3 an error; 1 (info: no icon) is fine.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values", [{}, CUSTOM_VALUES], ids=["default", "custom"])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_chart_renders_valid_manifests(values, version):
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
    objects = [obj for docs in render(values).values() for obj in docs]
    kinds = sorted(obj["kind"] for obj in objects)
    expected = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    assert kinds == sorted(expected + (["TableSnap"] if values else []))
    for obj in objects:
        if obj["kind"] == "TableSnap":
            # A CRD-defined kind: checked against the CRD's own schema.
            jsonschema.validate(obj, crd_schema())
            assert obj["metadata"]["namespace"] == "cassandra"
        else:
            validate_strict(obj, version)


def test_custom_values_reach_the_deployment():
    (deployment,) = [o for docs in render(CUSTOM_VALUES).values() for o in docs if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.internal/tablesnap-operator:dev"
    assert "--http-listen=0.0.0.0:9443" in container["args"]
    assert "--log-format=text" in container["args"]
    assert pod["serviceAccountName"] == "tsnap"
    assert deployment["spec"]["replicas"] == 2


def test_operator_reads_no_secrets():
    objects = [o for docs in render({}).values() for o in docs]
    rules = [r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert rules, "the chart must grant something"
    for rule in rules:
        assert "secrets" not in rule["resources"] and "*" not in rule["resources"], rule
        assert "*" not in rule["verbs"] and "*" not in rule["apiGroups"], rule


# The operator's whole permission set. A new permission must be added here on purpose.
# What operator/tests/real_operator.rs proved against a real API server to be used and needed.
LEAST_PRIVILEGE = {
    ("ClusterRole", "tablesnap.io", "tablesnaps", ("list", "patch", "watch")),
    ("ClusterRole", "tablesnap.io", "tablesnaps/status", ("patch",)),
    ("ClusterRole", "apps", "statefulsets", ("list", "patch", "watch")),
    ("ClusterRole", "cassandra.datastax.com", "cassandradatacenters", ("list", "patch", "watch")),
    ("ClusterRole", "", "pods", ("create", "delete", "list")),
    ("ClusterRole", "events.k8s.io", "events", ("create", "patch")),
    ("Role", "coordination.k8s.io", "leases", ("create",)),
    ("Role", "coordination.k8s.io", "leases", ("get", "patch")),
}


def test_rbac_is_exactly_the_least_privilege_list():
    objects = [o for docs in render({}).values() for o in docs]
    granted = set()
    for o in objects:
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in o["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.add((o["kind"], group, resource, tuple(sorted(rule["verbs"]))))
    assert granted == LEAST_PRIVILEGE


def test_values_schema_rejects_bad_values():
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"logFormat": "xml"})
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"replicaCount": "two"})


def test_deploy_equals_the_default_chart_render():
    rendered = [obj for path in sorted(render({})) for obj in render({})[path]]
    committed = load_all((DEPLOY / "tablesnap-operator.yaml").read_text())
    assert committed == rendered, "deploy/tablesnap-operator.yaml drifted from the chart: run deploy/render.py"
    assert load_all((DEPLOY / "crd.yaml").read_text()) == load_all(CRD.read_text())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_deploy_manifests_are_valid(version):
    files = sorted(DEPLOY.glob("*.yaml"))
    assert [f.name for f in files] == ["crd.yaml", "namespace.yaml", "tablesnap-operator.yaml"]
    for path in files:
        for obj in load_all(path.read_text()):
            validate_strict(obj, version)
