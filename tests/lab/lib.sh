# shellcheck shell=bash
# Network-namespace lab helpers (tests/lab/run.sh): namespaces and veth links,
# FTP servers and ftpgate inside namespaces, the clients, and the case runner.
#
# Rules this file keeps:
#  - Inside namespaces only documentation addresses are used (192.0.2.0/24,
#    198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). Veth pairs are created directly
#    inside the namespaces (`ip link add ... netns A type veth peer ... netns B`), so no
#    interface, route or nftables rule ever exists in the host's namespace.
#  - Every namespace carries the run prefix (fg<pid>-); the EXIT trap stops every
#    process (by pid) and deletes every namespace, user and temp dir the run made.
#  - Every wait and every client command is bounded by `timeout`.
# shellcheck disable=SC2034 # variables here are read by the sourcing scripts

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/interop/lib.sh
source "$LAB_DIR/../interop/lib.sh"

LAB_PREFIX="fg$$-"
LAB_NS=()          # namespaces made by this run
CMD_TIMEOUT=${LAB_CMD_TIMEOUT:-20}
FAIL_TIMEOUT=${LAB_FAIL_TIMEOUT:-8}

# ------------------------------------------------------------- cleanup ----
lab_cleanup() {
    local rc=$? pid ns
    trap - EXIT INT TERM
    for pid in "${CLEAN_PIDS[@]}"; do stop_pid "$pid"; done
    CLEAN_PIDS=()
    for ns in "${LAB_NS[@]}"; do ns_del "$ns"; done
    (exit "$rc")
    cleanup_all
}

install_lab_trap() {
    trap lab_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ns_del NS: kill whatever still runs in it (only our own namespaces reach here), delete it.
ns_del() {
    local ns=$1 pid
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || return 0
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    timeout 10 ip netns del "$ns" 2>/dev/null || log "warning: could not delete namespace $ns"
}

# clean_stale: namespaces named fg<pid>-* whose run (pid) is gone are leftovers of a
# crashed run; remove them.
clean_stale() {
    local ns owner
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^fg[0-9]+-' || true); do
        owner=${ns#fg}
        owner=${owner%%-*}
        if [[ "$owner" != "$$" ]] && ! kill -0 "$owner" 2>/dev/null; then
            log "removing stale namespace $ns (run $owner is gone)"
            ns_del "$ns"
        fi
    done
}

# ---------------------------------------------------------- namespaces ----
# ns NAME: the full namespace name for NAME.
ns() { printf '%s%s' "$LAB_PREFIX" "$1"; }
# nsx NAME CMD...: run CMD inside namespace NAME.
nsx() {
    local n
    n=$(ns "$1")
    shift
    ip netns exec "$n" "$@"
}

# ns_add NAME [router]: a namespace with lo up, IPv6 DAD off, forwarding if router.
ns_add() {
    local n
    n=$(ns "$1")
    ip netns add "$n" || return 1
    LAB_NS+=("$n")
    ip -n "$n" link set lo up
    nsx "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 >/dev/null
    if [[ "${2:-}" == router ]]; then
        nsx "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 >/dev/null
    fi
}

# link A IFA B IFB: a veth pair with end IFA in namespace A and IFB in namespace B, up.
link() {
    ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")" || return 1
    ip -n "$(ns "$1")" link set "$2" up
    ip -n "$(ns "$3")" link set "$4" up
}

# addr NS IF CIDR...: add addresses (IPv6 without DAD).
addr() {
    local n=$1 ifc=$2 a
    shift 2
    for a in "$@"; do
        if [[ $a == *:* ]]; then
            ip -n "$(ns "$n")" -6 addr add "$a" dev "$ifc" nodad
        else
            ip -n "$(ns "$n")" addr add "$a" dev "$ifc"
        fi
    done
}

# route NS ARGS...: ip route add ARGS in NS (ip -6 when the args name an IPv6 net).
route() {
    local n=$1
    shift
    if [[ "$*" == *:* ]]; then ip -n "$(ns "$n")" -6 route add "$@"; else ip -n "$(ns "$n")" route add "$@"; fi
}

# nft_load NS FILE: load an nftables file inside NS (never in the host's namespace).
nft_load() { nsx "$1" nft -f "$2"; }

# teardown: stop the processes started so far and delete the namespaces (between topologies).
teardown() {
    local pid ns
    for pid in "${CLEAN_PIDS[@]}"; do stop_pid "$pid"; done
    CLEAN_PIDS=()
    for ns in "${LAB_NS[@]}"; do ns_del "$ns"; done
    LAB_NS=()
}

# no_ftp_helper NS...: prove no kernel FTP helper is in play: no `ct helper` in any
# ruleset and no helper attached to any tracked connection we can see.
no_ftp_helper() {
    local n
    for n in "$@"; do
        if nsx "$n" nft list ruleset | grep -Eq 'ct helper|helper "ftp'; then
            log "namespace $n has a ct helper in its ruleset"
            return 1
        fi
    done
    # Since Linux 6.0 a helper is attached only by an explicit `ct helper` rule (the
    # nf_conntrack_helper auto-assignment sysctl is gone); older kernels: require it off.
    if [[ -e /proc/sys/net/netfilter/nf_conntrack_helper ]] &&
        [[ $(nsx "$1" cat /proc/sys/net/netfilter/nf_conntrack_helper) != 0 ]]; then
        log "nf_conntrack_helper auto-assignment is on in $1"
        return 1
    fi
    log "no FTP conntrack helper: no 'ct helper' rule in $* (kernel $(uname -r); nf_conntrack_ftp $([[ -d /sys/module/nf_conntrack_ftp ]] && echo present but unassigned || echo absent))"
}

# ------------------------------------------------------------- servers ----
# srv_start_vsftpd NS DIR PORT PASV_LO PASV_HI [extra vsftpd.conf lines]: vsftpd in NS
# listening on every IPv4 and IPv6 address (dual stack) at PORT.
srv_start_vsftpd() {
    local nsn=$1 dir=$2 port=$3 plo=$4 phi=$5 extra=${6:-}
    mkdir -p "$dir/empty"
    chmod 755 "$dir/empty"
    VSFTPD_LOG=$dir/vsftpd.log
    : >"$VSFTPD_LOG"
    cat >"$dir/vsftpd.conf" <<EOF
listen=NO
listen_ipv6=YES
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
pasv_promiscuous=NO
pasv_min_port=$plo
pasv_max_port=$phi
max_clients=200
max_per_ip=200
accept_timeout=5
connect_timeout=4
data_connection_timeout=60
idle_session_timeout=120
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file=$VSFTPD_LOG
use_localtime=NO
$extra
EOF
    chmod 600 "$dir/vsftpd.conf"
    start_bg "$dir/vsftpd.stderr" ip netns exec "$(ns "$nsn")" vsftpd "$dir/vsftpd.conf"
    nsx "$nsn" timeout 20 python3 "$INTEROP_DIR/ftpwait.py" 127.0.0.1 "$port" 15 "$BG_PID" ||
        { cat "$dir/vsftpd.stderr" >&2; die "vsftpd did not come up in $nsn:$port"; }
}

# srv_start_pureftpd NS DIR PORT PASV_LO PASV_HI: pure-ftpd in NS on every address at PORT.
srv_start_pureftpd() {
    local nsn=$1 dir=$2 port=$3 plo=$4 phi=$5
    ensure_pureftpd
    mkdir -p "$dir"
    PUREFTPD_LOG=$dir/pure-ftpd.xfer.log
    : >"$PUREFTPD_LOG"
    start_bg "$dir/pure-ftpd.stderr" ip netns exec "$(ns "$nsn")" "$PUREFTPD_BIN" \
        --bind ",$port" --login unix --noanonymous --dontresolve \
        --passiveportrange "$plo:$phi" --pidfile "$dir/pure-ftpd.pid" \
        --altlog "clf:$PUREFTPD_LOG" --maxclientsnumber 200 --maxclientsperip 200 \
        --maxidletime 5 --umask 133:022
    nsx "$nsn" timeout 20 python3 "$INTEROP_DIR/ftpwait.py" 127.0.0.1 "$port" 15 "$BG_PID" ||
        { cat "$dir/pure-ftpd.stderr" >&2; die "pure-ftpd did not come up in $nsn:$port"; }
}

# Server naming used by every topology: vsftpd on :21 (passive 30000-30049),
# pure-ftpd on :2121 (passive 30050-30099); "vsftpd-nopasv" on :2100 (PASV/EPSV off,
# an active-only server; passive range unused). Topology 6 (ftps): "vsftpd-tls" on :21
# (FTPS only: TLS required for logins and data, data connections must resume the
# control session; certificate from lab_tls_certs) and "vsftpd-plain" on :2121
# (passive 30050-30099).
SRV_PORT_vsftpd=21
SRV_PORT_pureftpd=2121
SRV_PORT_nopasv=2100
srv_port() {
    case $1 in
    vsftpd | vsftpd-tls) echo 21 ;; pure-ftpd | vsftpd-plain) echo 2121 ;; vsftpd-nopasv) echo 2100 ;;
    esac
}

# start_servers NS SERVERS...: start the named servers in NS under $WORK/srv-<topo>.
start_servers() {
    local nsn=$1 s d
    shift
    for s in "$@"; do
        d=$WORK/srv-$TOPO-$s
        case $s in
        vsftpd) srv_start_vsftpd "$nsn" "$d" 21 30000 30049; VSLOG_vsftpd=$VSFTPD_LOG ;;
        vsftpd-nopasv) srv_start_vsftpd "$nsn" "$d" 2100 30000 30049 "pasv_enable=NO"; VSLOG_nopasv=$VSFTPD_LOG ;;
        pure-ftpd) srv_start_pureftpd "$nsn" "$d" 2121 30050 30099; PFLOG=$PUREFTPD_LOG ;;
        vsftpd-plain) srv_start_vsftpd "$nsn" "$d" 2121 30050 30099; VSLOG_plain=$VSFTPD_LOG ;;
        vsftpd-tls)
            srv_start_vsftpd "$nsn" "$d" 21 30000 30049 "ssl_enable=YES
rsa_cert_file=$LAB_TLS/server.pem
rsa_private_key_file=$LAB_TLS/server.key
require_ssl_reuse=YES
force_local_data_ssl=YES
force_local_logins_ssl=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
ssl_ciphers=HIGH"
            VSLOG_tls=$VSFTPD_LOG
            ;;
        esac
    done
}

# server_log SERVER: the log that names the peer of each session/transfer.
server_log() {
    case $1 in
    vsftpd) echo "$VSLOG_vsftpd" ;; vsftpd-nopasv) echo "$VSLOG_nopasv" ;; pure-ftpd) echo "$PFLOG" ;;
    vsftpd-tls) echo "$VSLOG_tls" ;; vsftpd-plain) echo "$VSLOG_plain" ;;
    esac
}

# lab_tls_certs DIR SERVER_SANS GATE_SANS: a throw-away test CA (ca.pem) and two leaf
# certificates signed by it, server.pem/.key (the FTP server) and gate.pem/.key
# (ftpgate's client-facing listener), each with the given subjectAltName list
# ("DNS:a,IP:b"). Valid for two days; sets LAB_TLS=DIR.
lab_tls_certs() {
    local dir=$1 name sans
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -subj "/CN=ftpgate lab test CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 || die "openssl: making the test CA failed"
    for name in server gate; do
        if [[ $name == server ]]; then sans=$2; else sans=$3; fi
        openssl req -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" \
            -subj "/CN=ftpgate lab $name" >/dev/null 2>&1 || die "openssl: making the $name request failed"
        printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
            "$sans" >"$dir/$name.ext"
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
            -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.pem" >/dev/null 2>&1 ||
            die "openssl: signing the $name certificate failed"
        openssl verify -CAfile "$dir/ca.pem" "$dir/$name.pem" >/dev/null || die "$name.pem does not verify"
    done
    chmod 600 "$dir"/*.key
    LAB_TLS=$dir
}

# ------------------------------------------------------------- ftpgate ----
# gate_start NS CONFIG NAME: run ftpgate in NS; wait until it listens (each listener
# address given in GATE_WAIT as "addr port" lines, reachable from NS itself).
gate_start() {
    local nsn=$1 cfg=$2 name=$3 a p
    GATE_LOG=$WORK/ftpgate-$name.log
    if ! "$FTPGATE_BIN" check -c "$cfg" >"$WORK/ftpgate-$name.check" 2>&1; then
        cat "$WORK/ftpgate-$name.check" >&2
        return 1
    fi
    start_bg "$GATE_LOG" ip netns exec "$(ns "$nsn")" "$FTPGATE_BIN" run -c "$cfg"
    GATE_PID=$BG_PID
    while read -r a p; do
        [[ -n $a ]] || continue
        if ! nsx "$nsn" timeout 25 python3 "$INTEROP_DIR/ftpwait.py" "$a" "$p" 20 "$GATE_PID"; then
            log "ftpgate ($name) did not greet on $a:$p; its log:"
            sed -E 's/\x1b\[[0-9;]*m//g' "$GATE_LOG" | tail -n 30 >&2
            return 1
        fi
    done <<<"$GATE_WAIT"
}

gate_stop() {
    local pid=$GATE_PID keep=() p
    stop_pid "$pid"
    for p in "${CLEAN_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    CLEAN_PIDS=("${keep[@]}")
}

# ------------------------------------------------------------- clients ----
curl_mode_args() {
    case $1 in
    curl-pasv) echo "--ftp-pasv --disable-epsv" ;;
    curl-epsv) echo "--ftp-pasv" ;;
    curl-port) echo "-P - --disable-eprt" ;;
    curl-eprt) echo "-P -" ;;
    esac
}

# run_client NS CLIENT HOST PORT REMOTE LOCAL: one bounded download; trace in $TRACE.
# CLIENT "ftps-X" is client X over explicit FTPS: TLS required for the login and the
# data (PROT P), the server's certificate verified against $LAB_TLS/ca.pem;
# "ftps-curl-X-noreuse" is curl without its TLS session cache (--no-sessionid), so its
# data connections do not resume the control connection's session. With UPLOAD=1 the
# client uploads LOCAL to REMOTE instead of downloading REMOTE to LOCAL.
run_client() {
    local nsn=$1 client=$2 host=$3 port=$4 remote=$5 lpath=$6 h=$3 script CMD_TIMEOUT=$CMD_TIMEOUT tls=0
    # a case expected to fail need not wait for a slow server-side timeout
    [[ ${EXPECT:-ok} == fail ]] && CMD_TIMEOUT=$FAIL_TIMEOUT
    [[ $host == *:* ]] && h="[$host]"
    local noreuse=0
    [[ $client == ftps-* ]] && tls=1 client=${client#ftps-}
    [[ $client == *-noreuse ]] && noreuse=1 client=${client%-noreuse}
    case $client in
    curl-*)
        local -a args xfer
        read -ra args <<<"$(curl_mode_args "$client")"
        ((tls)) && args+=(--ssl-reqd --cacert "$LAB_TLS/ca.pem")
        ((noreuse)) && args+=(--no-sessionid)
        if [[ ${UPLOAD:-0} == 1 ]]; then xfer=(-T "$lpath"); else xfer=(-o "$lpath"); fi
        # --no-ftp-skip-pasv-ip: use the address in the 227 reply, so a wrong
        # advertised address is caught (curl >= 7.74 ignores it by default).
        nsx "$nsn" timeout -k 3 $((CMD_TIMEOUT + 5)) curl "${args[@]}" -sS -v --no-ftp-skip-pasv-ip \
            --connect-timeout 5 --max-time "$CMD_TIMEOUT" -u "$FTP_USER:$FTP_PASS" \
            "${xfer[@]}" "ftp://$h:$port/$remote" >/dev/null 2>"$TRACE"
        ;;
    raw-*)
        # raw-pasv|raw-lpsv|raw-lprt: one data command by hand (no transfer); the
        # case checks the reply code (see ftpraw.py).
        local verb=${client#raw-} arg=""
        verb=${verb^^}
        if [[ $verb == LPRT ]]; then
            if [[ $host == *:* ]]; then arg=" 6,16,32,1,13,184,0,1,0,0,0,0,0,0,0,0,0,16,2,195,80"; else arg=" 4,4,192,0,2,10,2,195,80"; fi
        fi
        nsx "$nsn" timeout -k 3 "$CMD_TIMEOUT" python3 "$LAB_DIR/ftpraw.py" "$host" "$port" \
            "$FTP_USER" "$FTP_PASS" "$verb$arg" >"$TRACE" 2>&1
        return 1
        ;;
    lftp-*)
        script=$WORK/lftp.script
        {
            echo "set cmd:fail-exit yes"
            if ((tls)); then
                echo "set ftp:ssl-allow yes"
                echo "set ftp:ssl-force true"
                echo "set ftp:ssl-protect-data true"
                echo "set ftp:ssl-protect-list true"
                echo "set ssl:verify-certificate yes"
                echo "set ssl:check-hostname yes"
                echo "set ssl:ca-file $LAB_TLS/ca.pem"
            else
                echo "set ftp:ssl-allow no"
            fi
            echo "set net:max-retries 1"
            echo "set net:persist-retries 0"
            echo "set net:timeout 6"
            echo "set net:reconnect-interval-base 1"
            echo "set xfer:clobber yes"
            echo "set ftp:auto-passive-mode no"
            # strict: use the address the server gives, no client-side NAT fix-up
            echo "set ftp:fix-pasv-address no"
            echo "set ftp:ignore-pasv-address no"
            case $client in
            lftp-pasv) echo "set ftp:passive-mode on"; echo "set ftp:prefer-epsv no" ;;
            lftp-port) echo "set ftp:passive-mode off" ;;
            esac
            echo "open -u $FTP_USER,$FTP_PASS -p $port ftp://$h"
            if [[ ${UPLOAD:-0} == 1 ]]; then echo "put $lpath -o $remote"; else echo "get $remote -o $lpath"; fi
            echo "bye"
        } >"$script"
        HOME=$WORK/lftp-home XDG_CONFIG_HOME=$WORK/lftp-home XDG_DATA_HOME=$WORK/lftp-home \
            nsx "$nsn" timeout -k 3 $((CMD_TIMEOUT + 5)) lftp -d -f "$script" >/dev/null 2>"$TRACE"
        ;;
    esac
}

# want_cmd CLIENT FAMILY: the data command the trace must show (lftp on IPv6 uses EPSV/EPRT).
want_cmd() {
    local c=${1#ftps-}
    case ${c%-noreuse} in
    raw-*) local v=${1#raw-}; echo "${v^^}" ;;
    curl-pasv) echo PASV ;; curl-epsv) echo EPSV ;; curl-port) echo PORT ;; curl-eprt) echo EPRT ;;
    lftp-pasv) if [[ $2 == 6 ]]; then echo EPSV; else echo PASV; fi ;;
    lftp-port) if [[ $2 == 6 ]]; then echo EPRT; else echo PORT; fi ;;
    esac
}

# trace_lines: client->server commands and server->client replies, normalised to
# "> CMD" / "< REPLY" for both curl and lftp.
trace_cmds() { sed -nE 's/^(> |---> )(PASV|EPSV|PORT|EPRT|LPRT|LPSV)(.*)$/\2\3/p' "$TRACE" | tr -d '\r'; }
trace_replies() { sed -nE 's/^(< |<--- )([0-9]{3}[ -].*)$/\2/p' "$TRACE" | tr -d '\r'; }

# ------------------------------------------------------------ cases ----
PASSED=0
FAILED=0

# case_run: run one case from these variables, print its line, count it:
#   TOPO VIA(ftpgate|direct) SERVER SMODE CNS(client ns) CLIENT HOST PORT EXPECT(ok|fail)
#   WHERE (free text for the table, e.g. client location)
#   optional: WANT_227 (address a 227 must carry), WANT_PEER (address the server must
#   log as its peer), WANT_CODE (reply code an expected failure must show),
#   WANT_SRV_CMD (PASV|PORT: what the server must have received; vsftpd only)
#   WANT_LOG (EREs, one a line, each of which must match what the case added to the
#   server's log, or with VIA=ftpgate to ftpgate's log: for a reason the client does
#   not read)
#   UPLOAD=1: upload the test file (to up-N.bin in the FTP user's home, $WORK/home)
#   instead of downloading it; the sha256 is then checked on the file the server wrote.
#   WANT_227 also holds for an expected failure: the client must have got that far,
#   and been given that address (e.g. a server's private one a NAT did not rewrite).
# shellcheck disable=SC2153 # HOST, CLIENT, PORT are set by the caller
case_run() {
    local fam=4 lpath sha result reason="" got_ok=1 cmd want line a srvlog off peers st remote=src.bin check
    [[ $HOST == *:* ]] && fam=6
    TRACE=$WORK/trace.$((PASSED + FAILED))
    lpath=$WORK/dl/$((PASSED + FAILED)).bin
    rm -f "$lpath"
    if [[ ${UPLOAD:-0} == 1 ]]; then
        remote=up-$((PASSED + FAILED)).bin
        rm -f "$WORK/home/$remote"
        lpath=$WORK/home/src.bin
    fi
    check=$lpath
    [[ ${UPLOAD:-0} == 1 ]] && check=$WORK/home/$remote
    srvlog=$(server_log "$SERVER")
    off=$(stat -c %s "$srvlog" 2>/dev/null || echo 0)
    local wlog=$srvlog woff
    [[ $VIA == ftpgate ]] && wlog=$GATE_LOG
    woff=$(stat -c %s "$wlog" 2>/dev/null || echo 0)
    st=$EPOCHREALTIME
    run_client "$CNS" "$CLIENT" "$HOST" "$PORT" "$remote" "$lpath"
    local rc=$?
    want=$(want_cmd "$CLIENT" "$fam")
    local shown=$want
    [[ ${UPLOAD:-0} == 1 ]] && shown+=+STOR
    if ((rc != 0)); then
        got_ok=0
        # the last reply before the client gave up (ignoring the 221 to its QUIT)
        local lastr
        lastr=$(trace_replies | grep -E '^[0-9]{3} ' | grep -v '^221 ' | tail -n1)
        reason="client exit $rc: $lastr"
    elif [[ ! -f $check ]] || [[ $(sha256sum <"$check" | cut -d' ' -f1) != "$SRC_SHA" ]]; then
        got_ok=0
        reason="sha256 mismatch"
    fi
    [[ ${UPLOAD:-0} == 1 ]] && rm -f "$WORK/home/$remote"
    cmd=$(trace_cmds | awk '{print $1}' | sort -u | tr '\n' ' ')
    if [[ $EXPECT == ok ]]; then
        if ((got_ok)); then
            if [[ " $cmd" != *" $want "* ]] || [[ $(wc -w <<<"$cmd") -ne 1 ]]; then
                got_ok=0
                reason="trace shows data commands '$cmd', want only $want"
            fi
        fi
        if ((got_ok)) && [[ -n ${WANT_227:-} ]]; then
            reason=$(check_227 "$WANT_227") || got_ok=0
        fi
        if ((got_ok)) && [[ -n ${WANT_PEER:-} ]]; then
            sleep 0.1
            if [[ $SERVER == pure-ftpd ]]; then
                peers=$(tail -c +$((off + 1)) "$srvlog" | awk '{print $1}' | sed 's/^::ffff://' | sort -u | tr '\n' ' ')
            else
                peers=$(tail -c +$((off + 1)) "$srvlog" | sed -nE 's/.*CONNECT: Client "(::ffff:)?([^"]*)".*/\2/p' | sort -u | tr '\n' ' ')
            fi
            [[ $peers == "$WANT_PEER " ]] || { got_ok=0; reason="server saw peer(s) '${peers% }', want $WANT_PEER"; }
        fi
        if ((got_ok)) && [[ -n ${WANT_SRV_CMD:-} && $SERVER == vsftpd* ]]; then
            local sc
            sc=$(tail -c +$((off + 1)) "$srvlog" | sed -nE 's/.*FTP command: Client "[^"]*", "(PASV|EPSV|PORT|EPRT).*/\1/p' | sort -u | tr '\n' ' ')
            case $WANT_SRV_CMD in
            PASV) [[ $sc =~ ^(PASV|EPSV)\ $ ]] || { got_ok=0; reason="server got '$sc', want PASV/EPSV only"; } ;;
            PORT)
                [[ $sc =~ ^(PORT|EPRT)\ $ ]] || { got_ok=0; reason="server got '$sc', want PORT/EPRT only"; }
                # ... and every PORT/EPRT must name ftpgate (the server's peer) at a
                # port of ftpgate's server_active_ports
                local pa pp
                while IFS= read -r line; do
                    if [[ $line =~ ^PORT\ ([0-9]+),([0-9]+),([0-9]+),([0-9]+),([0-9]+),([0-9]+) ]]; then
                        pa="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}.${BASH_REMATCH[4]}"
                        pp=$((BASH_REMATCH[5] * 256 + BASH_REMATCH[6]))
                    elif [[ $line =~ ^EPRT\ \|[12]\|([^|]+)\|([0-9]+)\| ]]; then
                        pa=${BASH_REMATCH[1]} pp=${BASH_REMATCH[2]}
                    else
                        continue
                    fi
                    if [[ -n ${WANT_PEER:-} && $pa != "$WANT_PEER" ]] || ((pp < 40000 || pp > 40099)); then
                        got_ok=0
                        reason="server was sent '$line', want $WANT_PEER at 40000-40099"
                    fi
                done < <(tail -c +$((off + 1)) "$srvlog" | sed -nE 's/.*FTP command: Client "[^"]*", "((PORT|EPRT) [^"]*)".*/\1/p')
                ;;
            esac
        fi
        if ((got_ok)); then result=PASS; PASSED=$((PASSED + 1)); else result=FAIL; FAILED=$((FAILED + 1)); fi
    else
        if ((got_ok)); then
            result=FAIL
            reason="expected to fail but the transfer succeeded"
            FAILED=$((FAILED + 1))
        elif [[ -n ${WANT_CODE:-} ]] && ! trace_replies | grep -Eq "^${WANT_CODE}[ -]"; then
            result=FAIL
            reason="failed, but without reply $WANT_CODE ($reason)"
            FAILED=$((FAILED + 1))
        elif [[ -n ${WANT_227:-} ]] && ! a=$(check_227 "$WANT_227"); then
            result=FAIL
            reason="failed, but not at the expected 227: $a ($reason)"
            FAILED=$((FAILED + 1))
        elif [[ -n ${WANT_LOG:-} ]] && ! a=$(log_has "$wlog" "$woff" "$WANT_LOG"); then
            result=FAIL
            reason="failed, but the $([[ $VIA == ftpgate ]] && echo "ftpgate" || echo server) log lacks /$a/ ($reason)"
            FAILED=$((FAILED + 1))
        else
            result=XFAIL
            PASSED=$((PASSED + 1))
            [[ -n ${WANT_LOG:-} ]] && reason+="; $([[ $VIA == ftpgate ]] && echo "ftpgate" || echo server) log: /${WANT_LOG//$'\n'/\/ and \/}/"
        fi
    fi
    printf '%s topology=%s via=%s server=%s server_mode=%s client=%s mode=%s expect=%s where=%s secs=%s%s\n' \
        "$result" "$TOPO" "$VIA" "$SERVER" "$SMODE" "$CLIENT" "$shown" "$EXPECT" "$WHERE" \
        "$(elapsed "$st")" "${reason:+ reason=\"$reason\"}"
    if [[ $result == FAIL && -n ${LAB_VERBOSE:-} ]]; then sed 's/^/    | /' "$TRACE" | tail -n 25; fi
    if [[ $result == FAIL ]]; then cp "$TRACE" "$WORK/failed-trace.$((PASSED + FAILED))" 2>/dev/null; fi
    local cell col
    case $result in PASS) cell=ok ;; XFAIL) cell="fails (expected)" ;; FAIL) if [[ $EXPECT == ok ]]; then cell="**FAIL** (want ok)"; else cell="**FAIL** (want fail: ${reason:0:60})"; fi ;; esac
    if [[ $VIA == direct ]]; then col=direct; else col=${SMODE%%/use_control}; col=${col#passive/}; fi
    table_put "$TOPO|$WHERE|$SERVER|$CLIENT|$shown" "$col" "$cell"
    WANT_227="" WANT_PEER="" WANT_CODE="" WANT_SRV_CMD="" WANT_LOG="" UPLOAD=0
}

# lab_check WHAT CMD...: a check that is not a transfer (an nftables counter, say),
# counted like a case: PASS when CMD succeeds, else FAIL; CMD's output is the detail.
lab_check() {
    local what=$1 out result
    shift
    if out=$("$@" 2>&1); then result=PASS; PASSED=$((PASSED + 1)); else result=FAIL; FAILED=$((FAILED + 1)); fi
    printf '%s topology=%s check=%s%s\n' "$result" "$TOPO" "$what" "${out:+ detail=\"$out\"}"
}

# log_has LOG OFFSET PATTERNS: every ERE (one a line) of PATTERNS matches a line of LOG
# past OFFSET bytes (colour codes stripped); else print the first that does not.
log_has() {
    local pat text
    sleep 0.2
    text=$(tail -c +$(($2 + 1)) "$1" | sed -E 's/\x1b\[[0-9;]*m//g')
    while IFS= read -r pat; do
        [[ -n $pat ]] || continue
        grep -Eq -- "$pat" <<<"$text" || { echo "$pat"; return 1; }
    done <<<"$3"
}

# num_check A OP B: test A OP B (-gt, -eq, ...) on integers, saying what it compared.
num_check() {
    echo "$1 $2 $3"
    [[ $1 =~ ^[0-9]+$ && $3 =~ ^[0-9]+$ ]] && test "$1" "$2" "$3"
}

# check_227 ADDR: the trace has a 227 reply and every 227 in it carries ADDR; else
# print why not and fail.
check_227() {
    local line a
    trace_replies | grep -q '^227' || { echo "no 227 reply in trace"; return 1; }
    while IFS= read -r line; do
        if [[ $line =~ \(([0-9]+),([0-9]+),([0-9]+),([0-9]+), ]]; then
            a="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}.${BASH_REMATCH[4]}"
            [[ $a == "$1" ]] || { echo "227 carries $a, want $1"; return 1; }
        else
            echo "227 without an address: $line"
            return 1
        fi
    done < <(trace_replies | grep '^227')
}

# The result table: one row per topology/where/server/client/mode, one column per
# way of running it (direct = no ftpgate; passive/active = ftpgate's server_mode;
# check/trust = server_pasv_address with server_mode passive).
TABLE_COLS=(direct passive active check trust)
TABLE_ROWS=()
declare -A TABLE_CELL
table_put() {
    [[ -n ${TABLE_CELL["$1|-"]:-} ]] || { TABLE_ROWS+=("$1"); TABLE_CELL["$1|-"]=1; }
    TABLE_CELL["$1|$2"]=$3
}

# print_table: the Markdown result table.
print_table() {
    local r c line
    echo
    echo "| topology | where | server | client | mode | without ftpgate | ftpgate server_mode=passive | ftpgate server_mode=active | ftpgate pasv_address=check | ftpgate pasv_address=trust |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for r in "${TABLE_ROWS[@]}"; do
        line="| ${r//|/ | }"
        for c in "${TABLE_COLS[@]}"; do line+=" | ${TABLE_CELL["$r|$c"]:-}"; done
        echo "$line |"
    done
    echo
}
