#!/usr/bin/env bash
# The Debian package, end to end (run as root): build it with cargo-deb, install it with
# dpkg (systemd need not run), check what it put where and the user it made, run the
# installed binary on the installed configuration as that user, reinstall over a changed
# conffile, remove, purge, and check that nothing of it is left.
#
# One PASS/FAIL line per check, "N passed, M failed" last; exits 1 if any check failed
# (2 if it could not start). Whatever happens, the EXIT trap stops the ftpgate it started
# and purges the package, so the machine is left as it was found.
#
# Needs cargo-deb (cargo install cargo-deb --locked), dpkg, adduser or passwd, util-linux
# (setpriv), and 127.0.0.1:2121 free: the packaged configuration listens there and relays
# to 127.0.0.1:21, where nothing is expected to listen, so ftpgate greets with 421.
# DEB=path/to/ftpgate_*.deb tests that file instead of building one.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2

PASSED=0
FAILED=0
pass() {
    echo "PASS $1"
    PASSED=$((PASSED + 1))
}
fail() {
    echo "FAIL $1${2:+ ($2)}"
    FAILED=$((FAILED + 1))
}
# check NAME CMD...: one line for CMD's success
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
# logged LOG CMD...: CMD with its output in LOG (its status is CMD's)
logged() {
    local log=$1
    shift
    "$@" >"$log" 2>&1
}
# abort WHY: a precondition failed; count it, print the totals, stop
abort() {
    fail "$1"
    echo "$PASSED passed, $FAILED failed"
    exit 2
}

TMP=$(mktemp -d)
chmod 755 "$TMP" # the ftpgate user reads a config from here
FTPGATE_PID=
OURS=0 # set once this script has run dpkg -i: only then does the trap purge
installed() { dpkg-query -W -f='${db:Status-Status}' ftpgate 2>/dev/null | grep -qv '^not-installed$'; }
cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n $FTPGATE_PID ]] && kill -0 "$FTPGATE_PID" 2>/dev/null; then
        kill -KILL "$FTPGATE_PID" 2>/dev/null
        wait "$FTPGATE_PID" 2>/dev/null
    fi
    if ((OURS)) && installed; then dpkg --purge ftpgate >/dev/null 2>&1 || true; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $(id -u) == 0 ]] || abort "runs as root"
# Never replace an ftpgate someone installed, nor delete a user someone made.
if installed; then abort "ftpgate is not installed before the test" "dpkg --purge ftpgate"; fi
if getent passwd ftpgate >/dev/null || getent group ftpgate >/dev/null; then
    abort "no ftpgate user or group before the test" "userdel ftpgate; groupdel ftpgate"
fi
if command -v ss >/dev/null && [[ -n $(ss -Hltn 'sport = :2121') ]]; then
    abort "port 2121 is free (the packaged configuration listens there)"
fi

# ------------------------------------------------------------------ build ----
if [[ -n ${DEB:-} ]]; then
    deb=$DEB
else
    command -v cargo-deb >/dev/null || abort "cargo-deb is installed" "cargo install cargo-deb --locked"
    # cargo deb builds the release profile (cargo build --release), so after the Rust
    # tests it reuses their build; its last line on stdout is the package's path.
    if ! deb=$(cargo deb --locked 2>"$TMP/build.log" | tail -n 1); then
        tail -n 20 "$TMP/build.log" >&2
        abort "cargo deb builds the package"
    fi
fi
[[ -f $deb ]] || abort "cargo deb builds the package" "no file '$deb'"
pass "cargo deb builds $(basename "$deb")"

depends=$(dpkg-deb -f "$deb" Depends)
only_libc() {
    local dep
    IFS=',' read -ra deps <<<"$depends"
    for dep in "${deps[@]}"; do
        dep=${dep# }
        case ${dep%% *} in libc6 | libgcc-s1) ;; *) return 1 ;; esac
    done
}
check "depends on the C runtime only: $depends" only_libc

# The packaged unit is deploy/ftpgate.service with the package's paths and user: the two
# must not drift apart. Comments differ; every other line is compared.
unit_lines() { grep -v -e '^#' -e '^$' "$1"; }
same_unit() {
    diff <(unit_lines deploy/ftpgate.service |
        sed -e 's|/usr/local/bin/ftpgate|/usr/bin/ftpgate|' \
            -e 's|^DynamicUser=yes$|User=ftpgate\nGroup=ftpgate|') \
        <(unit_lines deploy/debian/ftpgate.service) >"$TMP/unit.diff"
}
if same_unit; then
    pass "deploy/debian/ftpgate.service is deploy/ftpgate.service but for paths and user"
else
    fail "deploy/debian/ftpgate.service is deploy/ftpgate.service but for paths and user"
    cat "$TMP/unit.diff"
fi

# ---------------------------------------------------------------- install ----
# dpkg runs the maintainer scripts; where systemd does not run (CI containers) their
# systemd parts must do nothing rather than fail.
OURS=1
if dpkg -i "$deb" >"$TMP/install.log" 2>&1; then
    pass "dpkg -i installs the package"
else
    cat "$TMP/install.log"
    abort "dpkg -i installs the package"
fi
check "dpkg says ftpgate is installed" \
    test "$(dpkg-query -W -f='${db:Status-Abbrev}' ftpgate)" = "ii "

dpkg -L ftpgate >"$TMP/files"
UNIT=
for unit in /usr/lib/systemd/system/ftpgate.service /lib/systemd/system/ftpgate.service; do
    if grep -qxF "$unit" "$TMP/files"; then UNIT=$unit; fi
done
listed() { grep -qxF "$1" "$TMP/files" && [[ -e $1 ]]; }
check "dpkg -L lists /usr/bin/ftpgate" listed /usr/bin/ftpgate
check "dpkg -L lists /etc/ftpgate/ftpgate.yaml" listed /etc/ftpgate/ftpgate.yaml
check "dpkg -L lists /usr/share/doc/ftpgate/README.md" listed /usr/share/doc/ftpgate/README.md
check "dpkg -L lists the unit (${UNIT:-none})" test -n "$UNIT" -a -f "$UNIT"
check "/usr/bin/ftpgate is root's, mode 755" test "$(stat -c '%U %a' /usr/bin/ftpgate)" = "root 755"
check "/etc/ftpgate/ftpgate.yaml is config/ftpgate.yaml" cmp -s /etc/ftpgate/ftpgate.yaml config/ftpgate.yaml
check "the README is the repository's" cmp -s /usr/share/doc/ftpgate/README.md README.md
check "the unit is deploy/debian/ftpgate.service" cmp -s "${UNIT:-/nonexistent}" deploy/debian/ftpgate.service
check "/etc/ftpgate/ftpgate.yaml is a conffile" \
    grep -q '^ */etc/ftpgate/ftpgate.yaml ' <<<"$(dpkg-query -W -f='${Conffiles}' ftpgate)"
# a proxy must not start before it is configured
check "the unit is not enabled" test ! -e /etc/systemd/system/multi-user.target.wants/ftpgate.service
check "/usr/bin/ftpgate --version runs" logged "$TMP/version.log" /usr/bin/ftpgate --version

# ------------------------------------------------------------------- user ----
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd ftpgate)"
check "user ftpgate exists" test -n "${uid:-}"
check "ftpgate is a system user (uid ${uid:-?} < 1000)" test "${uid:-1000}" -lt 1000
check "ftpgate has no login shell ($shell)" test "$shell" = /usr/sbin/nologin -o "$shell" = /bin/false
check "ftpgate has no home ($home)" test ! -e "$home"
check "ftpgate's primary group is group ftpgate" test "$(getent group "${gid:-x}" | cut -d: -f1)" = ftpgate
check "/var/log/ftpgate is ftpgate:ftpgate 750" test "$(stat -c '%U:%G %a' /var/log/ftpgate)" = "ftpgate:ftpgate 750"

# -------------------------------------------------------------------- run ----
as_ftpgate() { (cd / && exec setpriv --reuid=ftpgate --regid=ftpgate --init-groups -- "$@"); }
check "ftpgate check -c /etc/ftpgate/ftpgate.yaml succeeds as ftpgate" \
    logged "$TMP/check.log" as_ftpgate /usr/bin/ftpgate check -c /etc/ftpgate/ftpgate.yaml

# start CONFIG LOG: ftpgate run in the background as ftpgate; FTPGATE_PID is ftpgate's
# own pid (the subshell execs setpriv, which execs ftpgate), so the exit status waited
# for is ftpgate's.
start() {
    (cd / && exec setpriv --reuid=ftpgate --regid=ftpgate --init-groups -- \
        /usr/bin/ftpgate run -c "$1") >"$2" 2>&1 &
    FTPGATE_PID=$!
}
# greeting: the first line read from 127.0.0.1:2121 once it accepts (10 s at most)
greeting() {
    local i line=
    for ((i = 0; i < 100; i++)); do
        kill -0 "$FTPGATE_PID" 2>/dev/null || break
        if exec 3<>/dev/tcp/127.0.0.1/2121; then
            IFS= read -r -t 10 line <&3
            exec 3>&-
            break
        fi 2>/dev/null
        sleep 0.1
    done
    printf '%s' "${line%$'\r'}"
}
# stop: SIGTERM (the drain), wait at most 40 s (above the 30 s shutdown_grace); STOP_RC
# is the exit status. Not in $(...): only this shell can wait for its child.
stop() {
    local i
    kill -TERM "$FTPGATE_PID"
    for ((i = 0; i < 400; i++)); do
        kill -0 "$FTPGATE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$FTPGATE_PID" 2>/dev/null
    wait "$FTPGATE_PID"
    STOP_RC=$?
    FTPGATE_PID=
}

start /etc/ftpgate/ftpgate.yaml "$TMP/run.log"
line=$(greeting)
check "ftpgate runs as user ftpgate" test "$(ps -o user= -p "$FTPGATE_PID" 2>/dev/null)" = ftpgate
# nothing listens on the upstream 127.0.0.1:21: ftpgate's own 421
if [[ $line == 421* ]]; then
    pass "127.0.0.1:2121 greets: $line"
else
    fail "127.0.0.1:2121 greets with 421" "got '$line'"
    cat "$TMP/run.log"
fi
stop
check "SIGTERM: ftpgate exits with status 0 (got $STOP_RC)" test "$STOP_RC" = 0

# The optional transfer log: the ftpgate user creates it in /var/log/ftpgate at start.
sed 's|^  # xferlog: /var/log/ftpgate/xferlog|  xferlog: /var/log/ftpgate/xferlog|' \
    /etc/ftpgate/ftpgate.yaml >"$TMP/xferlog.yaml"
chmod 644 "$TMP/xferlog.yaml"
if grep -q '^  xferlog: /var/log/ftpgate/xferlog' "$TMP/xferlog.yaml"; then
    start "$TMP/xferlog.yaml" "$TMP/run-xferlog.log"
    greeting >/dev/null # waits until it listens
    check "with log.xferlog, ftpgate creates /var/log/ftpgate/xferlog as ftpgate" \
        test "$(stat -c %U /var/log/ftpgate/xferlog 2>/dev/null)" = ftpgate
    stop
    check "SIGTERM with log.xferlog: exit status 0 (got $STOP_RC)" test "$STOP_RC" = 0
else
    fail "the conffile has the commented log.xferlog line to turn on"
fi

# -------------------------------------------------------------- reinstall ----
echo "# changed by tests/deploy/deb.sh" >>/etc/ftpgate/ftpgate.yaml
check "dpkg -i again (postinst runs on an existing user) succeeds" \
    logged "$TMP/reinstall.log" dpkg -i "$deb"
check "reinstalling keeps the changed conffile" grep -q 'changed by tests/deploy/deb.sh' /etc/ftpgate/ftpgate.yaml

# ----------------------------------------------------------------- remove ----
check "dpkg -r removes the package" logged "$TMP/remove.log" dpkg -r ftpgate
check "after dpkg -r: /usr/bin/ftpgate is gone" test ! -e /usr/bin/ftpgate
check "after dpkg -r: the unit is gone" test ! -e "${UNIT:-/nonexistent}"
check "after dpkg -r: the conffile stays" test -f /etc/ftpgate/ftpgate.yaml
check "after dpkg -r: the user stays" logged /dev/null getent passwd ftpgate

# ------------------------------------------------------------------ purge ----
check "dpkg --purge purges the package" logged "$TMP/purge.log" dpkg --purge ftpgate
check "after purge: the conffile is gone" test ! -e /etc/ftpgate/ftpgate.yaml
check "after purge: /etc/ftpgate is gone" test ! -e /etc/ftpgate
check "after purge: /var/log/ftpgate is gone" test ! -e /var/log/ftpgate
check "after purge: /usr/share/doc/ftpgate is gone" test ! -e /usr/share/doc/ftpgate
check "after purge: user ftpgate is gone" test -z "$(getent passwd ftpgate)"
check "after purge: group ftpgate is gone" test -z "$(getent group ftpgate)"
check "after purge: no deb-systemd-helper state for ftpgate" \
    test -z "$(find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
        -name 'ftpgate*' 2>/dev/null)"
check "after purge: dpkg -l has nothing of ftpgate" \
    test -z "$(dpkg -l 2>/dev/null | awk '$2 == "ftpgate" || $2 ~ /^ftpgate:/')"

echo "$PASSED passed, $FAILED failed"
((FAILED == 0)) || exit 1
