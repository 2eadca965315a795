#!/usr/bin/env bash
# Validates deploy/kubernetes/: every manifest against the Kubernetes schemas
# (kubernetes-validate --strict, Kubernetes $KUBE_VERSION, default 1.30.0), the committed
# data Services against gen-data-services.sh, and each pod's rendered ftpgate config
# (tests/deploy/k8s_checks.py says what is checked). Needs python3 and pip's access to
# PyPI; kubernetes-validate goes into a venv under /tmp (reused while its version matches).
# With an ftpgate binary ($FTPGATE, default target/release/ftpgate) the rendered configs
# also go through `ftpgate check`. Last line: `N passed, M failed`; exit 1 on a failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2

PKG=kubernetes-validate==1.37.0
VENV=${K8S_VALIDATE_VENV:-/tmp/ftpgate-k8s-validate-venv}

setup() {
    if [[ -x $VENV/bin/kubernetes-validate && -f $VENV/.ftpgate-pkg && $(<"$VENV/.ftpgate-pkg") == "$PKG" ]]; then
        return 0
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV" &&
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PKG" &&
        echo "$PKG" >"$VENV/.ftpgate-pkg"
}

if ! setup >&2; then
    echo "FAIL installing $PKG into $VENV (python3 -m venv, pip)"
    echo "0 passed, 1 failed"
    exit 1
fi

KUBERNETES_VALIDATE=$VENV/bin/kubernetes-validate exec "$VENV/bin/python" tests/deploy/k8s_checks.py
