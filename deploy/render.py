"""Regenerates deploy/tablesnap-operator.yaml from the chart with default values (Helm's Go SDK).

Run with the test venv: "$(e2e/scripts/venv.sh)/bin/python" deploy/render.py
e2e/python/test_operator_manifests.py fails when the committed file differs from this render.
"""

import pathlib

import helm_python as helm

ROOT = pathlib.Path(__file__).resolve().parents[1]

with helm.Chart.load(str(ROOT / "charts" / "tablesnap")) as chart:
    manifests = chart.render({}, name="tablesnap", namespace="tablesnap-system", is_install=True)
docs = [manifests[k].strip() for k in sorted(manifests) if not k.endswith("NOTES.txt") and manifests[k].strip()]
header = (
    "# The operator as `helm template tablesnap charts/tablesnap -n tablesnap-system` renders it with default values.\n"
    "# Kept equal to the chart by e2e/python/test_operator_manifests.py; regenerate with deploy/render.py.\n"
)
(ROOT / "deploy" / "tablesnap-operator.yaml").write_text(header + "---\n" + "\n---\n".join(docs) + "\n")
