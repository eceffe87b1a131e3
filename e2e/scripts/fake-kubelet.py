#!/usr/bin/env python3
"""Plays the kubelet for a control plane that has none (e2e/scripts/k8s.sh). For every pod of a
namespace it writes, through the pods/status subresource, what a kubelet would once the containers
started: phase Running, each container and native sidecar running, conditions Ready, a pod IP.

With TABLESNAP_AGENT_BIN set it also *runs* each pod's `tablesnap` native sidecar, as a kubelet
would run its container, so that the operator reads a real agent's report from the pod's IP:
- the pod gets its own loopback address (127.0.4.N) as its IP, and `--http-listen 0.0.0.0:P`
  becomes `127.0.4.N:P`;
- each volume mount of the sidecar becomes a directory under FAKE_KUBELET_DIR/<pod>/<volume>,
  and arguments under a mount path are rewritten to it;
- env: `value`, `fieldRef` (metadata.name, metadata.namespace, status.podIP) and `secretKeyRef`
  (read with kubectl, as the kubelet reads Secrets); `$(VAR)` in args is expanded;
- a Secret or key that does not exist leaves the sidecar waiting with the kubelet's reason,
  CreateContainerConfigError, and its message; the pod stays Pending.
The operator's pre-flight pods (label tablesnap.io/preflight) are run to completion the same
way (`tablesnap --version` with the sidecar's env): phase Succeeded or Failed by exit code, or
Pending with CreateContainerConfigError when a Secret is missing.
A pod that is deleted has its agent stopped. SIGTERM stops every agent, then the script.

    fake-kubelet.py NAMESPACE
"""
import base64
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

AGENT_BIN = os.environ.get("TABLESNAP_AGENT_BIN")
WORK = os.environ.get("FAKE_KUBELET_DIR", "/tmp/fake-kubelet")
agents = {}  # pod uid -> Popen


def kubectl(*args, stdin=None):
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigError(Exception):
    """What the kubelet reports as CreateContainerConfigError."""


def secret_value(ns, name, key):
    out = kubectl("-n", ns, "get", "secret", name, "-o", "json")
    if out.returncode != 0:
        raise ConfigError(f'secret "{name}" not found')
    data = json.loads(out.stdout).get("data") or {}
    if key not in data:
        raise ConfigError(f"couldn't find key {key} in Secret {ns}/{name}")
    return base64.b64decode(data[key]).decode()


def container_env(pod, c, ip):
    ns = pod["metadata"]["namespace"]
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        src = e.get("valueFrom", {})
        if "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            env[e["name"]] = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns,
                              "status.podIP": ip}.get(path, "")
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            try:
                env[e["name"]] = secret_value(ns, ref["name"], ref["key"])
            except ConfigError:
                if not ref.get("optional"):
                    raise
    return env


def start_agent(pod, c, ip):
    """Run the sidecar `c` of `pod` as a local process; raises ConfigError like the kubelet."""
    name = pod["metadata"]["name"]
    env = container_env(pod, c, ip)
    mounts = {}
    for m in c.get("volumeMounts", []):
        host = os.path.join(WORK, name, m["name"])
        os.makedirs(host, exist_ok=True)
        mounts[m["mountPath"].rstrip("/")] = host
    args = []
    for a in c.get("args", []):
        a = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a)
        a = re.sub(r"^0\.0\.0\.0:", f"{ip}:", a)
        for path, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if a == path or a.startswith(path + "/"):
                a = host + a[len(path):]
                break
        args.append(a)
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full_env.update(env)
    print(f"fake-kubelet: pod {name}: {AGENT_BIN} {' '.join(args)}", flush=True)
    return subprocess.Popen([AGENT_BIN, *args], env=full_env, stdout=log, stderr=subprocess.STDOUT)


def running(c):
    return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
            "restartCount": 0, "started": True, "state": {"running": {"startedAt": now()}}}


def waiting(c, reason, message):
    return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
            "restartCount": 0, "started": False,
            "state": {"waiting": {"reason": reason, "message": message}}}


def status_for(pod, ip, sidecar_error=None):
    spec = pod["spec"]
    init = []
    for c in spec.get("initContainers", []):
        if c.get("restartPolicy") != "Always":
            continue
        if c["name"] == "tablesnap" and sidecar_error:
            init.append(waiting(c, "CreateContainerConfigError", sidecar_error))
        else:
            init.append(running(c))
    if sidecar_error:
        return {"phase": "Pending", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now(),
                "initContainerStatuses": init,
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]}
    conditions = [{"type": t, "status": "True", "lastTransitionTime": now()}
                  for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    return {"phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now(), "conditions": conditions, "initContainerStatuses": init,
            "containerStatuses": [running(c) for c in spec.get("containers", [])]}


def run_preflight(pod):
    """Run a pre-flight pod's container to its end; returns the pod status to write."""
    c = pod["spec"]["containers"][0]
    try:
        env = container_env(pod, c, "127.0.0.1")
    except ConfigError as e:
        return {"phase": "Pending", "containerStatuses": [waiting(c, "CreateContainerConfigError", str(e))]}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full_env.update(env)
    if AGENT_BIN:
        r = subprocess.run([AGENT_BIN, *c.get("args", [])], env=full_env, capture_output=True, text=True)
        code, out = r.returncode, (r.stdout + r.stderr).strip()
    else:
        code, out = 0, ""
    print(f"fake-kubelet: pre-flight pod {pod['metadata']['name']} exited {code}: {out}", flush=True)
    state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                            "message": out[-200:], "startedAt": now(), "finishedAt": now()}}
    return {"phase": "Succeeded" if code == 0 else "Failed", "startTime": now(),
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "",
                                   "ready": False, "restartCount": 0, "started": False, "state": state}]}


def stop_all(*_):
    for p in agents.values():
        p.terminate()
    for p in agents.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    sys.exit(0)


def main():
    ns = sys.argv[1]
    os.makedirs(WORK, exist_ok=True)
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    done = set()
    ips = {}  # pod uid -> its IP
    said = {}  # pod uid -> the state last printed
    while True:
        out = kubectl("-n", ns, "get", "pods", "-o", "json")
        if out.returncode == 0:
            pods = json.loads(out.stdout)["items"]
            live = {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}
            for uid in [u for u in agents if u not in live]:
                agents.pop(uid).terminate()
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if uid in done or uid not in live:
                    continue
                if "tablesnap.io/preflight" in pod["metadata"].get("labels", {}):
                    status = run_preflight(pod)
                    r = kubectl("-n", ns, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
                                "--type=merge", "-p", json.dumps({"status": status}))
                    if r.returncode == 0 and status["phase"] != "Pending":
                        done.add(uid)
                    continue
                if uid not in ips:
                    ips[uid] = f"127.0.4.{len(ips) + 1}" if AGENT_BIN else "127.0.0.1"
                ip = ips[uid]
                sidecar = next((c for c in pod["spec"].get("initContainers", [])
                                if c["name"] == "tablesnap" and c.get("restartPolicy") == "Always"), None)
                error = None
                if AGENT_BIN and sidecar:
                    try:
                        agents[uid] = start_agent(pod, sidecar, ip)
                    except ConfigError as e:
                        error = str(e)
                patch = json.dumps({"status": status_for(pod, ip, error)})
                r = kubectl("-n", ns, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
                            "--type=merge", "-p", patch)
                if r.returncode == 0:
                    # A pod whose Secret is missing is looked at again, as the kubelet retries.
                    if not error:
                        done.add(uid)
                    state = f"Pending ({error})" if error else f"Running on {ip}"
                    if said.get(uid) != state:
                        said[uid] = state
                        print(f"fake-kubelet: pod {pod['metadata']['name']} {state}", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
