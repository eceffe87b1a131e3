#!/usr/bin/env bash
# Mutation testing with cargo-mutants: how many injected bugs in the modules that make decisions do
# the tests catch? Runs the tests that cover each module (its unit tests, under nextest), prints a
# per-module table (e2e/scripts/mutants-report.py).
#
#   mutants.sh [FILE...]       each FILE (default: the decision modules below) on its own; its raw
#                              output goes to e2e/results/mutants/<module>/
#   mutants.sh --changed REV   only mutants on lines `git diff REV` changes in the gated modules
#   mutants.sh --sample N      N mutants of the gated modules, drawn with a fixed seed
#                              (MUTANTS_SEED, default 13); both take FILEs to draw from instead
#   options: --timeout S (per mutant tests, default 30), --out DIR, --list (mutants, no run),
#            --in-repo (mutate the checkout itself and build in its target/: for CI's own clone,
#            where nobody else edits or builds; cargo-mutants puts every file back afterwards),
#            --operator (the operator's decision modules: render, resolve, apply, status),
#            --only MODULE (of a file's runs, only the one named so, e.g. agent-index-task),
#            --lib-only (each file's unit tests alone, without the pipeline or real-server tests)
#
# --changed and --sample are the CI modes: their output goes to target/mutants/ (or --out), and the
# exit code is 1 when a mutant survives that e2e/results/mutants/EQUIVALENT.md does not list.
# Otherwise the source is copied (without target/ and .git) to a work directory with its own
# target dir ($MUTANTS_WORK, default ~/.cache/tablesnap/mutants-work), and mutated there: the
# checkout is never touched, and the copy's build is reused by the next run. The copy never shares
# the checkout's target/: cargo names the artifacts of both trees alike.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

# The modules that make decisions. The operator's are supported, not part of the default run.
AGENT_DECISIONS=(
  agent/src/classify.rs agent/src/sstable.rs agent/src/ready.rs agent/src/index.rs
  agent/src/retention/mark.rs agent/src/restore/plan.rs agent/src/checksum.rs
  agent/src/scan.rs agent/src/queue.rs agent/src/stage.rs agent/src/filter.rs agent/src/meta.rs
  agent/src/restore/fetch.rs agent/src/store/local.rs agent/src/store/s3.rs
)
OPERATOR_DECISIONS=(operator/src/render.rs operator/src/resolve.rs operator/src/apply.rs operator/src/status.rs)
# The modules measured and brought to 90% caught (README "Mutation testing") whose unit tests alone
# catch every mutant EQUIVALENT.md does not list: what the CI modes draw from by default (they run
# `--lib`). Left out: the index writer's task and scan.rs (their tests are the slow pipeline ones),
# restore/fetch.rs (measured with tableslurp's tests, not with its unit tests alone), stage.rs (one of its
# mutants is killed only by a test that mounts a tmpfs, which needs root), queue.rs (all caught by its unit tests, but with it in the pool the seed drew a sample
# that took 182 s instead of about 100: it holds natural_cmp's endless loop, a 30 s timeout).
GATED=(
  agent/src/classify.rs agent/src/sstable.rs agent/src/ready.rs agent/src/index.rs
  agent/src/retention/mark.rs agent/src/restore/plan.rs agent/src/checksum.rs
  agent/src/filter.rs agent/src/meta.rs
)
INDEX_TASK='(replace (run|settle|read_dir) | in (run|settle|read_dir)$)'
# The store backends' functions that send a checksum with a write, read one back or check one on a
# download (their other functions are the transport: error classification, listing, tidying).
STORE_CHECKSUM='(replace |in )(S3Store|LocalStore)::(put|put_multipart|upload_parts|upload_part|head|download_range)( |$)'

# The tests that cover a file, one cargo-mutants run per line, tab-separated: the module's name
# suffix (or -), the test targets (built and run for each mutant: only these are rebuilt), a nextest
# filterset (or -), which of the file's mutants (a cargo-mutants option, or -), and the per-mutant
# test timeout in seconds (or - for --timeout).
# Unit tests beside the code are the decisions' tests (STYLE.md; the queue's and staging's too). The
# index writer's task and the scans need the agent's context and a store: the pipeline tests (local
# directory store, no Garage) cover them; restore's download verification, tableslurp's tests (local
# store). The store backends' checksum code (the functions that send or check a checksum) is run
# against Garage (`garage.sh start`: its env must be exported) and the local store.
# The operator's reconcile steps run against a real kube-apiserver (`k8s.sh start`: its env,
# TABLESNAP_KUBECONFIG, must be exported; TABLESNAP_REQUIRE_REAL=1 makes a test that would skip
# fail instead, so that a missing server never counts as mutants missed or caught): each module with
# its unit tests and the real-server tests that exercise it, not the slow ones of the operator binary
# (`real_operator`) or real agents (`real_status`, for status.rs: its decisions are pure and unit-tested).
runs_for() {
  local task="$INDEX_TASK"
  case "$1" in
    agent/src/index.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib" - "--exclude-re=$task" -
      printf '%s\t%s\t%s\t%s\t%s\n' "-task" "--lib --test behaviour --test dropin" \
        'kind(lib)|test(/^local::/)' "--re=$task" 180 ;;
    agent/src/scan.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib --test behaviour --test dropin --test cassandra" \
        'kind(lib)|test(/^local::/)' - 180 ;;
    agent/src/restore/fetch.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib --test restore --test checksum" \
        'kind(lib)|test(/^local::/)' - 180 ;;
    agent/src/store/local.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' "-checksum" "--lib --test restore --test checksum" \
        'kind(lib)|test(/^local::/)' "--re=$STORE_CHECKSUM" 180 ;;
    agent/src/store/s3.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' "-checksum" "--lib --test restore --test checksum" \
        'kind(lib)|test(/^garage::/)|(binary(checksum) & !test(/^local::/))' "--re=$STORE_CHECKSUM" 240 ;;
    agent/*) printf '%s\t%s\t%s\t%s\t%s\n' - "--lib" - - - ;;
    operator/src/render.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib --test agent_args --test reconcile --test real_apply" - - 120 ;;
    operator/src/resolve.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib --test reconcile --test real_apply --test real_datacenter" - - 120 ;;
    operator/src/apply.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib --test reconcile --test real_apply --test real_datacenter --test real_refused --test real_rollout --test real_preflight" - - 180 ;;
    operator/src/status.rs)
      printf '%s\t%s\t%s\t%s\t%s\n' - "--lib --test reconcile" - - 120 ;;
    *) echo "no tests known for $1" >&2; return 1 ;;
  esac
}
tests_for() { runs_for "$1" | sed -n 1p | cut -f2; }
package_of() {
  case "$1" in
    agent/*) echo tablesnap ;;
    operator/*) echo tablesnap-operator ;;
  esac
}
module_of() { local m="${1%.rs}"; m="${m/\/src\//-}"; echo "${m//\//-}"; }

mode=files changed="" sample="" timeout=30 out="" list=0 in_repo=0 only="" lib_only=0 files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --changed) mode=changed changed="$2"; shift 2 ;;
    --sample) mode=sample sample="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --list) list=1; shift ;;
    --in-repo) in_repo=1; shift ;;
    --operator) files+=("${OPERATOR_DECISIONS[@]}"); shift ;;
    --only) only="$2"; shift 2 ;;
    --lib-only) lib_only=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
if [ ${#files[@]} -eq 0 ] && [ "$mode" = files ]; then
  files=("${AGENT_DECISIONS[@]}")
elif [ ${#files[@]} -eq 0 ]; then
  files=("${GATED[@]}")
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "$f: no such file (paths are relative to the workspace root)" >&2; exit 2; }
  # The real servers their tests need: without them a test would skip (and its mutants survive).
  [ "$list" = 1 ] || [ "$lib_only" = 1 ] || case "$f" in
    operator/*) [ -n "${TABLESNAP_KUBECONFIG:-}" ] || {
      echo "$f: its tests need a real kube-apiserver: eval \"\$(e2e/scripts/k8s.sh start DIR)\" first" >&2; exit 2; } ;;
    agent/src/store/s3.rs) [ -n "${TABLESNAP_TEST_S3_ENDPOINT:-}" ] || {
      echo "$f: its tests need Garage: eval \"\$(e2e/scripts/garage.sh start DIR)\" first" >&2; exit 2; } ;;
  esac
done
export TABLESNAP_REQUIRE_REAL=1

mutants="$(e2e/scripts/install-mutants.sh)"
PATH="$(e2e/scripts/install-nextest.sh):$PATH"
export PATH
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
work="${MUTANTS_WORK:-$CACHE/mutants-work}"
src="$work/src"
mkdir -p "$work/src" "$work/out"
# One run at a time per work directory: a second one would rewrite files being mutated.
exec 9>"$work/lock"
flock -n 9 || { echo "another mutants.sh run is using $work" >&2; exit 1; }
if [ "$in_repo" = 1 ]; then
  src="$root"
else
# The copy is brought up to date at the same path: only files whose content differs are written
# (with a new mtime), so cargo rebuilds what changed and never takes a mutant's build for the
# original (a file copied with its old mtime would look older than that build).
python3 - "$root" "$work/src" <<'EOF'
import filecmp, os, shutil, sys
src, dst = sys.argv[1:]
skip = {"target", ".git", os.path.join("e2e", "results")}
seen = set()
for d, dirs, files in os.walk(src):
    rel = os.path.relpath(d, src)
    dirs[:] = [x for x in dirs if os.path.normpath(os.path.join(rel, x)) not in skip]
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for f in files:
        r = os.path.normpath(os.path.join(rel, f))
        seen.add(r)
        a, b = os.path.join(src, r), os.path.join(dst, r)
        if not os.path.isfile(b) or not filecmp.cmp(a, b, shallow=False):
            shutil.copyfile(a, b)
            shutil.copymode(a, b)
for d, dirs, files in os.walk(dst):
    for f in files:
        r = os.path.normpath(os.path.relpath(os.path.join(d, f), dst))
        if r not in seen:
            os.remove(os.path.join(dst, r))
EOF
  export CARGO_TARGET_DIR="$work/target"
  # No debug info: mutants are rebuilt and linked one after another, and nobody debugs them.
  export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
fi

# Runs cargo-mutants over one package's files; $1 = output dir, $2 = package, $3 = test targets,
# $4 = nextest filterset or -, then cargo-mutants selection options. In place (in the copy) means one mutant at a time (-j 1).
run_mutants() {
  local dir="$1" pkg="$2" t targs=(); shift 2
  # The targets go to the build too (--cargo-arg), or every test binary would be relinked.
  for t in $1; do targs+=("--cargo-arg=$t"); done
  [ "$2" = - ] || targs+=("--cargo-test-arg=-E" "--cargo-test-arg=$2")
  shift 2
  local cmd=(nice -n 19 "$mutants" mutants --in-place --dir "$src" --package "$pkg"
    --test-tool nextest --timeout "${run_timeout:-$timeout}" --build-timeout 900 --no-shuffle
    --output "$dir" "${targs[@]}" "$@")
  if [ "$list" = 1 ]; then
    "${cmd[@]}" --list
    return 0
  fi
  rm -rf "$dir/mutants.out"
  mkdir -p "$dir"
  "${cmd[@]}" || {
    local rc=$?
    # 2: mutants missed, 3: timeouts; anything else means the run itself failed.
    [ "$rc" = 2 ] || [ "$rc" = 3 ] || { echo "cargo-mutants exited $rc" >&2; return "$rc"; }
  }
}

keep_raw() { # $1 = cargo-mutants output dir, $2 = results dir
  local f
  mkdir -p "$2"
  for f in outcomes.json caught.txt missed.txt timeout.txt unviable.txt; do
    cp "$1/mutants.out/$f" "$2/$f"
  done
}

report=(python3 e2e/scripts/mutants-report.py --equivalent e2e/results/mutants/EQUIVALENT.md)
t0=$SECONDS
case "$mode" in
  files)
    results="${out:-e2e/results/mutants}"
    done_dirs=()
    for f in "${files[@]}"; do
      while IFS=$'\t' read -r suffix targets filter select run_timeout; do
        [ "$suffix" = - ] && suffix=""
        [ "$run_timeout" = - ] && run_timeout=$timeout
        if [ "$lib_only" = 1 ]; then
          [ "$suffix" = -task ] && continue
          targets="--lib" filter=- run_timeout=$timeout
        fi
        m="$(module_of "$f")$suffix"
        [ -z "$only" ] || [ "$only" = "$m" ] || continue
        echo "==> $f ($m: $targets)" >&2
        t=$SECONDS
        sel=(--file "$f")
        [ "$select" = - ] || sel+=("$select")
        run_mutants "$work/out/$m" "$(package_of "$f")" "$targets" "$filter" "${sel[@]}"
        [ "$list" = 1 ] && continue
        keep_raw "$work/out/$m" "$results/$m"
        done_dirs+=("$results/$m")
        echo "<== $m: $((SECONDS - t)) s" >&2
      done < <(runs_for "$f")
    done
    [ "$list" = 1 ] && exit 0
    "${report[@]}" "${done_dirs[@]}"
    ;;
  changed|sample)
    results="${out:-target/mutants/$mode}"
    decisions=("${files[@]}")
    sel=()
    if [ "$mode" = changed ]; then
      git diff "$changed" -- "${decisions[@]}" >"$work/changed.diff"
      if [ ! -s "$work/changed.diff" ]; then
        echo "no decision module changed since $changed: no mutants to test"
        exit 0
      fi
      sel=(--in-diff "$work/changed.diff")
    fi
    for f in "${decisions[@]}"; do sel+=(--file "$f"); done
    sel+=("--exclude-re=$INDEX_TASK")
    pkgs=()
    for f in "${decisions[@]}"; do pkgs+=("$(package_of "$f")"); done
    if [ "$(printf '%s\n' "${pkgs[@]}" | sort -u | wc -l)" != 1 ]; then
      echo "--$mode takes the files of one package at a time" >&2
      exit 2
    fi
    if [ "$mode" = sample ]; then
      # The sample: names listed by cargo-mutants, drawn with a fixed seed, matched exactly.
      "$mutants" mutants --in-place --dir "$src" --package "${pkgs[0]}" "${sel[@]}" --list \
        >"$work/all-mutants.txt"
      re="$(python3 - "$work/all-mutants.txt" "$sample" "${MUTANTS_SEED:-13}" <<'EOF'
import random, re, sys
names = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
pick = random.Random(int(sys.argv[3])).sample(names, min(int(sys.argv[2]), len(names)))
esc = lambda s: re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", s)
print("^(" + "|".join(esc(n) for n in sorted(pick)) + ")$")
EOF
)"
      sel+=(--re "$re")
    fi
    run_mutants "$work/out/$mode" "${pkgs[0]}" "$(tests_for "${decisions[0]}")" - "${sel[@]}"
    [ "$list" = 1 ] && exit 0
    keep_raw "$work/out/$mode" "$results"
    "${report[@]}" --fail-on-missed "$results"
    ;;
esac
echo "mutation testing: $((SECONDS - t0)) s" >&2
