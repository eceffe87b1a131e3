#!/usr/bin/env python3
"""TableSnap side by side with s5cmd and the AWS CLI: one Garage, the same files, one run.

Run through bench/run.sh, which builds the agent, starts Garage and the peers' venv. Scenarios:
  bulk     8 x 128 MiB, 1 x 1 GiB, 2,000 x 256 KiB: agent (rename into the watched dir until every
           data object is in the bucket), with --checksum md5 (the default) and crc64nvme, vs
           `s5cmd cp` vs `aws s3 cp --recursive`
  latency  1,000 x 64 KiB renamed one by one at 50/s: rename to object visible (HEAD polling)
  startup  100,000 files already in the bucket, agent -B: time until idle, S3 requests
  memory   4 x 2 GiB with --multipart-chunk-size 256: peak RSS
  restore  tableslurp of 1 GiB (MD5 and CRC64NVME backups) vs `s5cmd cp` of the same objects
Wall time, CPU seconds (user+sys of the process tree) and peak RSS per client; Garage's own CPU
seconds in the same window from /proc. Prints a table and writes it as JSON.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

MIB = 1 << 20
CRC = "agent --checksum crc64nvme"
CRC_ARGS = ["--checksum", "crc64nvme"]
SLURP_MD5 = "tableslurp, MD5 backup"
SLURP_CRC = "tableslurp, CRC64NVME backup"
RESTORE_ROUNDS = 3
TICK = os.sysconf("SC_CLK_TCK")

FULL = {
    "bulk": [("8x128MiB", 8, 128 * MIB), ("1x1GiB", 1, 1024 * MIB), ("2000x256KiB", 2000, 256 << 10)],
    "latency": (1000, 64 << 10, 50.0),
    "startup": 100_000,
    "memory": (4, 2048 * MIB),
    "restore": "8x128MiB",
}
QUICK = {
    "bulk": [("4x8MiB", 4, 8 * MIB), ("1x32MiB", 1, 32 * MIB), ("200x64KiB", 200, 64 << 10)],
    "latency": (50, 64 << 10, 50.0),
    "startup": 2_000,
    "memory": (2, 40 * MIB),
    "restore": "4x8MiB",
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def proc_cpu(pid):
    """User+system CPU seconds of a live process (its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no memory left


def write_random(path, size):
    """Incompressible, unique content (Garage deduplicates and compresses blocks)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(os.urandom(n))
            left -= n


def write_patterned(path, size, pattern):
    """A large file made of one random pattern repeated: the agent reads, hashes and sends every
    byte, but Garage stores each distinct 1 MiB block once (the disk here cannot hold 2 x 8 GiB)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(pattern))
            f.write(pattern[:n])
            left -= n


def make_files(d, count, size, stem="f", data_last=False):
    """Files named stem0..; with data_last the last is an SSTable `-Data.db`, whose upload makes the
    agent write a `-listdir.json` index of the directory (what tableslurp restores from)."""
    os.makedirs(d, exist_ok=True)
    width = len(str(count))
    names = []
    for i in range(count):
        name = f"{stem}{i:0{width}d}"
        if data_last and i == count - 1:
            name = "nb-1-big-Data.db"
        write_random(os.path.join(d, name), size)
        names.append(name)
    return names


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tree_hwm_mib(pid):
    """Sum of VmHWM over a process and its descendants (0 when it is gone)."""
    total = 0.0
    try:
        total += proc_hwm_mib(pid)
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    total += tree_hwm_mib(int(child))
    except (OSError, ValueError):
        pass
    return total


def run_measured(cmd, env, garage_pid, logfile):
    """Runs a peer to completion: wall and CPU of its process tree (wait4), peak RSS sampled from
    /proc VmHWM (wait4's ru_maxrss would carry this Python process's RSS over fork and exec),
    and Garage's CPU in the same window."""
    g0 = proc_cpu(garage_pid)
    t0 = time.monotonic()
    peak = [0.0]
    with open(logfile, "ab") as lf:
        p = subprocess.Popen(cmd, env=env, stdout=lf, stderr=lf)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], tree_hwm_mib(p.pid))
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Reap only after the last sample: waitid with WNOWAIT leaves /proc/PID readable.
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], tree_hwm_mib(p.pid))
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}; see {logfile}")
    return {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss": peak[0],
        "garage_cpu": proc_cpu(garage_pid) - g0,
    }


class S3:
    """A small botocore client for listing, HEAD polling and clean-up (independent of the agent)."""

    def __init__(self, endpoint, bucket):
        import botocore.session
        from botocore.config import Config

        self.bucket = bucket
        self.c = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def keys(self, prefix):
        out = []
        token = None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = self.c.list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def exists(self, key):
        try:
            self.c.head_object(Bucket=self.bucket, Key=key)
            return True
        except self.c.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete_prefix(self, prefix):
        keys = self.keys(prefix)
        for i in range(0, len(keys), 1000):
            self.c.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
        return len(keys)


class Agent:
    """A running `tablesnap` with /metrics and a JSON log."""

    def __init__(self, h, paths, extra=(), tag="agent"):
        self.h = h
        self.port = free_port()
        self.logfile = os.path.join(h.work, f"{tag}.log")
        cmd = [
            h.tablesnap, "--endpoint-url", h.endpoint, "-n", "bench", "--log-format", "json",
            "--http-listen", f"127.0.0.1:{self.port}", *extra, h.bucket, *paths,
        ]
        self.started = time.monotonic()
        self.lf = open(self.logfile, "wb")
        self.p = subprocess.Popen(cmd, env=h.env, stdout=self.lf, stderr=self.lf)
        self.wait_until(lambda m: True, 30, "agent /metrics up")

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        m = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            m[name] = float(value)
        return m

    def metric(self, m, name):
        return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))

    def requests(self, m):
        return self.metric(m, "tablesnap_storage_requests")

    def wait_until(self, pred, timeout, what, every=0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"agent exited {self.p.returncode}; see {self.logfile}")
            m = self.metrics()
            if m is not None and pred(m):
                return m
            time.sleep(every)
        raise RuntimeError(f"timed out waiting for {what}; see {self.logfile}")

    def log_lines(self):
        self.lf.flush()
        out = []
        with open(self.logfile, "rb") as f:
            for raw in f:
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    pass
        return out

    def cpu(self):
        return proc_cpu(self.p.pid)

    def hwm(self):
        return proc_hwm_mib(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(40)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.lf.close()


class Harness:
    def __init__(self, a):
        self.quick = a.quick
        self.memory_mib = a.memory_mib
        self.sizes = QUICK if a.quick else FULL
        self.work = os.path.abspath(a.work)
        self.tablesnap = a.tablesnap
        self.tableslurp = a.tableslurp
        self.s5cmd = a.s5cmd
        self.aws = a.aws
        self.endpoint = os.environ["TABLESNAP_TEST_S3_ENDPOINT"]
        self.bucket = os.environ["TABLESNAP_TEST_BUCKET"]
        with open(os.path.join(os.environ["TABLESNAP_TEST_GARAGE_DIR"], "node1", "pid")) as f:
            self.garage_pid = int(f.read())
        self.env = dict(os.environ)
        self.env["AWS_ENDPOINT_URL"] = self.endpoint
        # The AWS CLI's newer botocore adds CRC trailers; keep every client on plain PUTs.
        self.env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
        self.env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = "when_required"
        self.s3 = S3(self.endpoint, self.bucket)
        self.results = {"machine": machine(), "quick": self.quick, "scenarios": {}}
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)

    def agent_key(self, path):
        return f"bench:{path}"

    def quiesce(self, limit=30.0):
        """Waits (at most `limit` seconds) until Garage is idle, under 5 % of a core over half a
        second: its work left over from the previous client (deleting blocks, metadata) would
        otherwise be charged to the next one."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            c0 = proc_cpu(self.garage_pid)
            time.sleep(0.5)
            if proc_cpu(self.garage_pid) - c0 < 0.025:
                return

    def note_load(self, name):
        self.results["scenarios"].setdefault(name, {})["load_at_start"] = loadavg()
        log(f"== {name} (load {loadavg()}, {disk_free(self.work)} free)")

    # 1 -------------------------------------------------------------------------------------
    def bulk(self):
        self.note_load("bulk")
        res = self.results["scenarios"]["bulk"]
        for name, count, size in self.sizes["bulk"]:
            src = os.path.join(self.work, "src", name)
            watch = os.path.join(self.work, "watch", name)
            log(f"  {name}: writing {count} x {size // 1024} KiB")
            names = make_files(src, count, size, data_last=True)
            os.makedirs(watch)
            gib = count * size / (1024 * MIB)
            row = {"gib": gib}
            # The agent with CRC64NVME first: it writes blocks Garage has not seen (Garage stores
            # blocks by content, so later runs of the same files write less). Its objects stay
            # for the restore scenario.
            row[CRC] = self.agent_variant(src, watch, names, "-crc", CRC_ARGS,
                                          keep=name == self.sizes["restore"])
            log(f"  {name}: agent crc64nvme {row[CRC]['wall']:.2f}s")
            row["agent"] = self.agent_bulk(src, watch, names)
            log(f"  {name}: agent {row['agent']['wall']:.2f}s")
            if size > 256 * MIB:
                # The Python tool's default sends files up to 5 GiB in one PUT (one stream); the
                # same files in 256 MiB parts show what that default costs.
                for n in names:
                    os.rename(os.path.join(watch, n), os.path.join(src, n))
                mp = ["--max-upload-size", "256"]
                row[CRC + " --max-upload-size 256"] = self.agent_variant(
                    src, watch, names, "-crc-mp", CRC_ARGS + mp)
                row["agent --max-upload-size 256"] = self.agent_variant(src, watch, names, "-mp", mp)
                for n in names:
                    os.rename(os.path.join(src, n), os.path.join(watch, n))
                log(f"  {name}: agent multipart {row['agent --max-upload-size 256']['wall']:.2f}s")
            self.quiesce()
            row["s5cmd"] = run_measured(
                [self.s5cmd, "--endpoint-url", self.endpoint, "cp", f"{watch}/*",
                 f"s3://{self.bucket}/s5cmd/{name}/"],
                self.env, self.garage_pid, os.path.join(self.work, "s5cmd.log"))
            log(f"  {name}: s5cmd {row['s5cmd']['wall']:.2f}s")
            self.quiesce()
            row["aws"] = run_measured(
                [self.aws, "--endpoint-url", self.endpoint, "s3", "cp", "--recursive", "--quiet",
                 watch, f"s3://{self.bucket}/aws/{name}/"],
                self.env, self.garage_pid, os.path.join(self.work, "aws.log"))
            log(f"  {name}: aws {row['aws']['wall']:.2f}s")
            for peer in ("s5cmd", "aws"):
                got = len(self.s3.keys(f"{peer}/{name}/"))
                if got != count:
                    raise RuntimeError(f"{peer} {name}: {got} of {count} objects")
            res[name] = row
            shutil.rmtree(src)
            if name != self.sizes["restore"]:
                shutil.rmtree(watch)
            for peer in ("s5cmd", "aws"):
                self.s3.delete_prefix(f"{peer}/{name}/")

    def agent_variant(self, src, watch, names, suffix, extra, keep=False):
        """The agent on `watch + suffix` with `extra` flags; the files go back to `src` after."""
        w = watch + suffix
        os.makedirs(w)
        r = self.agent_bulk(src, w, names, extra=extra)
        for n in names:
            os.rename(os.path.join(w, n), os.path.join(src, n))
        shutil.rmtree(w)
        if not keep:
            self.s3.delete_prefix(self.agent_key(w) + "/")
        return r

    def agent_bulk(self, src, watch, names, extra=()):
        self.quiesce()
        agent = Agent(self, [watch], extra=extra, tag=f"agent-bulk-{os.path.basename(watch)}")
        try:
            m0 = agent.metrics()
            c0, g0 = agent.cpu(), proc_cpu(self.garage_pid)
            t0 = time.monotonic()
            for n in names:
                os.rename(os.path.join(src, n), os.path.join(watch, n))
            want = len(names)
            agent.wait_until(
                lambda m: agent.metric(m, "tablesnap_files_shipped_total") >= want,
                3600, "files shipped")
            wall = time.monotonic() - t0
            cpu_data, g_data = agent.cpu() - c0, proc_cpu(self.garage_pid) - g0
            # Independent check: every data object is in the bucket.
            prefix = self.agent_key(watch) + "/"
            data = [k for k in self.s3.keys(prefix) if not k.endswith("-listdir.json")]
            if len(data) != want:
                raise RuntimeError(f"agent: {len(data)} of {want} objects in the bucket")
            # Then until idle: the index of the directory written too.
            m = agent.wait_until(
                lambda m: agent.metric(m, "tablesnap_indexes_written_total") >= 1
                and agent.metric(m, "tablesnap_queue_depth") == 0,
                3600, "indexes written")
            idle = time.monotonic() - t0
            return {
                "wall": wall,
                "cpu": cpu_data,
                "rss": agent.hwm(),
                "garage_cpu": g_data,
                "wall_idle": idle,
                "cpu_idle": agent.cpu() - c0,
                "requests": agent.requests(m) - agent.requests(m0),
            }
        finally:
            agent.stop()

    # 2 -------------------------------------------------------------------------------------
    def latency(self):
        self.note_load("latency")
        count, size, rate = self.sizes["latency"]
        src = os.path.join(self.work, "src", "latency")
        watch = os.path.join(self.work, "watch", "latency")
        names = make_files(src, count, size)
        os.makedirs(watch)
        agent = Agent(self, [watch], tag="agent-latency")
        renamed, seen = {}, {}
        pending = {}
        lock = threading.Lock()
        done = threading.Event()
        rounds = []

        def poll():
            # HEAD each key renamed but not yet seen, round after round.
            while not done.is_set():
                with lock:
                    keys = list(pending)
                if not keys:
                    time.sleep(0.001)
                    continue
                r0 = time.monotonic()
                for k in keys:
                    if self.s3.exists(k):
                        t = time.time()
                        with lock:
                            seen[k] = t
                            pending.pop(k, None)
                rounds.append(time.monotonic() - r0)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            start = time.monotonic() + 0.1
            for i, n in enumerate(names):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                dst = os.path.join(watch, n)
                os.rename(os.path.join(src, n), dst)
                t = time.time()
                key = self.agent_key(dst)
                with lock:
                    renamed[key] = t
                    pending[key] = t
            deadline = time.monotonic() + 120
            while pending and time.monotonic() < deadline:
                time.sleep(0.05)
            done.set()
            poller.join()
            if pending:
                raise RuntimeError(f"latency: {len(pending)} objects never appeared")
            # Second view: the agent's own "uploaded" log lines.
            logged = {}
            for line in agent.log_lines():
                if line.get("message") == "uploaded" and line.get("key") in renamed:
                    ts = parse_ts(line.get("timestamp"))
                    if ts is not None:
                        logged[line["key"]] = ts
        finally:
            done.set()
            agent.stop()
        head = sorted(seen[k] - renamed[k] for k in renamed)
        own = sorted(logged[k] - renamed[k] for k in logged)
        self.results["scenarios"]["latency"].update({
            "files": count,
            "rate": rate,
            "head_p50_ms": pct(head, 50) * 1000,
            "head_p99_ms": pct(head, 99) * 1000,
            "head_max_ms": head[-1] * 1000,
            "poll_round_p50_ms": pct(sorted(rounds), 50) * 1000 if rounds else None,
            "log_p50_ms": pct(own, 50) * 1000 if own else None,
            "log_p99_ms": pct(own, 99) * 1000 if own else None,
        })
        shutil.rmtree(watch)
        shutil.rmtree(src)

    # 3 -------------------------------------------------------------------------------------
    def startup(self):
        self.note_load("startup")
        count = self.sizes["startup"]
        d = os.path.join(self.work, "watch", "startup")
        log(f"  writing {count} files and seeding the bucket with s5cmd")
        os.makedirs(d)
        width = len(str(count))
        for i in range(count):
            with open(os.path.join(d, f"f{i:0{width}d}"), "wb") as f:
                f.write(b"x" * 100)
        seed = run_measured(
            [self.s5cmd, "--endpoint-url", self.endpoint, "cp", f"{d}/*",
             f"s3://{self.bucket}/{self.agent_key(d)}/"],
            self.env, self.garage_pid, os.path.join(self.work, "s5cmd.log"))
        got = len(self.s3.keys(self.agent_key(d) + "/"))
        if got != count:
            raise RuntimeError(f"seeding: {got} of {count} objects")
        log(f"  seeded in {seed['wall']:.1f}s; starting the agent with -B")
        t0 = time.monotonic()
        agent = Agent(self, [d], extra=["-B"], tag="agent-startup")
        try:
            def idle(m):
                lines = [x for x in agent.log_lines() if x.get("message") == "scan finished"]
                return bool(lines) and agent.metric(m, "tablesnap_queue_depth") == 0

            m = agent.wait_until(idle, 600, "start-up scan", every=0.05)
            wall = time.monotonic() - t0
            scan = [x for x in agent.log_lines() if x.get("message") == "scan finished"][0]
            # Anything it does right after the scan (indexes) counts too: settle for a second.
            time.sleep(1.0)
            m = agent.metrics()
            self.results["scenarios"]["startup"].update({
                "files": count,
                "wall": wall,
                "requests": agent.requests(m),
                "by_kind": {k: v for k, v in m.items() if k.startswith("tablesnap_storage_requests")},
                "list_requests": scan.get("list_requests"),
                "queued": scan.get("queued"),
                "shipped": agent.metric(m, "tablesnap_files_shipped_total"),
                "cpu": agent.cpu(),
                "rss": agent.hwm(),
            })
        finally:
            agent.stop()
        shutil.rmtree(d)
        self.s3.delete_prefix(self.agent_key(d) + "/")

    # 4 -------------------------------------------------------------------------------------
    def memory(self):
        self.note_load("memory")
        count, size = self.sizes["memory"]
        if self.memory_mib:
            size = self.memory_mib * MIB
        src = os.path.join(self.work, "src", "memory")
        watch = os.path.join(self.work, "watch", "memory")
        need = size + (64 if self.quick else 512) * MIB
        st = os.statvfs(self.work)
        if st.f_bavail * st.f_frsize < need:
            raise RuntimeError(f"memory: needs {need >> 30} GiB free in {self.work}")
        # One file (a 64 MiB random pattern repeated) under `count` names (hard links): the agent
        # reads, hashes and sends every byte of each; the disk holds one copy.
        log(f"  writing {size // MIB} MiB under {count} names")
        os.makedirs(src)
        names = [f"f{i}" for i in range(count)]
        write_patterned(os.path.join(src, names[0]), size, os.urandom(min(size, 64 * MIB)))
        for n in names[1:]:
            os.link(os.path.join(src, names[0]), os.path.join(src, n))
        os.makedirs(watch)
        agent = Agent(self, [watch], extra=["--multipart-chunk-size", "256"], tag="agent-memory")
        try:
            c0, g0 = agent.cpu(), proc_cpu(self.garage_pid)
            t0 = time.monotonic()
            for n in names:
                os.rename(os.path.join(src, n), os.path.join(watch, n))
            agent.wait_until(
                lambda m: agent.metric(m, "tablesnap_files_shipped_total") >= count,
                3600, "files shipped", every=0.1)
            self.results["scenarios"]["memory"].update({
                "gib": count * size / (1024 * MIB),
                "files": count,
                "wall": time.monotonic() - t0,
                "cpu": agent.cpu() - c0,
                "garage_cpu": proc_cpu(self.garage_pid) - g0,
                "rss": agent.hwm(),
            })
        finally:
            agent.stop()
        shutil.rmtree(watch)
        shutil.rmtree(src)
        self.s3.delete_prefix(self.agent_key(watch) + "/")

    # 5 -------------------------------------------------------------------------------------
    def restore(self):
        self.note_load("restore")
        name = self.sizes["restore"]
        origin = os.path.join(self.work, "watch", name)
        out = self.results["scenarios"]["restore"]
        out["set"] = name
        # The same files backed up twice by the bulk scenario: with MD5 (under `origin`) and with
        # CRC64NVME (under `origin-crc`); tableslurp verifies each by what it records. Each client
        # runs `rounds` times, the order rotating so none always goes first (cold caches) or
        # right after another (Garage's leftover work); the median wall time counts.
        cmds = {
            SLURP_MD5: [self.tableslurp, "--endpoint-url", self.endpoint, "-n", "bench", self.bucket, origin],
            SLURP_CRC: [self.tableslurp, "--endpoint-url", self.endpoint, "-n", "bench", self.bucket,
                        origin + "-crc"],
            "s5cmd": [self.s5cmd, "--endpoint-url", self.endpoint, "cp", "--exclude", "*-listdir.json",
                      f"s3://{self.bucket}/{self.agent_key(origin)}/*"],
        }
        clients = list(cmds)
        runs = {c: [] for c in clients}
        rounds = 1 if self.quick else RESTORE_ROUNDS
        for r in range(rounds):
            for i in range(len(clients)):
                client = clients[(i + r) % len(clients)]
                dest = os.path.join(self.work, "restore-out")
                shutil.rmtree(dest, ignore_errors=True)
                logfile = os.path.join(self.work, f"restore-{r}-{i}.log")
                self.quiesce()
                target = [dest] if client != "s5cmd" else [dest + "/"]
                runs[client].append(run_measured(cmds[client] + target, self.env, self.garage_pid, logfile))
                if client != "s5cmd":
                    with open(logfile) as f:
                        text = f.read()
                    if "0 checked by size only" not in text or " 0 failed" not in text:
                        raise RuntimeError(f"restore: {client} did not verify every file:\n{text[-2000:]}")
                # Every client got the same bytes.
                for n in sorted(os.listdir(origin)):
                    with open(os.path.join(origin, n), "rb") as f1, open(os.path.join(dest, n), "rb") as f2:
                        if f1.read() != f2.read():
                            raise RuntimeError(f"restore: {client} restored {n} wrong")
                shutil.rmtree(dest)
        for c in clients:
            by_wall = sorted(runs[c], key=lambda x: x["wall"])
            out[c] = dict(by_wall[len(by_wall) // 2])
            out[c]["walls"] = [x["wall"] for x in runs[c]]
        out["gib"] = sum(os.path.getsize(os.path.join(origin, n)) for n in os.listdir(origin)) / (1024 * MIB)
        shutil.rmtree(origin)
        self.s3.delete_prefix(self.agent_key(origin) + "/")
        self.s3.delete_prefix(self.agent_key(origin + "-crc") + "/")


def parse_ts(s):
    # tracing's JSON timestamps: 2026-11-26T13:24:29.123456Z
    if not s:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", s)
    if not m:
        return None
    import calendar

    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return secs + float(m.group(2) or 0)


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def disk_free(path):
    st = os.statvfs(path)
    return f"{st.f_bavail * st.f_frsize / (1 << 30):.0f} GiB"


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)),
        "kernel": os.uname().release,
    }


def fmt(x, unit=""):
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.2f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def report(r):
    m = r["machine"]
    lines = []
    lines.append(f"Machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB RAM, Linux {m['kernel']}; "
                 f"Garage single node on loopback; {'QUICK smoke sizes' if r['quick'] else 'full sizes'}")
    s = r["scenarios"]
    if "bulk" in s:
        lines.append("")
        lines.append(f"1. Bulk upload (load at start {s['bulk'].get('load_at_start')})")
        lines.append("| set | client | wall s | CPU s | CPU s/GiB | peak RSS MiB | Garage CPU s | wall vs s5cmd | CPU vs s5cmd |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, row in s["bulk"].items():
            if name == "load_at_start":
                continue
            base = row["s5cmd"]
            for client in [c for c in row if c != "gib"]:
                x = row[client]
                lines.append(
                    f"| {name} | {client} | {x['wall']:.2f} | {x['cpu']:.2f} | {x['cpu'] / row['gib']:.2f} | "
                    f"{x['rss']:.0f} | {x['garage_cpu']:.2f} | {x['wall'] / base['wall']:.2f}x | "
                    f"{x['cpu'] / base['cpu']:.2f}x |")
            a = row["agent"]
            lines.append(f"| {name} | agent until index written | {a['wall_idle']:.2f} | {a['cpu_idle']:.2f} | "
                         f"{a['cpu_idle'] / row['gib']:.2f} | | | {a['wall_idle'] / base['wall']:.2f}x | "
                         f"{a['cpu_idle'] / base['cpu']:.2f}x |")
    if "latency" in s:
        x = s["latency"]
        lines.append("")
        lines.append(f"2. Latency, {x['files']} x 64 KiB at {x['rate']:.0f}/s (load at start {x['load_at_start']})")
        lines.append(f"   rename -> HEAD 200 (independent poller, round {fmt(x['poll_round_p50_ms'])} ms p50): "
                     f"p50 {x['head_p50_ms']:.1f} ms, p99 {x['head_p99_ms']:.1f} ms, max {x['head_max_ms']:.1f} ms")
        lines.append(f"   rename -> agent's \"uploaded\" log line: p50 {fmt(x['log_p50_ms'])} ms, p99 {fmt(x['log_p99_ms'])} ms")
    if "startup" in s:
        x = s["startup"]
        lines.append("")
        lines.append(f"3. Start-up with -B, {x['files']} files already in the bucket (load at start {x['load_at_start']})")
        lines.append(f"   until idle {x['wall']:.2f} s, S3 requests {x['requests']:.0f} (LIST {x['list_requests']}), "
                     f"queued {x['queued']}, uploaded {x['shipped']:.0f}, CPU {x['cpu']:.2f} s, peak RSS {x['rss']:.0f} MiB")
    if "memory" in s:
        x = s["memory"]
        lines.append("")
        lines.append(f"4. Memory, {x['gib']:.2f} GiB in {x['files']} files, --multipart-chunk-size 256 (load at start {x['load_at_start']})")
        lines.append(f"   peak RSS {x['rss']:.0f} MiB; wall {x['wall']:.1f} s, agent CPU {x['cpu']:.1f} s "
                     f"({x['cpu'] / x['gib']:.2f} s/GiB), Garage CPU {x['garage_cpu']:.1f} s")
    if "restore" in s:
        x = s["restore"]
        lines.append("")
        lines.append(f"5. Restore of {x['set']} ({x['gib']:.2f} GiB) (load at start {x['load_at_start']})")
        lines.append("| client | wall s (median) | CPU s | peak RSS MiB | Garage CPU s | wall vs s5cmd | every run's wall s |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for c in (SLURP_MD5, SLURP_CRC, "s5cmd"):
            y = x[c]
            walls = ", ".join(f"{w:.2f}" for w in y.get("walls", []))
            lines.append(f"| {c} | {y['wall']:.2f} | {y['cpu']:.2f} | {y['rss']:.0f} | {y['garage_cpu']:.2f} | "
                         f"{y['wall'] / x['s5cmd']['wall']:.2f}x | {walls} |")
    lines.append("")
    lines.append("Targets:")
    for ok, text in targets(r):
        lines.append(f"  [{'ok' if ok else 'MISS'}] {text}")
    return "\n".join(lines)


def targets(r):
    s = r["scenarios"]
    out = []
    if "bulk" in s:
        for name, row in s["bulk"].items():
            if name == "load_at_start":
                continue
            b = row["s5cmd"]
            for client in ("agent", CRC):
                a = row[client]
                out.append((a["wall"] <= 0.8 * b["wall"], f"bulk {name} {client}: wall {a['wall'] / b['wall']:.2f}x s5cmd (<= 0.8x)"))
                out.append((a["cpu"] <= 0.4 * b["cpu"], f"bulk {name} {client}: CPU/GiB {a['cpu'] / b['cpu']:.2f}x s5cmd (<= 0.4x)"))
                out.append((a["rss"] <= 64, f"bulk {name} {client}: peak RSS {a['rss']:.0f} MiB (<= 64)"))
    if "latency" in s:
        x = s["latency"]
        out.append((x["head_p99_ms"] <= 100, f"latency p99 {x['head_p99_ms']:.0f} ms (<= 100)"))
    if "startup" in s:
        x = s["startup"]
        out.append((x["requests"] <= 200 and x["wall"] <= 10,
                    f"start-up {x['requests']:.0f} requests (<= 200), {x['wall']:.1f} s (<= 10)"))
    if "memory" in s:
        x = s["memory"]
        out.append((x["rss"] <= 64, f"memory {x['files']} x {x['gib'] / x['files']:.2f} GiB peak RSS {x['rss']:.0f} MiB (<= 64)"))
    if "restore" in s:
        x = s["restore"]
        for c in (SLURP_MD5, SLURP_CRC):
            q = x[c]["wall"] / x["s5cmd"]["wall"]
            out.append((q <= 1.0, f"restore {c}: wall {q:.2f}x s5cmd (<= 1.0x)"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    ap.add_argument("--only", action="append", choices=["bulk", "latency", "startup", "memory", "restore"],
                    help="run only these scenarios (restore needs bulk)")
    ap.add_argument("--work", required=True, help="scratch directory (on a disk with room)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--memory-mib", type=int, help="size of each memory-scenario file (default 2048)")
    ap.add_argument("--tablesnap", required=True)
    ap.add_argument("--tableslurp", required=True)
    ap.add_argument("--s5cmd", required=True)
    ap.add_argument("--aws", required=True)
    a = ap.parse_args()
    h = Harness(a)
    # memory first, while the disk is emptiest (Garage frees deleted blocks only minutes later)
    order = ["memory", "bulk", "restore", "latency", "startup"]
    chosen = [x for x in order if not a.only or x in a.only]
    failed = []
    for name in chosen:
        if name == "restore" and "bulk" not in chosen:
            continue
        try:
            getattr(h, name)()
        except Exception as e:  # report what worked, fail at the end
            log(f"!! {name} failed: {e}")
            failed.append(name)
            h.results["scenarios"].pop(name, None)
    text = report(h.results)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": h.results, "table": text}, f, indent=1)
    if failed:
        print(f"FAILED scenarios: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
