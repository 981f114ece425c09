#!/usr/bin/env bash
# Schemathesis against the served OpenAPI document: a bounded run on a fresh,
# seeded SQLite database behind gunicorn, signed in as a coordinator who is also
# a volunteer. Fails on any 5xx, any answer that does not match its documented
# schema, and any undocumented content type.
#   .ci/schemathesis.sh [max seconds, default 180]
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${1:-180}
port=${SCHEMATHESIS_PORT:-8931}
work=$(mktemp -d)
export APP_ENV=development INSTANCE_PATH="$work/instance" DATABASE_URL="sqlite:///$work/st.sqlite"
export METRICS_ADDRESS="" RATELIMIT_ENABLED=0 PUSH_BACKEND=memory SCHEDULER_EMBEDDED=0 LOG_LEVEL=WARNING FLASK_APP=wsgi
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

.venv/bin/flask db upgrade >/dev/null 2>&1
.venv/bin/flask seed >/dev/null
token=$(PYTHONPATH=. .venv/bin/python .ci/schemathesis_token.py)
.venv/bin/gunicorn -c deploy/gunicorn.conf.py --bind "127.0.0.1:$port" --workers 2 --threads 4 \
  --access-logfile /dev/null wsgi:app &
server=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

.venv/bin/schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --header "Authorization: Bearer $token" \
  --max-time "$budget" --max-examples 25 --workers 1 --seed 20261129 \
  --generation-allow-x00 true --request-timeout 10 --no-color \
  --report junit --report-dir "$work/report"
