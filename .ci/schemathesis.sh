#!/usr/bin/env bash
# Schemathesis against the served OpenAPI document: a bounded run on a fresh,
# seeded SQLite database behind gunicorn, signed in as a coordinator who is also
# a volunteer (.ci/schemathesis.toml says who signs each operation in; the
# tokens outlive the run and no operation the run calls ends the runner's
# session). Every phase: the examples, coverage, fuzzing, and the stateful phase
# following the document's links (posting → claim → fulfil → confirm), with
# every check (`--checks all`), "a valid request was refused" included: the
# document states the rules of shape the code enforces, the hooks respect the
# relations it states in words, and the rules of state are per-operation
# exceptions, each with why (.ci/schemathesis.toml, RULES_OF_STATE in
# .ci/schemathesis_hooks.py). Fails on any check's failure, and when an
# operation was never called or only ever answered 401
# (.ci/schemathesis_reach.py).
#   .ci/schemathesis.sh [max seconds, default 180]
# SCHEMATHESIS_SEED=<n> runs another seed (CI's is fixed; run a few others when the
# document or a rule changes); SCHEMATHESIS_PORT=<port> serves on another port;
# SCHEMATHESIS_KEEP=<dir> keeps the reports (JUnit, HAR) to read a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${1:-180}
port=${SCHEMATHESIS_PORT:-8931}
work=$(mktemp -d)
export JWT_ACCESS_MINUTES=120 APP_ENV=development INSTANCE_PATH="$work/instance" DATABASE_URL="sqlite:///$work/st.sqlite"
export METRICS_ADDRESS="" RATELIMIT_ENABLED=0 PUSH_BACKEND=memory SCHEDULER_EMBEDDED=0 LOG_LEVEL=WARNING FLASK_APP=wsgi
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

.venv/bin/flask db upgrade >/dev/null 2>&1
.venv/bin/flask seed >/dev/null
eval "$(PYTHONPATH=. .venv/bin/python .ci/schemathesis_token.py)"
# no worker recycling during the run (--max-requests 0): a worker that exits after its
# 5,000th request closes the keep-alive connections it holds, and a request the client
# sends on one at that instant is reset, a network error that fails the run by chance
.venv/bin/gunicorn -c deploy/gunicorn.conf.py --bind "127.0.0.1:$port" --workers 2 --threads 4 \
  --max-requests 0 --access-logfile /dev/null wsgi:app &
server=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" -o "$work/openapi.json"

status=0
# each generated action gets an Idempotency-Key of its own, no cursor is forged,
# and the relations between fields are respected (.ci/schemathesis_hooks.py,
# which imports the app's own rules: hence the repository on PYTHONPATH)
PYTHONPATH=.ci:. SCHEMATHESIS_HOOKS=schemathesis_hooks .venv/bin/schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks all --phases examples,coverage,fuzzing,stateful \
  --max-time "$budget" --max-examples 25 --workers 1 --seed "${SCHEMATHESIS_SEED:-20261129}" \
  --generation-allow-x00 true --request-timeout 10 --no-color \
  --report junit,har --report-dir "$work/report" --report-har-path "$work/report/run.har" || status=$?
.venv/bin/python .ci/schemathesis_reach.py "$work/openapi.json" "$work/report/run.har" || status=1
if [ -n "${SCHEMATHESIS_KEEP:-}" ]; then mkdir -p "$SCHEMATHESIS_KEEP" && cp -r "$work/report/." "$SCHEMATHESIS_KEEP"; fi
exit $status
