#!/usr/bin/env bash
# The deployment suite: every tests/deploy/*.sh but this one (the `demo` smoke test,
# HAProxy in front of two ftpgate instances, the Kubernetes manifests, the Debian
# package cycle), each printing "N passed, M failed" last. All run even if one fails;
# the last line adds them up. Needs root and the packages .ci/run installs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2

total_pass=0
total_fail=0
rc=0
for script in tests/deploy/*.sh; do
    [[ $script == tests/deploy/run.sh ]] && continue
    echo "=== $script"
    out=$(mktemp)
    "$script" 2>&1 | tee "$out"
    part_rc=${PIPESTATUS[0]}
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
    rm -f "$out"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        total_pass=$((total_pass + BASH_REMATCH[1]))
        total_fail=$((total_fail + BASH_REMATCH[2]))
    else
        total_fail=$((total_fail + 1))
    fi
    if ((part_rc != 0)); then
        rc=1
        [[ $last =~ ^[0-9]+\ passed,\ 0\ failed$ ]] && total_fail=$((total_fail + 1))
    fi
done
echo "$total_pass passed, $total_fail failed"
exit "$rc"
