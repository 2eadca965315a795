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

# in_range N "LO HI": is N within LO..HI?
in_range() {
    local lo hi
    read -r lo hi <<<"$2"
    [[ $1 =~ ^[0-9]+$ ]] && (($1 >= lo && $1 <= hi))
}

# check_passive_replies PREFIX_RE "LO HI" WHO: every 227/229 reply in $TRACE (lines
# matching PREFIX_RE then the code) advertises 127.0.0.1 and a port in LO..HI, the
# passive range of WHO (the server, or ftpgate). A proxy that forwards the server's
# reply instead of rewriting it fails here. Sets REASON and returns 1 otherwise.
check_passive_replies() {
    local prefix=$1 want=$2 who=$3 line hp p a
    while IFS= read -r line; do
        if [[ $line =~ ([0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9]+) ]]; then
            IFS=, read -ra hp <<<"${BASH_REMATCH[1]}"
            a="${hp[0]}.${hp[1]}.${hp[2]}.${hp[3]}"
            p=$((hp[4] * 256 + hp[5]))
            [[ $a == 127.0.0.1 ]] || { REASON="227 reply advertises $a, want 127.0.0.1: $line"; return 1; }
        elif [[ $line =~ \|\|\|([0-9]+)\| ]]; then
            p=${BASH_REMATCH[1]}
        else
            REASON="cannot parse passive reply: $line"
            return 1
        fi
        in_range "$p" "$want" || {
            REASON="passive reply port $p is outside ${want/ /-} ($who range): $line"
            return 1
        }
    done < <(grep -E "${prefix}22[79] " "$TRACE" | tr -d '\r')
}

# ------------------------------------------------------------- case logs ----
# Byte offsets of the logs at the start of a case, to show only that case's lines.
declare -A LOG_OFF
mark_logs() {
    local f
    LOG_OFF=()
    for f in "$@"; do
        if [[ -f $f ]]; then LOG_OFF[$f]=$(stat -c %s "$f"); fi
    done
}
show_logs() {
    local f off
    for f in "${!LOG_OFF[@]}"; do
        off=${LOG_OFF[$f]}
        echo "    --- $f (this case, last 40 lines)"
        tail -c +$((off + 1)) "$f" | tail -n 40 | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    | /'
    done
}

# mask_pass: hide the test user's password in client traces (curl, lftp, ftplib).
mask_pass() { sed -E "s/^(> |---> )PASS .*/\\1PASS ****/; s/^(\\*cmd\\* 'PASS ).*/\\1****'/"; }

# make_work_dir PREFIX: a fresh /tmp/PREFIX.XXXXXX as WORK, removed on exit unless
# INTEROP_KEEP=1.
make_work_dir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX") || die "mktemp failed"
    chmod 755 "$WORK"
    if [[ "${INTEROP_KEEP:-0}" == 1 ]]; then
        log "keeping work directory $WORK"
    else
        CLEAN_PATHS+=("$WORK")
    fi
}

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

# wait_accept PORT SECS [PID]: wait until something accepts TCP connections on
# 127.0.0.1:PORT (for listeners that greet with a refusal); give up early if PID exits.
wait_accept() {
    local port=$1 secs=$2 pid=${3:-} end
    end=$((SECONDS + secs))
    while ((SECONDS < end)); do
        [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || { log "process $pid exited before 127.0.0.1:$port listened"; return 1; }
        # shellcheck disable=SC2016 # $1 is expanded by the child shell
        if timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing accepted on 127.0.0.1:$port within ${secs}s"
    return 1
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
# start_vsftpd WORKDIR PORT PASV_LO PASV_HI [EXTRA_CONF [OPENSSL_CONF]]: vsftpd in the
# foreground on 127.0.0.1:PORT, local users with write access, PORT/PASV address checks
# left on (port_promiscuous=NO, pasv_promiscuous=NO). EXTRA_CONF (a file) is appended
# to the generated config (vsftpd takes the last value of a repeated setting: that is
# how the TLS suite turns ssl_enable on); OPENSSL_CONF is exported to vsftpd only.
# Sets VSFTPD_PID, VSFTPD_LOG, VSFTPD_OUT.
start_vsftpd() {
    local dir=$1 port=$2 plo=$3 phi=$4 extra=${5:-} osslconf=${6:-}
    local -a envs=()
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
    [[ -z $extra ]] || cat "$extra" >>"$dir/vsftpd.conf"
    [[ -z $osslconf ]] || envs=("OPENSSL_CONF=$osslconf")
    chmod 600 "$dir/vsftpd.conf"
    start_bg "$VSFTPD_OUT" env "${envs[@]}" vsftpd "$dir/vsftpd.conf"
    VSFTPD_PID=$BG_PID
    if ! wait_banner "$port" 15 "$BG_PID"; then
        cat "$VSFTPD_OUT" >&2
        die "vsftpd did not come up on 127.0.0.1:$port"
    fi
}

# ------------------------------------------------------ unpacked packages ----
# unpack_debs CACHE BINARY PKG...: pure-ftpd and proftpd conflict with vsftpd as
# packages (all three provide ftp-server), so take them out of their .debs
# (apt-get download + dpkg-deb -x) into CACHE/root, a folder this suite owns. Does
# nothing when CACHE/root/BINARY is already there; dies if it cannot get there, or if
# BINARY's shared libraries are not installed (.ci/run installs them).
unpack_debs() {
    local cache=$1 bin=$2 pkg deb missing
    local -a debs
    shift 2
    if [[ ! -x "$cache/root/$bin" ]]; then
        need_tools apt-get dpkg-deb
        mkdir -p "$cache"
        rm -rf "$cache/root" "$cache"/*.deb
        log "fetching $* with apt-get download into $cache"
        (cd "$cache" && timeout 300 apt-get -q -o APT::Sandbox::User=root download "$@" >&2) ||
            die "apt-get download $* failed (run apt-get update first)"
        for pkg in "$@"; do
            debs=("$cache/${pkg}"_*.deb)
            deb=${debs[0]}
            [[ -f "$deb" ]] || die "apt-get download left no $pkg .deb in $cache"
            dpkg-deb -x "$deb" "$cache/root" || die "dpkg-deb -x $deb failed"
        done
        [[ -x "$cache/root/$bin" ]] || die "the .debs of $* have no $bin"
    fi
    missing=$(ldd "$cache/root/$bin" 2>&1 | grep 'not found' || true)
    [[ -z "$missing" ]] || die "$bin: shared libraries missing (apt-get install them):
$missing"
}

# -------------------------------------------------------------- pure-ftpd ----
# ensure_pureftpd: pure-ftpd's binary out of its .deb. Sets PUREFTPD_BIN.
ensure_pureftpd() {
    local cache=${PUREFTPD_CACHE:-$INTEROP_DIR/.cache/pure-ftpd}
    if [[ -n "${PUREFTPD_BIN:-}" ]]; then
        [[ -x "$PUREFTPD_BIN" ]] || die "PUREFTPD_BIN=$PUREFTPD_BIN is not executable"
        return 0
    fi
    unpack_debs "$cache" usr/sbin/pure-ftpd pure-ftpd
    PUREFTPD_BIN=$cache/root/usr/sbin/pure-ftpd
}

# start_pureftpd WORKDIR PORT PASV_LO PASV_HI [ARG...]: pure-ftpd in the foreground on
# 127.0.0.1:PORT with /etc/passwd logins (the user lands in their home, not
# chrooted), ARGs appended to its command line (the TLS suite adds --tls and
# --certfile). pure-ftpd logs only to syslog, so what we can show is its stdout/stderr
# and its transfer log (-O clf:...); the client traces carry every server reply.
# Sets PUREFTPD_PID, PUREFTPD_LOG, PUREFTPD_OUT.
start_pureftpd() {
    local dir=$1 port=$2 plo=$3 phi=$4
    shift 4
    ensure_pureftpd
    mkdir -p "$dir"
    PUREFTPD_LOG=$dir/pure-ftpd.xfer.log
    PUREFTPD_OUT=$dir/pure-ftpd.stderr
    : >"$PUREFTPD_LOG"
    start_bg "$PUREFTPD_OUT" "$PUREFTPD_BIN" \
        --bind "127.0.0.1,$port" --ipv4only --login unix --noanonymous --dontresolve \
        --passiveportrange "$plo:$phi" --pidfile "$dir/pure-ftpd.pid" \
        --altlog "clf:$PUREFTPD_LOG" --maxclientsnumber 200 --maxclientsperip 200 \
        --maxidletime 5 --umask 133:022 "$@"
    PUREFTPD_PID=$BG_PID
    if ! wait_banner "$port" 15 "$BG_PID"; then
        cat "$PUREFTPD_OUT" >&2
        die "pure-ftpd did not come up on 127.0.0.1:$port"
    fi
}

# ---------------------------------------------------------------- proftpd ----
# ensure_proftpd: proftpd and its TLS module (mod_tls is in proftpd-mod-crypto on
# Debian 12) out of their .debs. Sets PROFTPD_BIN and PROFTPD_MODULES.
ensure_proftpd() {
    local cache=${PROFTPD_CACHE:-$INTEROP_DIR/.cache/proftpd} missing
    unpack_debs "$cache" usr/sbin/proftpd proftpd-core proftpd-mod-crypto
    PROFTPD_BIN=$cache/root/usr/sbin/proftpd
    PROFTPD_MODULES=$cache/root/usr/lib/proftpd
    [[ -f $PROFTPD_MODULES/mod_tls.so ]] || die "no mod_tls.so in $PROFTPD_MODULES"
    missing=$(ldd "$PROFTPD_MODULES/mod_tls.so" 2>&1 | grep 'not found' || true)
    [[ -z "$missing" ]] || die "mod_tls.so: shared libraries missing: $missing"
}

# start_proftpd WORKDIR PORT PASV_LO PASV_HI CERT KEY [DIRECTIVE...]: proftpd in the
# foreground (-n) on 127.0.0.1:PORT with mod_tls loaded and TLS on, /etc/passwd
# logins, no chroot. Each DIRECTIVE is a config line appended (TLSRequired,
# TLSOptions UseImplicitSSL, ...). Session reuse on data connections is mod_tls's
# default (required) and left so. Every command is logged (ExtendedLog ALL) to
# PROFTPD_LOG. Waits for a 220 (over TLS when a directive says UseImplicitSSL).
# Sets PROFTPD_PID, PROFTPD_LOG, PROFTPD_OUT, PROFTPD_TLSLOG.
start_proftpd() {
    local dir=$1 port=$2 plo=$3 phi=$4 cert=$5 key=$6 line implicit=0
    shift 6
    ensure_proftpd
    mkdir -p "$dir"
    PROFTPD_LOG=$dir/proftpd.cmd.log
    PROFTPD_OUT=$dir/proftpd.stderr
    PROFTPD_TLSLOG=$dir/proftpd.tls.log
    : >"$PROFTPD_LOG"
    cat >"$dir/proftpd.conf" <<EOF
ServerName "ftpgate interop proftpd"
ServerType standalone
Port $port
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
Umask 022
MaxInstances 200
PassivePorts $plo $phi
PidFile $dir/proftpd.pid
ScoreboardFile $dir/proftpd.scoreboard
DelayTable none
WtmpLog off
UseReverseDNS off
RequireValidShell off
AuthOrder mod_auth_unix.c
AllowOverwrite on
TimeoutIdle 300
ModulePath $PROFTPD_MODULES
LoadModule mod_tls.c
SystemLog $dir/proftpd.system.log
TransferLog $dir/proftpd.xfer.log
ExtendedLog $PROFTPD_LOG ALL
TLSEngine on
TLSLog $PROFTPD_TLSLOG
TLSProtocol TLSv1.2 TLSv1.3
TLSRSACertificateFile $cert
TLSRSACertificateKeyFile $key
TLSVerifyClient off
EOF
    for line in "$@"; do
        echo "$line" >>"$dir/proftpd.conf"
        [[ $line == *UseImplicitSSL* ]] && implicit=1
    done
    start_bg "$PROFTPD_OUT" "$PROFTPD_BIN" -n -c "$dir/proftpd.conf"
    PROFTPD_PID=$BG_PID
    if ((implicit)); then
        wait_tls_banner "$port" 15 "$BG_PID" || { cat "$PROFTPD_OUT" >&2; die "proftpd (implicit TLS) did not come up on 127.0.0.1:$port"; }
    elif ! wait_banner "$port" 15 "$BG_PID"; then
        cat "$PROFTPD_OUT" >&2
        die "proftpd did not come up on 127.0.0.1:$port"
    fi
}

# -------------------------------------------------------------------- TLS ----
# wait_tls_banner PORT SECS [PID]: like wait_banner, for implicit FTPS (TLS first).
wait_tls_banner() {
    python3 "$INTEROP_DIR/ftpwait.py" --tls 127.0.0.1 "$@"
}

# make_test_pki DIR: a test CA (ca.pem) and a server certificate signed by it
# (server.pem/server.key: CN localhost, SAN IP:127.0.0.1 and DNS:localhost), plus an
# unrelated CA (otherca.pem) and a certificate for the same names signed by it
# (rogue.pem/rogue.key), for the verification failure cases. RSA 2048, 2 days.
make_test_pki() {
    local dir=$1 name ca
    need_tools openssl
    mkdir -p "$dir"
    for name in ca otherca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$dir/$name.key" -out "$dir/$name.pem" \
            -subj "/CN=ftpgate interop $name" -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 || die "openssl: making $name failed"
    done
    printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature,keyEncipherment \
        extendedKeyUsage=serverAuth,clientAuth subjectAltName=IP:127.0.0.1,DNS:localhost >"$dir/leaf.ext"
    for name in server:ca rogue:otherca; do
        ca=${name#*:} name=${name%:*}
        openssl req -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" \
            -subj /CN=localhost >/dev/null 2>&1 || die "openssl: making the $name request failed"
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/leaf.ext" -out "$dir/$name.pem" >/dev/null 2>&1 ||
            die "openssl: signing $name with $ca failed"
    done
    chmod 644 "$dir"/*.pem
    chmod 600 "$dir"/*.key
    openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null || die "server.pem does not verify"
}

# openssl_conf_protocols FILE MIN MAX: an OpenSSL config that limits every TLS context
# of the process it is given to (OPENSSL_CONF=FILE) to MIN..MAX (TLSv1.2, TLSv1.3).
# vsftpd 3.0.3 has no per-version switch above ssl_tlsv1, and ssl_ciphers does not
# touch TLS 1.3, so this is how the suite pins vsftpd's versions.
openssl_conf_protocols() {
    cat >"$1" <<EOF
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = $2
MaxProtocol = $3
EOF
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

# ------------------------------------------------------------ one-line checks ----
# For suites made of one-line checks (ops.sh, tests/deploy/): `check NAME 0|1 [DETAIL]`
# prints PASS or FAIL (with DETAIL), `ok CMD...` is 0 or 1 for CMD's success, so
# `check "it works" "$(ok test -f x)" "why"`; `summary` prints the totals line the
# runners read and fails if any check did.
PASSED=0
FAILED=0
check() {
    if [[ $2 == 0 ]]; then
        PASSED=$((PASSED + 1))
        echo "PASS $1"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $1${3:+: $3}"
    fi
}
ok() { if "$@"; then echo 0; else echo 1; fi; }
summary() {
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
}
