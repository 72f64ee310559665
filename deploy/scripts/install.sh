#!/usr/bin/env bash
# All set-up: system packages the local stack needs (Java 17+ for Kafka, Maven to
# fetch its jars; Prometheus and its promtool for `stack up --with-prometheus`, the
# soak and the config tests; docker-compose only to validate compose.yaml in the
# tests, no engine needed) when missing, then streamapp itself with its dev extras.
# (Debian's prometheus package also enables a system service on :9090; the stack never
# uses it, it runs its own prometheus with its own config, data dir and port.)
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v docker-compose >/dev/null || need+=(docker-compose)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "install.sh: missing ${need[*]}: install them (Java 17+, Maven, Prometheus 2.x with promtool, docker-compose) and run again" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[dev]'
