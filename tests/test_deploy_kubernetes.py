"""The Kubernetes manifests in deploy/ against the Dask operator's own schemas, strictly.

No API server runs here, so each manifest is validated instead: against the CRD schema the
``dask-kubernetes`` package ships in its Helm chart (``crds/``), with unknown fields rejected
as ``kubectl apply --validate=strict`` would; then the Deployments, Service and Pod that the
operator builds from it (its ``build_*_spec`` functions) are validated with
``kubernetes-validate`` in strict mode. ``dask-kubernetes`` is installed with ``--no-deps``
(its ``kubernetes`` dependency would replace the python-dateutil that botocore needs); the
operator's functions need only kopf, kr8s and rich beside it.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
#: The Kubernetes API version the built objects are checked against.
KUBERNETES_VERSION = "1.30.0"


def _need(module: str, install: str):
    if importlib.util.find_spec(module) is None:
        reason = f"{module} not installed: {install}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def crds() -> dict[str, object]:
    """Validators of the operator's CRD schemas by kind, made strict (unknown fields rejected)."""
    import jsonschema

    _need("dask_kubernetes", "pip install --no-deps dask-kubernetes")
    spec = importlib.util.find_spec("dask_kubernetes")
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
        schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
        schema["properties"].update(
            apiVersion={"enum": [f"{crd['spec']['group']}/{version['name']}"]},
            kind={"enum": [crd["spec"]["names"]["kind"]]},
            metadata={
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                },
                "additionalProperties": False,
                "required": ["name"],
            },
        )
        schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind"})
        jsonschema.Draft7Validator.check_schema(schema)
        schemas[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    assert {"DaskCluster", "DaskJob", "DaskWorkerGroup"} <= set(schemas), sorted(schemas)
    return schemas


def strict(schema: dict) -> dict:
    """``schema`` with ``additionalProperties: false`` on every object that lists its fields
    (as the API server prunes/refuses unknown fields), except where the CRD keeps them."""
    if isinstance(schema, dict):
        for value in schema.values():
            strict(value)
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def check_crd(document: dict, crds: dict[str, dict]) -> None:
    crds[document["kind"]].validate(document)


def operator_objects(job: dict, namespace: str = "medsyn") -> list[dict]:
    """What the operator creates for the DaskJob ``job``: its DaskCluster and default
    DaskWorkerGroup (custom resources), and the scheduler Deployment and Service, a worker
    Deployment and the job's Pod (built-in kinds), through the operator's own functions."""
    _need("kopf", "pip install kopf kr8s rich")
    from dask_kubernetes.operator.controller import controller as op

    name, labels, annotations = job["metadata"]["name"], {}, {}
    cluster_spec = job["spec"]["cluster"]["spec"]
    cluster = op.build_cluster_spec(
        name, cluster_spec["worker"], cluster_spec["scheduler"], annotations, labels
    )
    group = op.build_default_worker_group_spec(name, cluster_spec["worker"], annotations, labels)
    return [
        cluster,
        group,
        op.build_scheduler_deployment_spec(
            name, cluster_spec["scheduler"]["spec"], annotations, labels
        ),
        op.build_scheduler_service_spec(
            name, cluster_spec["scheduler"]["service"], annotations, labels
        ),
        op.build_worker_deployment_spec(
            group["metadata"]["name"], namespace, name, "a1b2c3", group["spec"]["worker"]["spec"],
            annotations, labels,
        ),
        op.build_job_pod_spec(
            f"{name}-job", name, namespace, job["spec"]["job"]["spec"], annotations, labels
        ),
    ]


def check_built(document: dict, crds: dict[str, dict]) -> None:
    kv = _need("kubernetes_validate", "pip install kubernetes-validate")
    if document["apiVersion"].startswith("kubernetes.dask.org/"):
        check_crd(document, crds)
    else:
        kv.validate(document, KUBERNETES_VERSION, strict=True)


def _documents() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in MANIFESTS
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


def test_there_is_a_daskjob_with_a_gpu_worker_group_on_s3_data():
    jobs = [doc for _, doc in _documents() if doc["kind"] == "DaskJob"]
    assert jobs, f"no DaskJob in {MANIFESTS}"
    job = jobs[0]
    args = job["spec"]["job"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["medsyn-dask", "analyze"]
    assert any(a.startswith("--real=s3://") for a in args)
    worker = job["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "GPU=1" in worker["args"]


@pytest.mark.parametrize("name, document", _documents(), ids=[n for n, _ in _documents()])
def test_manifest_is_valid_for_the_operator_and_kubernetes(name, document, crds):
    check_crd(document, crds)
    if document["kind"] == "DaskJob":
        built = operator_objects(document)
        assert [b["kind"] for b in built] == [
            "DaskCluster", "DaskWorkerGroup", "Deployment", "Service", "Deployment", "Pod"
        ]
        for obj in built:
            check_built(obj, crds)


@pytest.mark.parametrize(
    "path, typo",
    [
        (("spec", "cluster", "spec", "worker"), ("replicas", "replica")),
        (("spec", "job", "spec", "containers", 0), ("imagePullPolicy", "imagePulPolicy")),
        (("spec", "cluster", "spec", "scheduler", "service"), ("type", "typ")),
    ],
)
def test_a_typo_in_a_field_fails(path, typo, crds):
    import jsonschema

    document = copy.deepcopy(next(d for _, d in _documents() if d["kind"] == "DaskJob"))
    target = document
    for key in path:
        target = target[key]
    target[typo[1]] = target.pop(typo[0])
    with pytest.raises(jsonschema.ValidationError, match=typo[1]):
        check_crd(document, crds)


def test_a_typo_in_a_built_object_fails(crds):
    kv = _need("kubernetes_validate", "pip install kubernetes-validate")
    job = next(d for _, d in _documents() if d["kind"] == "DaskJob")
    pod = operator_objects(job)[-1]
    pod["spec"]["containers"][0]["envFrm"] = pod["spec"]["containers"][0].pop("envFrom")
    with pytest.raises(kv.ValidationError, match="envFrm"):
        kv.validate(pod, KUBERNETES_VERSION, strict=True)
