#!/usr/bin/env python3
"""Plays the kubelet for a control plane that has none (e2e/scripts/k8s.sh): every pod of a
namespace gets the status a kubelet would write once its containers started: phase Running, each
container and native sidecar running, conditions Ready. Runs until killed; each pod is patched once
(by uid), through the pods/status subresource, with kubectl.

    fake-kubelet.py NAMESPACE
"""
import datetime
import json
import subprocess
import sys
import time


def kubectl(*args, stdin=None):
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)


def status_for(pod):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = pod["spec"]

    def running(c, sidecar=False):
        s = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": now}},
        }
        return s

    init = [running(c) for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "startTime": now,
        "conditions": conditions,
        "initContainerStatuses": init,
        "containerStatuses": [running(c) for c in spec.get("containers", [])],
    }


def main():
    ns = sys.argv[1]
    done = set()
    while True:
        out = kubectl("-n", ns, "get", "pods", "-o", "json")
        if out.returncode == 0:
            for pod in json.loads(out.stdout)["items"]:
                uid = pod["metadata"]["uid"]
                if uid in done or pod["metadata"].get("deletionTimestamp"):
                    continue
                patch = json.dumps({"status": status_for(pod)})
                r = kubectl("-n", ns, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
                            "--type=merge", "-p", patch)
                if r.returncode == 0:
                    done.add(uid)
                    print(f"fake-kubelet: pod {pod['metadata']['name']} Running", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
