#!/usr/bin/python3
"""Offline validation of deploy/k8s (no cluster, no kubectl).

1. Renders each variant (cpu, gpu) from its kustomization.yaml. The
   kustomizations only list resources, which this test enforces, so the
   rendering here is exactly what `kubectl apply -k` would send.
2. Checks what ties the objects together: selectors match pod labels, the
   Service and ServiceMonitor name container ports that exist, the probes
   use the standard gRPC health service on the gRPC port, the HPA scales
   the Deployment on a metric the prometheus-adapter rules provide, only the
   GPU variant asks for nvidia.com/gpu, the pod runs as the Dockerfile's
   non-root user, and the ServiceMonitor's job label matches the alert rules.
3. Validates every object against the Kubernetes and Prometheus Operator
   schemas of the npm packages kubernetes-models and
   @kubernetes-models/prometheus-operator, installed at test time into
   --npm_dir. Without npm or the registry this part is skipped with a
   message (exit 77 when everything else passed).

Exit 0 on success, 1 on failure, 77 when the schema part could not run.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402  pylint: disable=wrong-import-position

NPM_PACKAGES = ("kubernetes-models@4.5.1", "@kubernetes-models/prometheus-operator@4.4.4")
VARIANTS = ("cpu", "gpu")
ADAPTER_VALUES = "prometheus-adapter/values.yaml"


def render(directory, seen=None):
    """[(source path, object)] of a kustomization directory, recursively."""
    seen = seen or set()
    directory = os.path.realpath(directory)
    lib.check(directory not in seen, f"kustomization cycle at {directory}")
    seen.add(directory)
    with open(os.path.join(directory, "kustomization.yaml"), encoding="utf-8") as f:
        kustomization = yaml.safe_load(f)
    extra = set(kustomization) - {"apiVersion", "kind", "resources"}
    lib.check(not extra, f"{directory}/kustomization.yaml uses {sorted(extra)}: this test "
              "renders resource lists only")
    objects = []
    for resource in kustomization["resources"]:
        path = os.path.join(directory, resource)
        if os.path.isdir(path):
            objects += render(path, seen)
        else:
            with open(path, encoding="utf-8") as f:
                objects += [(path, doc) for doc in yaml.safe_load_all(f) if doc]
    return objects


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_variant(variant, objects, dockerfile_uid, adapter_metrics, failures):
    def fail(message):
        failures.append(f"[{variant}] {message}")

    by_kind = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in by_kind:
            fail(f"duplicate {key}")
        by_kind[key] = obj
    kinds = sorted(k for k, _ in by_kind)
    want = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "ServiceMonitor"]
    if kinds != want:
        fail(f"objects {kinds}, expected {want}")
        return

    deploy = by_kind[("Deployment", "normserve")]
    pod = deploy["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    if not matches(deploy["spec"]["selector"]["matchLabels"], pod_labels):
        fail("Deployment selector does not match its pod labels")
    spec = pod["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports != {"grpc": 50051, "metrics": 9464}:
        fail(f"container ports {ports}")
    args = container["args"]
    for flag in ("--port=50051", "--metrics_port=9464", f"--backend={variant if variant == 'cpu' else 'cuda'}"):
        if flag not in args:
            fail(f"container args lack {flag}: {args}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = container.get(probe, {}).get("grpc")
        # No `service` field: the server's overall health (service "").
        if not grpc or grpc.get("port") != ports.get("grpc") or grpc.get("service"):
            fail(f"{probe} is not a gRPC health probe on port {ports.get('grpc')}: {container.get(probe)}")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    shutdown = [float(a.split("=")[1]) for a in args if a.startswith("--shutdown_grace_s=")]
    if not shutdown or grace <= shutdown[0] + 5:
        fail(f"terminationGracePeriodSeconds {grace} must exceed preStop (5 s) + --shutdown_grace_s {shutdown}")
    sec = spec.get("securityContext", {})
    if not sec.get("runAsNonRoot") or sec.get("runAsUser") != dockerfile_uid:
        fail(f"pod does not run as the Dockerfile's non-root user {dockerfile_uid}: {sec}")
    limits = container["resources"].get("limits", {})
    has_gpu = "nvidia.com/gpu" in limits
    if has_gpu != (variant == "gpu"):
        fail(f"nvidia.com/gpu limit {'present' if has_gpu else 'absent'}")
    image = container["image"]
    if not image.endswith("-" + ("cpu" if variant == "cpu" else "cuda")):
        fail(f"image {image} is not the {variant} build")

    svc = by_kind[("Service", "normserve")]
    if svc["spec"].get("clusterIP") != "None":
        fail("Service is not headless (clusterIP: None)")
    if not matches(svc["spec"]["selector"], pod_labels):
        fail("Service selector does not match the pods")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for p in svc_ports.values():
        if p["targetPort"] not in ports:
            fail(f"Service port {p['name']} targets unknown container port {p['targetPort']}")

    pdb = by_kind[("PodDisruptionBudget", "normserve")]
    if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        fail("PodDisruptionBudget selector does not match the pods")
    if pdb["spec"].get("maxUnavailable", 0) >= deploy["spec"]["replicas"]:
        fail("PodDisruptionBudget allows every replica to go")

    sm = by_kind[("ServiceMonitor", "normserve")]
    if not matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]):
        fail("ServiceMonitor selector does not match the Service")
    for ep in sm["spec"]["endpoints"]:
        if ep["port"] not in svc_ports or ep.get("path", "/metrics") != "/metrics":
            fail(f"ServiceMonitor endpoint {ep} is not the Service's metrics port")
    # The Operator's job label is the Service name unless jobLabel says
    # otherwise; the alerts select job="normserve".
    if sm["spec"].get("jobLabel") or svc["metadata"]["name"] != "normserve":
        fail("scraped series would not carry job=\"normserve\"")

    hpa = by_kind[("HorizontalPodAutoscaler", "normserve")]
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"], ref["apiVersion"]) != ("Deployment", "normserve", "apps/v1"):
        fail(f"HPA scales {ref}")
    if hpa["spec"]["minReplicas"] > deploy["spec"]["replicas"] or \
            hpa["spec"]["minReplicas"] <= pdb["spec"].get("maxUnavailable", 0):
        fail("HPA minReplicas inconsistent with the Deployment and the PodDisruptionBudget")
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] == "Pods" and metric["pods"]["metric"]["name"] not in adapter_metrics:
            fail(f"HPA metric {metric['pods']['metric']['name']} has no prometheus-adapter rule "
                 f"(rules provide {sorted(adapter_metrics)})")


def adapter_metric_names(path):
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    names = set()
    for rule in values["rules"]["custom"]:
        names.add(rule["name"]["as"])
        if not re.search(r"normserve_\w+", rule["seriesQuery"]):
            raise lib.TestFailure(f"adapter rule {rule['name']} does not select a normserve series")
    return names


def dockerfile_user(path):
    with open(path, encoding="utf-8") as f:
        users = re.findall(r"^USER\s+(\d+)", f.read(), re.M)
    lib.check(users and len(set(users)) == 1, f"{path}: expected one numeric USER, got {users}")
    return int(users[0])


def npm_install(npm_dir):
    """Returns the node_modules directory, or None when npm cannot install."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        lib.log("SKIP schema validation: node/npm not installed (Debian packages nodejs, npm)")
        return None
    modules = os.path.join(npm_dir, "node_modules")
    stamp = os.path.join(npm_dir, "installed.txt")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            if f.read() == "\n".join(NPM_PACKAGES):
                return modules
    os.makedirs(npm_dir, exist_ok=True)
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", npm_dir,
                        *NPM_PACKAGES], capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0:
        lib.log(f"SKIP schema validation: npm install failed (offline?):\n{r.stderr[-2000:]}")
        return None
    with open(stamp, "w", encoding="utf-8") as f:
        f.write("\n".join(NPM_PACKAGES))
    return modules


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k8s_dir", required=True)
    parser.add_argument("--dockerfile", required=True)
    parser.add_argument("--npm_dir", required=True, help="cache directory for the npm packages")
    args = parser.parse_args()

    failures = []
    uid = dockerfile_user(args.dockerfile)
    adapter = adapter_metric_names(os.path.join(args.k8s_dir, ADAPTER_VALUES))
    rendered = []
    for variant in VARIANTS:
        objects = render(os.path.join(args.k8s_dir, variant))
        lib.log(f"{variant}: {len(objects)} objects")
        check_variant(variant, [o for _, o in objects], uid, adapter, failures)
        rendered += [{"source": os.path.relpath(src, args.k8s_dir), "object": obj} for src, obj in objects]

    rc = 0
    modules = npm_install(args.npm_dir)
    if modules is None:
        rc = lib.SKIP
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(rendered, f)
            objects_json = f.name
        try:
            env = dict(os.environ, NODE_PATH=modules)
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate_k8s.cjs")
            r = subprocess.run(["node", script, objects_json], env=env, capture_output=True,
                               text=True, check=False)
            lib.log(r.stdout.rstrip())
            if r.returncode != 0:
                failures.append(f"schema validation failed: {r.stderr}")
        finally:
            os.unlink(objects_json)

    for failure in failures:
        lib.log("FAIL:", failure)
    if failures:
        lib.log("FAILED")
        return 1
    lib.log("PASS" if rc == 0 else "SKIP (consistency checks passed)")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lib.TestFailure as e:
        lib.log("FAIL:", e)
        sys.exit(1)
