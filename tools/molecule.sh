#!/usr/bin/env bash
# Run Molecule scenarios in lanes: the scenarios of a lane one after another, the lanes side
# by side, their instances named apart by a suffix per lane (DOCKYARD_INSTANCE_SUFFIX). Much
# of a scenario's time is waiting (packages, service restarts, alerts that must fire), so two
# lanes finish well before one would on two cores. A lane is a comma-separated list:
#   tools/molecule.sh default,cluster token,identity,operations
# `token` runs on Debian 13 only here (CI time); `molecule test -s token` runs both releases.
set -uo pipefail

run_lane() {
    local scenario started suffix="${DOCKYARD_INSTANCE_SUFFIX:-}-l$1"
    local -a platform
    # Lanes that start in the same second race in the tool chain's shared caches (ansible
    # removed a templates directory under the other lane once): start them apart.
    sleep $((($1 - 1) * 20))
    for scenario in ${2//,/ }; do
        platform=()
        [ "$scenario" = token ] && platform=(--platform-name "dockyard-trixie$suffix")
        echo "== molecule test -s $scenario: started $(date -u +%T)"
        started=$SECONDS
        if ! DOCKYARD_INSTANCE_SUFFIX=$suffix molecule test -s "$scenario" "${platform[@]}"; then
            echo "== molecule test -s $scenario: FAILED after $((SECONDS - started)) s"
            return 1
        fi
        echo "== molecule test -s $scenario: passed in $((SECONDS - started)) s"
    done
}

pids=()
lane=0
for scenarios in "$@"; do
    lane=$((lane + 1))
    run_lane "$lane" "$scenarios" 2>&1 | sed -u "s/^/[lane $lane] /" &
    pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
[ "$status" -eq 0 ] && echo "== every Molecule scenario passed ($*)" || echo "== a Molecule scenario failed ($*)" >&2
exit "$status"
