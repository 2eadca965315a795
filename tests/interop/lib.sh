# shellcheck shell=bash
# Shared helpers for the interop suite (tests/interop/run.sh) and the benchmark
# (benches/bench.sh): cleanup registry, run-time port picking, a throw-away FTP
# user, and starting vsftpd, pure-ftpd and ftpgate in the foreground on loopback.
#
# Everything started here is registered for cleanup and killed by its pid (or the
# process group it leads) from the EXIT trap. Nothing here talks to any address
# but 127.0.0.1.
# shellcheck disable=SC2034 # the variables set here are read by the sourcing scripts

INTEROP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$INTEROP_DIR/../.." && pwd)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

# ---------------------------------------------------------------- cleanup ----
CLEAN_PIDS=()
CLEAN_USERS=()
CLEAN_PATHS=()

# stop_pid PID: TERM the process (and the group it leads), wait at most 5 s, then KILL.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
        kill -TERM -- "-$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup_all() {
    local rc=$? pid user path
    trap - EXIT INT TERM
    for pid in "${CLEAN_PIDS[@]}"; do stop_pid "$pid"; done
    for user in "${CLEAN_USERS[@]}"; do
        userdel "$user" >/dev/null 2>&1 || true
    done
    for path in "${CLEAN_PATHS[@]}"; do
        [[ -n "$path" && "$path" != / ]] && rm -rf -- "$path"
    done
    exit "$rc"
}

install_cleanup_trap() {
    trap cleanup_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_bg LOGFILE CMD...: run CMD in its own session (so its forked children can be
# killed with it), stdout+stderr to LOGFILE. Sets BG_PID and registers it for cleanup.
start_bg() {
    local logfile=$1
    shift
    setsid "$@" >"$logfile" 2>&1 </dev/null &
    BG_PID=$!
    CLEAN_PIDS+=("$BG_PID")
}

# ------------------------------------------------------------------ tools ----
need_tools() {
    local t missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (install them; .ci/run shows how)"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (creates a local FTP user and runs FTP servers)"
}

# now: seconds since the epoch with microseconds.
now() { printf '%s' "$EPOCHREALTIME"; }
# elapsed START [END]: seconds between two now() values, 3 decimals.
elapsed() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }'; }

# ------------------------------------------------------------------ ports ----
# pick_ports LO HI SIZE...: sets PORT_FIRST[i] and PORT_LAST[i] for each SIZE.
pick_ports() {
    local lo=$1 hi=$2 out first last
    shift 2
    out=$(python3 "$INTEROP_DIR/ports.py" "$lo" "$hi" "$@") || die "could not pick free ports in $lo-$hi"
    PORT_FIRST=()
    PORT_LAST=()
    while read -r first last; do
        PORT_FIRST+=("$first")
        PORT_LAST+=("$last")
    done <<<"$out"
}

# wait_banner PORT SECS [PID]: wait for a 220 greeting on 127.0.0.1:PORT; give up
# early if PID exits.
wait_banner() {
    python3 "$INTEROP_DIR/ftpwait.py" 127.0.0.1 "$@"
}

# ------------------------------------------------------------------- user ----
# make_ftp_user HOME: create a local user (random name and password) whose home is
# HOME; sets FTP_USER and FTP_PASS. The user is deleted on exit.
make_ftp_user() {
    local home=$1
    FTP_USER="ftpgi$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
    FTP_PASS="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    useradd -M -d "$home" -s /bin/bash "$FTP_USER" || die "useradd $FTP_USER failed"
    CLEAN_USERS+=("$FTP_USER")
    printf '%s:%s\n' "$FTP_USER" "$FTP_PASS" | chpasswd || die "chpasswd failed"
    mkdir -p "$home"
    chown "$FTP_USER:" "$home"
    chmod 755 "$home"
    grep -qx "$FTP_USER" /etc/ftpusers 2>/dev/null && die "$FTP_USER is denied by /etc/ftpusers"
    grep -qx /bin/bash /etc/shells || die "/bin/bash is not in /etc/shells (PAM pam_shells would refuse the login)"
}

# ---------------------------------------------------------------- vsftpd ----
# start_vsftpd WORKDIR PORT PASV_LO PASV_HI: vsftpd in the foreground on
# 127.0.0.1:PORT, local users with write access, PORT/PASV address checks left on
# (port_promiscuous=NO, pasv_promiscuous=NO). Sets VSFTPD_PID, VSFTPD_LOG, VSFTPD_OUT.
start_vsftpd() {
    local dir=$1 port=$2 plo=$3 phi=$4
    need_tools vsftpd
    mkdir -p "$dir/empty"
    chmod 755 "$dir/empty"
    VSFTPD_LOG=$dir/vsftpd.log
    VSFTPD_OUT=$dir/vsftpd.stderr
    : >"$VSFTPD_LOG"
    cat >"$dir/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
run_as_launching_user=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=NO
pam_service_name=vsftpd
secure_chroot_dir=$dir/empty
seccomp_sandbox=NO
ssl_enable=NO
port_enable=YES
connect_from_port_20=NO
port_promiscuous=NO
pasv_enable=YES
pasv_promiscuous=NO
pasv_min_port=$plo
pasv_max_port=$phi
max_clients=200
max_per_ip=200
accept_timeout=30
connect_timeout=30
data_connection_timeout=120
idle_session_timeout=300
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file=$VSFTPD_LOG
use_localtime=NO
EOF
    chmod 600 "$dir/vsftpd.conf"
    start_bg "$VSFTPD_OUT" vsftpd "$dir/vsftpd.conf"
    VSFTPD_PID=$BG_PID
    if ! wait_banner "$port" 15 "$BG_PID"; then
        cat "$VSFTPD_OUT" >&2
        die "vsftpd did not come up on 127.0.0.1:$port"
    fi
}

# -------------------------------------------------------------- pure-ftpd ----
# ensure_pureftpd: pure-ftpd conflicts with vsftpd as a package, so take its binary
# out of the .deb into a folder this suite owns. Sets PUREFTPD_BIN.
ensure_pureftpd() {
    local cache=${PUREFTPD_CACHE:-$INTEROP_DIR/.cache/pure-ftpd} deb missing
    local -a debs
    if [[ -n "${PUREFTPD_BIN:-}" ]]; then
        [[ -x "$PUREFTPD_BIN" ]] || die "PUREFTPD_BIN=$PUREFTPD_BIN is not executable"
        return 0
    fi
    PUREFTPD_BIN=$cache/root/usr/sbin/pure-ftpd
    if [[ ! -x "$PUREFTPD_BIN" ]]; then
        need_tools apt-get dpkg-deb
        mkdir -p "$cache"
        rm -rf "$cache/root" "$cache"/*.deb
        log "fetching pure-ftpd with apt-get download into $cache"
        (cd "$cache" && timeout 300 apt-get -q -o APT::Sandbox::User=root download pure-ftpd >&2) ||
            die "apt-get download pure-ftpd failed (run apt-get update first)"
        debs=("$cache"/pure-ftpd_*.deb)
        deb=${debs[0]}
        [[ -f "$deb" ]] || die "apt-get download left no pure-ftpd .deb in $cache"
        dpkg-deb -x "$deb" "$cache/root" || die "dpkg-deb -x $deb failed"
        [[ -x "$PUREFTPD_BIN" ]] || die "$deb has no usr/sbin/pure-ftpd"
    fi
    missing=$(ldd "$PUREFTPD_BIN" 2>&1 | grep 'not found' || true)
    [[ -z "$missing" ]] || die "pure-ftpd shared libraries missing (apt-get install them):
$missing"
}

# start_pureftpd WORKDIR PORT PASV_LO PASV_HI: pure-ftpd in the foreground on
# 127.0.0.1:PORT with /etc/passwd logins (the user lands in their home, not
# chrooted). pure-ftpd logs only to syslog, so what we can show is its stdout/stderr
# and its transfer log (-O clf:...); the client traces carry every server reply.
# Sets PUREFTPD_PID, PUREFTPD_LOG, PUREFTPD_OUT.
start_pureftpd() {
    local dir=$1 port=$2 plo=$3 phi=$4
    ensure_pureftpd
    mkdir -p "$dir"
    PUREFTPD_LOG=$dir/pure-ftpd.xfer.log
    PUREFTPD_OUT=$dir/pure-ftpd.stderr
    : >"$PUREFTPD_LOG"
    start_bg "$PUREFTPD_OUT" "$PUREFTPD_BIN" \
        --bind "127.0.0.1,$port" --ipv4only --login unix --noanonymous --dontresolve \
        --passiveportrange "$plo:$phi" --pidfile "$dir/pure-ftpd.pid" \
        --altlog "clf:$PUREFTPD_LOG" --maxclientsnumber 200 --maxclientsperip 200 \
        --maxidletime 5 --umask 133:022
    PUREFTPD_PID=$BG_PID
    if ! wait_banner "$port" 15 "$BG_PID"; then
        cat "$PUREFTPD_OUT" >&2
        die "pure-ftpd did not come up on 127.0.0.1:$port"
    fi
}

# --------------------------------------------------------------- ftpgate ----
# find_ftpgate: FTPGATE (env) or target/release/ftpgate or target/debug/ftpgate.
# Sets FTPGATE_BIN; returns 1 (with a message) when there is none.
find_ftpgate() {
    local c
    for c in "${FTPGATE:-}" "$REPO_ROOT/target/release/ftpgate" "$REPO_ROOT/target/debug/ftpgate"; do
        if [[ -n "$c" && -x "$c" ]]; then
            FTPGATE_BIN=$c
            return 0
        fi
    done
    log "no ftpgate binary: set FTPGATE=path or run 'cargo build --release' in $REPO_ROOT"
    return 1
}

# write_ftpgate_config FILE CTRL_PORT UPSTREAM_PORT PASV_LO PASV_HI ACT_LO ACT_HI SERVER_MODE
write_ftpgate_config() {
    local file=$1 ctrl=$2 up=$3 plo=$4 phi=$5 alo=$6 ahi=$7 mode=$8
    cat >"$file" <<EOF
listeners:
  - name: default
    bind: 127.0.0.1:$ctrl
    route:
      kind: fixed
      upstreams: [127.0.0.1:$up]
data:
  passive_ports: $plo-$phi
  advertise:
    - clients: 0.0.0.0/0
      address: auto
  server_mode: $mode
  server_active_ports: $alo-$ahi
timeouts: { connect: 10s, idle: 900s, data_accept: 30s }
limits: { max_sessions: 1000 }
log: { level: ${FTPGATE_LOG_LEVEL:-info}, format: text }
EOF
}

# start_ftpgate CONFIG LOGFILE CTRL_PORT: `ftpgate run -c CONFIG`, stderr to LOGFILE,
# then wait for a 220 through it. Sets FTPGATE_PID. Returns 1 if it does not come up.
start_ftpgate() {
    local cfg=$1 logfile=$2 ctrl=$3
    start_bg "$logfile" "$FTPGATE_BIN" run -c "$cfg"
    FTPGATE_PID=$BG_PID
    if ! wait_banner "$ctrl" 20 "$FTPGATE_PID"; then
        log "ftpgate did not greet on 127.0.0.1:$ctrl; its log:"
        tail -n 30 "$logfile" | sed -E 's/\x1b\[[0-9;]*m//g' >&2
        return 1
    fi
}

# proc_cpu_ticks PID: utime+stime of PID in clock ticks (fields 14 and 15 of stat).
proc_cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat") || return 1
    stat=${stat##*) } # drop "pid (comm) ", comm may contain spaces
    awk '{ print $12 + $13 }' <<<"$stat"
}
