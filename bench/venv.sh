#!/usr/bin/env bash
# Creates (once) the Python venv of the benchmark peers (s5cmd, AWS CLI) and prints its path:
# e2e/scripts/venv.sh with bench/requirements.txt, cached the same way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../e2e/scripts/venv.sh" "$here/requirements.txt" bench-venv
