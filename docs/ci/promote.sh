#!/usr/bin/env bash
# Promote a governed model version from pre-production to production: the CI/CD path.
#
#   promote.sh deploy         # ModelDeployer: only a version the governance core approved for deployment;
#                             # its sidecar in the production environment, deployment fields recorded from it
#   promote.sh productionize  # ModelMonitor, after the owner approved moved_to_production=yes:
#                             # the monitoring wrapper's fields recorded from the same sidecar
#   promote.sh verify         # after the owner's final approval (Ready to Use): the production load
#                             # balancer answers for the version; the pre-production sidecar is stopped
#
# Every governance step is an `mlgov` command run as the CI identity of the step (MLflow basic-auth
# credentials of a ModelDeployer or a ModelMonitor), so the governance server checks role, stage,
# separation of duties and MLflow's model permission, and audits it. The owner's two approvals stay
# with a person (approvals page or `mlgov transition`). docs/ci/promote.yml runs this script.
#
# Environment:
#   MODEL, VERSION             the governed model and version
#   MLFLOW_TRACKING_URI        the governance server; MLFLOW_TRACKING_USERNAME / _PASSWORD: the CI identity
#   SIDECAR_URL                where the version's sidecar answers in the production environment
#                              (http://HOST:PORT). deploy starts `mlgov serve --version N --staging` there
#                              unless a sidecar already answers (one your platform started)
#   MLGOV_PAYLOAD_URL          the production payload database (for a sidecar deploy starts)
#   SIDECAR_SERVE_ARGS         more `mlgov serve` options for it (optional, e.g. "--workers 4")
#   DEPLOYMENT_SPACE           recorded as deployment_space (default: production)
#   PRODUCTION_URL             the production load balancer in front of the production replicas (verify)
#   PROMOTE_STATE_DIR          pid file and log of a sidecar deploy started (default: ./.mlgov-promote)
#   PROMOTE_WAIT_SECONDS       how long deploy waits for the sidecar and verify for production (default: 120)
#
# Exit codes as mlgov's: 2 bad input, 3 refused by governance, 4 unknown model or version,
# 6 a server or sidecar does not answer; each failure is one line on stderr starting with "Error:".
set -euo pipefail
shopt -s inherit_errexit  # a failing mlgov inside $(...) stops the script with its exit code

APPROVED_FOR_DEPLOYMENT="Approved for Deployment"
APPROVED_FOR_PRODUCTIONIZATION="Approved for Productionization"
READY_TO_USE="Ready to Use"

fail() {  # fail CODE MESSAGE
    echo "Error: $2" >&2
    exit "$1"
}

need() {
    local name
    for name in "$@"; do
        [ -n "${!name:-}" ] || fail 2 "$name is not set (see the head of $0)"
    done
}

json_field() {  # json_field EXPRESSION: a field of the JSON document on stdin, e.g. '["version"]["stage"]'
    python3 -c "import json, sys; value = json.load(sys.stdin)$1; print('' if value is None else value)"
}

stage_of() {  # the version's stage, from the governance server (mlgov's own error and exit code otherwise)
    local status
    status=$(mlgov status "$MODEL" --version "$VERSION" --json)
    printf '%s' "$status" | json_field '["version"]["stage"]'
}

require_stage() {  # require_stage STAGE WHAT
    local stage
    stage=$(stage_of)
    [ "$stage" = "$1" ] || fail 3 "$MODEL version $VERSION is in '$stage', not '$1': $2"
}

require_task() {  # the CI identity may submit this version now (its role, stage and separation of duties)
    local tasks
    tasks=$(mlgov tasks --json)
    printf '%s' "$tasks" | python3 -c "
import json, sys
tasks = json.load(sys.stdin)
sys.exit(0 if any(t['model'] == sys.argv[1] and t['version'] == int(sys.argv[2]) and 'submit' in t['actions']
                  for t in tasks) else 1)" "$MODEL" "$VERSION" \
        || fail 3 "${MLFLOW_TRACKING_USERNAME:-this identity} may not submit $MODEL version $VERSION ($1)"
}

sidecar_status() {  # sidecar_status URL: the sidecar's /status JSON, read as this identity (the credentials
    # come from MLFLOW_TRACKING_USERNAME/PASSWORD in the environment, never from a command line)
    python3 - "$1" <<'PY'
import base64, os, sys, urllib.request
request = urllib.request.Request(sys.argv[1].rstrip("/") + "/status")
user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
if user and password:
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
try:
    print(urllib.request.urlopen(request, timeout=10).read().decode())
except Exception:
    sys.exit(1)
PY
}

answers() {  # answers URL: the URL answers 200
    curl -fsS --max-time 5 -o /dev/null "$1" 2>/dev/null
}

pid_file() {
    echo "${PROMOTE_STATE_DIR:-$PWD/.mlgov-promote}/sidecar-$MODEL-v$VERSION.pid"
}

start_sidecar() {  # mlgov serve --version N --staging at SIDECAR_URL, detached; waits until it answers
    local state host port pid waited=0 wait=${PROMOTE_WAIT_SECONDS:-120}
    need MLGOV_PAYLOAD_URL
    state=${PROMOTE_STATE_DIR:-$PWD/.mlgov-promote}
    mkdir -p "$state"
    read -r host port < <(python3 -c "
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(u.hostname or '', u.port or '')" "$SIDECAR_URL")
    [ -n "$host" ] && [ -n "$port" ] || fail 2 "SIDECAR_URL must be http://HOST:PORT, not '$SIDECAR_URL'"
    # shellcheck disable=SC2086  # SIDECAR_SERVE_ARGS is a list of options
    (cd "$state" && exec setsid nohup mlgov serve --model "$MODEL" --version "$VERSION" --staging \
        --host "$host" --port "$port" --payload-url "$MLGOV_PAYLOAD_URL" \
        --spool-dir "$state/spool-$MODEL-v$VERSION" ${SIDECAR_SERVE_ARGS:-} \
        >"$state/sidecar-$MODEL-v$VERSION.log" 2>&1 </dev/null) &
    pid=$!
    echo "$pid" >"$(pid_file)"
    until answers "$SIDECAR_URL/health"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pid_file)"
            fail 3 "mlgov serve stopped: $(tail -n 1 "$state/sidecar-$MODEL-v$VERSION.log")"
        fi
        [ "$waited" -lt "$((wait * 2))" ] || fail 6 "the sidecar at $SIDECAR_URL did not answer within ${wait}s"
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "started mlgov serve (pid $pid) for $MODEL version $VERSION at $SIDECAR_URL (staging until Ready to Use)"
}

stop_sidecar() {  # the sidecar deploy started, if any (SIGTERM: gunicorn finishes and flushes its rows)
    local pid file
    file=$(pid_file)
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        echo "stopped the pre-production sidecar (pid $pid)"
    fi
    rm -f "$file"
}

deploy() {
    need MODEL VERSION MLFLOW_TRACKING_URI SIDECAR_URL
    require_stage "$APPROVED_FOR_DEPLOYMENT" \
        "only a version the governance core approved for deployment is deployed"
    require_task "the ModelDeployer records the deployment"
    local started=false code=0
    if answers "$SIDECAR_URL/health"; then
        echo "a sidecar already answers at $SIDECAR_URL"
    else
        start_sidecar
        started=true
    fi
    mlgov deploy --model "$MODEL" --version "$VERSION" --url "$SIDECAR_URL" \
        --space "${DEPLOYMENT_SPACE:-production}" || code=$?
    if [ "$code" != 0 ]; then  # nothing recorded: a sidecar started for it does not stay behind
        if $started; then stop_sidecar; fi
        exit "$code"
    fi
    echo "next: the ModelOwner approves the move to production (moved_to_production=yes), then: $0 productionize"
}

productionize() {
    need MODEL VERSION MLFLOW_TRACKING_URI SIDECAR_URL
    require_stage "$APPROVED_FOR_PRODUCTIONIZATION" \
        "the ModelOwner has not approved the move to production (moved_to_production=yes)"
    require_task "the ModelMonitor records the monitoring wrapper"
    mlgov deploy --model "$MODEL" --version "$VERSION" --url "$SIDECAR_URL"
    echo "next: the ModelOwner's final approval makes it Ready to Use, then: $0 verify"
}

verify() {
    local status version serving streak=0 waited=0 wait=${PROMOTE_WAIT_SECONDS:-120}
    need MODEL VERSION MLFLOW_TRACKING_URI PRODUCTION_URL
    require_stage "$READY_TO_USE" "the ModelOwner's final approval has not made it Ready to Use"
    # Every replica behind the load balancer follows the production alias within its usability cache.
    while [ "$streak" -lt 6 ]; do
        status=$(sidecar_status "$PRODUCTION_URL" 2>/dev/null || true)
        version=$(printf '%s' "$status" | json_field '["version"]' 2>/dev/null || true)
        serving=$(printf '%s' "$status" | json_field '["serving"]' 2>/dev/null || true)
        if [ "$version" = "$VERSION" ] && [ "$serving" = "True" ]; then
            streak=$((streak + 1))
        else
            streak=0
            [ "$waited" -lt "$wait" ] || fail 6 "$PRODUCTION_URL does not serve $MODEL version $VERSION after \
${wait}s (last answer: version ${version:-none}, serving ${serving:-no answer})"
            sleep 1
            waited=$((waited + 1))
        fi
    done
    echo "production at $PRODUCTION_URL serves $MODEL version $VERSION"
    stop_sidecar
}

case "${1:-}" in
    deploy | productionize | verify) "$1" ;;
    *) fail 2 "usage: $0 deploy|productionize|verify (see the head of $0)" ;;
esac
