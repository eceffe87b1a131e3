"""The agent beside a real Cassandra node under a CQL write load; run by bench/real-cassandra.sh.

Writes rows of incompressible 16 KiB blobs (compression off, so disk bytes ~ row bytes) into a
table with the default compaction (SizeTiered: compactions start at 4 SSTables) while
`tablesnap --mode cassandra -r -a` ships the keyspace to Garage. Measured over the window from the
agent's start until every live SSTable's index is written and the agent is idle:
- agent CPU seconds (utime+stime from /proc) and peak RSS (VmHWM), per GiB shipped (the sum of its
  `uploaded` bytes); the node's CPU seconds in the same window;
- recovery point per SSTable: its commit (the newest mtime among its files, sampled every 100 ms:
  TOC.txt and SAI files are written just before COMMIT) to its `index written` log line.
"""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import threading
import time
from datetime import datetime

from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args

ROW = 16 << 10


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vmhwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--tablesnap", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--node-pid", type=int, required=True)
    ap.add_argument("--nodetool", required=True)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--json")
    args = ap.parse_args()

    cluster = Cluster([args.host])
    s = cluster.connect()
    s.execute("CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    s.execute("CREATE TABLE bench.t (id bigint PRIMARY KEY, payload blob) WITH compression = {'enabled': 'false'}")
    ksdir = os.path.join(args.data, "bench")
    table = next(os.path.join(ksdir, d) for d in os.listdir(ksdir) if d.startswith("t-"))

    log_path = os.path.join(args.work, "agent.log")
    log = open(log_path, "w")
    agent = subprocess.Popen(
        [args.tablesnap, "--mode", "cassandra", "-r", "-a", "--log-format", "json", "-n", "bench",
         "--staging-dir", os.path.join(args.work, "staging"), os.environ["TABLESNAP_TEST_BUCKET"],
         "--endpoint-url", os.environ["TABLESNAP_TEST_S3_ENDPOINT"], ksdir],
        stderr=log, stdout=subprocess.DEVNULL)
    t0 = time.time()
    node0 = cpu_seconds(args.node_pid)

    # Commit times: the newest mtime seen among each SSTable's files.
    committed = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                for name in os.listdir(table):
                    m = re.match(r"^([a-z]{2}-[0-9a-z_]+-(?:big|bti)-)", name)
                    if not m or name.endswith(".tmp") or "_txn_" in name:
                        continue
                    try:
                        mt = os.stat(os.path.join(table, name)).st_mtime
                    except FileNotFoundError:
                        continue
                    committed[m.group(1)] = max(committed.get(m.group(1), 0), mt)
            except FileNotFoundError:
                pass
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()

    insert = s.prepare("INSERT INTO bench.t (id, payload) VALUES (?, ?)")
    rows = (args.mib << 20) // ROW
    batch = 512
    for start in range(0, rows, batch):
        params = [(i, os.urandom(ROW)) for i in range(start, min(rows, start + batch))]
        execute_concurrent_with_args(s, insert, params, concurrency=32)
    write_s = time.time() - t0
    subprocess.run(shlex.split(args.nodetool) + ["flush", "bench", "t"], check=True, capture_output=True)

    def live_data():
        return {n for n in os.listdir(table) if n.endswith("-Data.db")}

    def indexed():
        out = {}
        with open(log_path) as f:
            for line in f:
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if v.get("message") == "index written":
                    out.setdefault(v["key"].rsplit("/", 1)[1][: -len("-listdir.json")], v["timestamp"])
        return out

    deadline = time.time() + 1800
    while time.time() < deadline:
        done = indexed()
        if live_data() and live_data() <= set(done) and os.path.getmtime(log_path) < time.time() - 5:
            break
        time.sleep(1)
    else:
        raise SystemExit("the agent did not catch up within 30 minutes")
    stop.set()
    window = time.time() - t0
    agent_cpu = cpu_seconds(agent.pid)
    agent_rss = vmhwm_mib(agent.pid)
    node_cpu = cpu_seconds(args.node_pid) - node0
    agent.terminate()
    agent.wait(60)

    shipped = 0
    with open(log_path) as f:
        for line in f:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("message") == "uploaded":
                shipped += int(v.get("bytes", 0))
    rpo = []
    for data, ts in indexed().items():
        prefix = data[: -len("Data.db")]
        if prefix in committed:
            t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
            rpo.append(max(0.0, t - committed[prefix]))
    rpo.sort()
    gib = shipped / (1 << 30)
    res = {
        "rows_mib": args.mib,
        "write_seconds": round(write_s, 1),
        "window_seconds": round(window, 1),
        "shipped_gib": round(gib, 3),
        "agent_cpu_seconds": round(agent_cpu, 1),
        "agent_cpu_seconds_per_gib": round(agent_cpu / gib, 1) if gib else None,
        "agent_peak_rss_mib": round(agent_rss, 1),
        "node_cpu_seconds": round(node_cpu, 1),
        "sstables_indexed": len(rpo),
        "recovery_point_p50_s": round(statistics.median(rpo), 2) if rpo else None,
        "recovery_point_p99_s": round(rpo[min(len(rpo) - 1, int(len(rpo) * 0.99))], 2) if rpo else None,
    }
    for k, v in res.items():
        print(f"{k:28} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    cluster.shutdown()


if __name__ == "__main__":
    main()
