#!/usr/bin/env bash
# ftpgate FTPS interop suite: real FTPS servers (vsftpd pinned to TLS 1.2 and to TLS 1.3
# with require_ssl_reuse, pure-ftpd --tls=3, proftpd mod_tls explicit and implicit, with
# its default "session reuse required") and real FTPS clients (curl, lftp, Python's
# ftplib), first directly (the baseline column: it proves the server configs), then
# through ftpgate with TLS on the client leg, the server leg, or both; plus TLS
# negative cases (certificate verification, AUTH before USER, PROT P before data,
# implicit/plaintext mismatches, protocol versions, session reuse) and one long session.
#
# Every transfer is checked end to end by sha256 (download vs source; upload as stored
# on the server's disk). Every client trace must show the TLS steps the client is meant
# to take (AUTH, PROT P or not) and the data command of its mode (PASV/EPSV or
# PORT/EPRT, no silent fallback); the 227/229 replies it saw must point into the
# passive range of whoever it talked to. Where the server logs its commands (vsftpd,
# proftpd), a proxied case also checks what ftpgate sent upstream: AUTH TLS or not,
# PROT P or not, PASV/EPSV or PORT/EPRT for the gate's server_mode.
#
# Usage (as root, with vsftpd lftp curl openssl /usr/bin/python3; see .ci/run):
#   tests/interop/tls.sh
# Knobs (environment):
#   FTPGATE=path               ftpgate binary (default target/release, then target/debug)
#   INTEROP_SIZE_MIB=64        size of the random test file (e.g. 4 while developing)
#   INTEROP_TLS_OPS="retr stor list"
#   INTEROP_TLS_FILTER=REGEX   run only the cases whose "leg server via client" matches
#                              (grep -E), e.g. 'direct' or 'proftpd.*curl'
#   INTEROP_LONG_COUNT=50 INTEROP_LONG_KIB=64   the long session's uploads/downloads
#   INTEROP_PORT_LO=20000 INTEROP_PORT_HI=27999   where free ports are picked
#   INTEROP_CMD_TIMEOUT=60     seconds per client command (a 64 MiB FTPS transfer through
#                              ftpgate takes about a second here)
#   INTEROP_STALL_SECS=15      a client gives up after this long without progress (curl
#                              --speed-time, lftp net:timeout, ftplib's socket timeout),
#                              so that a hung case costs 15 s, not the whole timeout
#   INTEROP_DEADLINE_SECS=900  whole-suite budget; cases after it fail
#   INTEROP_KEEP=1             keep the work directory (logs, traces, configs)
#   FTPGATE_LOG_LEVEL=info     ftpgate's log.level in the generated configs
#
# Output: one "PASS|FAIL leg=... server=... via=... client=... op=... bytes=... secs=..."
# line per case, a summary, then exactly "N passed, M failed". Exit 1 if M > 0, 2 if
# the suite itself could not set up. Everything runs on 127.0.0.1.
set -euo pipefail

# shellcheck source=tests/interop/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

SIZE_MIB=${INTEROP_SIZE_MIB:-64}
read -ra OPS <<<"${INTEROP_TLS_OPS:-retr stor list}"
FILTER=${INTEROP_TLS_FILTER:-}
LONG_COUNT=${INTEROP_LONG_COUNT:-50}
LONG_KIB=${INTEROP_LONG_KIB:-64}
PORT_LO=${INTEROP_PORT_LO:-20000}
PORT_HI=${INTEROP_PORT_HI:-27999}
CMD_TIMEOUT=${INTEROP_CMD_TIMEOUT:-60}
STALL=${INTEROP_STALL_SECS:-15}
DEADLINE_SECS=${INTEROP_DEADLINE_SECS:-900}
PY=/usr/bin/python3 # the system's: its ssl module is Debian's OpenSSL
BLOCK=40            # ports per passive / active range

[[ "$SIZE_MIB" =~ ^[0-9]+$ && "$SIZE_MIB" -ge 1 ]] || die "INTEROP_SIZE_MIB must be a positive integer"
[[ "$LONG_COUNT" =~ ^[0-9]+$ && "$LONG_COUNT" -ge 1 ]] || die "INTEROP_LONG_COUNT must be a positive integer"
for op in "${OPS[@]}"; do
    [[ " retr stor list " == *" $op "* ]] || die "unknown op '$op' (known: retr stor list)"
done

need_root
need_tools curl lftp openssl vsftpd sha256sum timeout setsid useradd userdel chpasswd awk od ldd
[[ -x $PY ]] || die "$PY is missing (apt-get install python3)"
install_cleanup_trap

SUITE_START=$EPOCHREALTIME
make_work_dir ftpgate-tls
FTPHOME=$WORK/home
DL=$WORK/dl
PKI=$WORK/pki
CA=$PKI/ca.pem
mkdir -p "$DL" "$WORK/lftp-home" "$WORK/long"
make_ftp_user "$FTPHOME"
log "test user $FTP_USER, home $FTPHOME"
export FTP_PASS # for ftpstls.py, so the password is not on a command line

log "making the test PKI (a CA, a server certificate for 127.0.0.1/localhost, an unrelated CA)"
make_test_pki "$PKI"
chmod 755 "$PKI"

SRC=$FTPHOME/src.bin
SRC_BYTES=$((SIZE_MIB * 1024 * 1024))
log "generating $SIZE_MIB MiB of random data"
head -c "$SRC_BYTES" /dev/urandom >"$SRC"
chown "$FTP_USER:" "$SRC"
SRC_SHA=$(sha256sum "$SRC" | cut -d' ' -f1)
for ((i = 0; i < LONG_COUNT; i++)); do
    head -c $((LONG_KIB * 1024)) /dev/urandom >"$WORK/long/long-$i.bin"
    cp "$WORK/long/long-$i.bin" "$FTPHOME/long-$i.bin"
done
chown "$FTP_USER:" "$FTPHOME"/long-*.bin
chmod 755 "$WORK/long"

# -------------------------------------------------------------- servers ----
# name -> what it is. Every server serves the test user's home, so an upload through
# any of them is checked in $FTPHOME.
ALL_SERVERS=(vsftpd vsftpd-tls12 vsftpd-tls13 vsftpd-rogue pure-ftpd proftpd proftpd-implicit proftpd-cleardata)
declare -A SRV_WHAT=(
    [vsftpd]="vsftpd, no TLS"
    [vsftpd-tls12]="vsftpd, TLS 1.2 only (OPENSSL_CONF), require_ssl_reuse, forced TLS logins and data"
    [vsftpd-tls13]="vsftpd, TLS 1.3 only (OPENSSL_CONF), require_ssl_reuse, forced TLS logins and data"
    [vsftpd-rogue]="vsftpd, TLS with a certificate from an unrelated CA"
    [pure-ftpd]="pure-ftpd --tls=3 (TLS control and data required)"
    [proftpd]="proftpd mod_tls, TLSRequired on, session reuse required (default)"
    [proftpd-implicit]="proftpd mod_tls, TLSOptions UseImplicitSSL, TLSRequired on"
    [proftpd-cleardata]="proftpd mod_tls, TLSRequired ctrl (clear data allowed), session reuse required"
)

# ---------------------------------------------------------------- gates ----
# One ftpgate per gate (its own config, log, passive and active port ranges), with
# several listeners. A listener: "GATE LISTENER UPSTREAM LISTENER_TLS ROUTE_TLS", where
# a TLS spec is "off" or "MODE[,key=value...]" over the defaults written by
# listener_tls_yaml / route_tls_yaml.
declare -A GATE_MODE=(
    [gw-vsftpd]=passive [gw-vsftpd-tls12]=passive [gw-vsftpd-tls13]=passive
    [gw-pure-ftpd]=passive [gw-proftpd]=passive [gw-proftpd-implicit]=passive
    [gw-proftpd-cleardata]=passive [gw-neg]=passive [gw-ver]=passive
    [gw-act-vsftpd-tls13]=active [gw-act-proftpd]=active
)
ALL_GATES=(gw-vsftpd gw-vsftpd-tls12 gw-vsftpd-tls13 gw-pure-ftpd gw-proftpd gw-proftpd-implicit
    gw-proftpd-cleardata gw-neg gw-ver gw-act-vsftpd-tls13 gw-act-proftpd)
LISTENER_SPECS=(
    # FTPS client -> ftpgate -> plain server, and the listener-side negative cases
    "gw-vsftpd t2p-reuse vsftpd explicit,require_reuse=true off"
    "gw-vsftpd t2p vsftpd explicit off"
    "gw-vsftpd imp2p vsftpd implicit off"
    "gw-vsftpd plain vsftpd off off"
    "gw-vsftpd required vsftpd required off"
    "gw-vsftpd datareq vsftpd explicit,data=required off"
    # per FTPS server: plain client, FTPS client (resuming), FTPS client (not resuming)
    "gw-vsftpd-tls12 p2t vsftpd-tls12 off explicit"
    "gw-vsftpd-tls12 t2t vsftpd-tls12 explicit,require_reuse=true explicit"
    "gw-vsftpd-tls12 t2t-noreuse vsftpd-tls12 explicit explicit"
    "gw-vsftpd-tls13 p2t vsftpd-tls13 off explicit"
    "gw-vsftpd-tls13 t2t vsftpd-tls13 explicit,require_reuse=true,min_version=1.3 explicit"
    "gw-vsftpd-tls13 t2t-noreuse vsftpd-tls13 explicit explicit"
    "gw-vsftpd-tls13 imp2t vsftpd-tls13 implicit explicit"
    "gw-vsftpd-tls13 tmatch vsftpd-tls13 explicit,require_reuse=true match_client"
    "gw-pure-ftpd p2t pure-ftpd off explicit"
    "gw-pure-ftpd t2t pure-ftpd explicit,require_reuse=true explicit"
    "gw-pure-ftpd t2t-noreuse pure-ftpd explicit explicit"
    "gw-proftpd p2t proftpd off explicit,server_name=localhost"
    "gw-proftpd t2t proftpd explicit,require_reuse=true explicit,server_name=localhost"
    "gw-proftpd t2t-noreuse proftpd explicit explicit,server_name=localhost"
    "gw-proftpd-implicit p2t proftpd-implicit off implicit"
    "gw-proftpd-implicit t2t proftpd-implicit explicit,require_reuse=true implicit"
    "gw-proftpd-implicit t2t-noreuse proftpd-implicit explicit implicit"
    "gw-proftpd-implicit imp2t proftpd-implicit implicit implicit"
    # PROT P on the client leg, clear data on the server leg (and match_client)
    "gw-proftpd-cleardata t2t-clear proftpd-cleardata explicit,require_reuse=true explicit,data=clear"
    "gw-proftpd-cleardata t2t-clear-noreuse proftpd-cleardata explicit explicit,data=clear"
    "gw-proftpd-cleardata t2t-match proftpd-cleardata explicit explicit,data=match_client"
    # verification failures
    "gw-neg badca vsftpd-rogue off explicit"
    "gw-neg badname vsftpd-tls13 off explicit,server_name=wrong.invalid"
    # protocol versions (min_version/max_version on the route are the implementer's extra keys)
    "gw-ver min13 vsftpd explicit,min_version=1.3 off"
    "gw-ver rmax12 vsftpd-tls13 off explicit,max_version=1.2"
    "gw-ver rmin13 vsftpd-tls12 off explicit,min_version=1.3"
    # ftpgate server_mode active
    "gw-act-vsftpd-tls13 p2t vsftpd-tls13 off explicit"
    "gw-act-vsftpd-tls13 t2t vsftpd-tls13 explicit,require_reuse=true explicit"
    "gw-act-proftpd t2t proftpd explicit,require_reuse=true explicit"
)
# Listeners whose every session is refused (their upstream TLS must fail): ftpgate
# greets there with a 421, so their start-up wait is for the listening socket only.
REFUSING="gw-neg/badca gw-neg/badname gw-ver/rmax12 gw-ver/rmin13"
declare -A L_GATE L_UP L_LTLS L_RTLS L_PORT GATE_LISTENERS
for spec in "${LISTENER_SPECS[@]}"; do
    read -r g l up ltls rtls <<<"$spec"
    L_GATE[$g/$l]=$g L_UP[$g/$l]=$up L_LTLS[$g/$l]=$ltls L_RTLS[$g/$l]=$rtls
    GATE_LISTENERS[$g]+="$l "
done

# ---------------------------------------------------------------- ports ----
sizes=()
for s in "${ALL_SERVERS[@]}"; do sizes+=(1 20); done
for g in "${ALL_GATES[@]}"; do sizes+=("$BLOCK" "$BLOCK"); done
for spec in "${LISTENER_SPECS[@]}"; do sizes+=(1); done
pick_ports "$PORT_LO" "$PORT_HI" "${sizes[@]}"
declare -A SRV_PORT SRV_PASV GW_PASV GW_ACT
i=0
for s in "${ALL_SERVERS[@]}"; do
    SRV_PORT[$s]=${PORT_FIRST[i]}
    SRV_PASV[$s]="${PORT_FIRST[i + 1]} ${PORT_LAST[i + 1]}"
    i=$((i + 2))
done
for g in "${ALL_GATES[@]}"; do
    GW_PASV[$g]="${PORT_FIRST[i]} ${PORT_LAST[i]}"
    GW_ACT[$g]="${PORT_FIRST[i + 1]} ${PORT_LAST[i + 1]}"
    i=$((i + 2))
done
for spec in "${LISTENER_SPECS[@]}"; do
    read -r g l _ <<<"$spec"
    L_PORT[$g/$l]=${PORT_FIRST[i]}
    i=$((i + 1))
done

# ------------------------------------------------------- start servers ----
declare -A SRV_PID SRV_LOG SRV_OUT
vsftpd_tls_conf() { # FILE CERT KEY
    cat >"$1" <<EOF
ssl_enable=YES
rsa_cert_file=$2
rsa_private_key_file=$3
require_ssl_reuse=YES
force_local_data_ssl=YES
force_local_logins_ssl=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
ssl_ciphers=HIGH
EOF
}

start_server() {
    local s=$1 dir=$WORK/srv-$1 plo phi
    read -r plo phi <<<"${SRV_PASV[$s]}"
    mkdir -p "$dir"
    log "starting $s on 127.0.0.1:${SRV_PORT[$s]} (passive $plo-$phi): ${SRV_WHAT[$s]}"
    case $s in
    vsftpd)
        start_vsftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi"
        ;;
    vsftpd-tls12 | vsftpd-tls13)
        vsftpd_tls_conf "$dir/tls.conf" "$PKI/server.pem" "$PKI/server.key"
        if [[ $s == vsftpd-tls12 ]]; then
            openssl_conf_protocols "$dir/openssl.cnf" TLSv1.2 TLSv1.2
        else
            openssl_conf_protocols "$dir/openssl.cnf" TLSv1.3 TLSv1.3
        fi
        start_vsftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi" "$dir/tls.conf" "$dir/openssl.cnf"
        ;;
    vsftpd-rogue)
        vsftpd_tls_conf "$dir/tls.conf" "$PKI/rogue.pem" "$PKI/rogue.key"
        start_vsftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi" "$dir/tls.conf"
        ;;
    pure-ftpd)
        start_pureftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi" --tls=3 --certfile "$PKI/server.pem,$PKI/server.key"
        SRV_PID[$s]=$PUREFTPD_PID SRV_LOG[$s]='' SRV_OUT[$s]=$PUREFTPD_OUT
        return 0
        ;;
    proftpd) start_proftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi" "$PKI/server.pem" "$PKI/server.key" "TLSRequired on" ;;
    proftpd-implicit)
        start_proftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi" "$PKI/server.pem" "$PKI/server.key" \
            "TLSRequired on" "TLSOptions UseImplicitSSL"
        ;;
    proftpd-cleardata) start_proftpd "$dir" "${SRV_PORT[$s]}" "$plo" "$phi" "$PKI/server.pem" "$PKI/server.key" "TLSRequired ctrl" ;;
    esac
    case $s in
    vsftpd*) SRV_PID[$s]=$VSFTPD_PID SRV_LOG[$s]=$VSFTPD_LOG SRV_OUT[$s]=$VSFTPD_OUT ;;
    proftpd*) SRV_PID[$s]=$PROFTPD_PID SRV_LOG[$s]=$PROFTPD_LOG SRV_OUT[$s]=$PROFTPD_OUT ;;
    esac
}
for s in "${ALL_SERVERS[@]}"; do start_server "$s"; done

# ------------------------------------------------------ ftpgate configs ----
# spec_get SPEC KEY DEFAULT: the value of KEY in "mode,k=v,...", or DEFAULT.
spec_get() {
    local kv
    IFS=, read -ra kv <<<"$1"
    [[ $2 == mode ]] && { echo "${kv[0]}"; return; }
    for kv in "${kv[@]:1}"; do
        [[ $kv == "$2="* ]] && { echo "${kv#*=}"; return; }
    done
    echo "$3"
}
# yaml_value V: quote versions ("1.2") so they stay strings.
yaml_value() { if [[ $1 =~ ^[0-9]+\.[0-9]+$ ]]; then echo "\"$1\""; else echo "$1"; fi; }
# tls_yaml INDENT SPEC DEFAULTS...: a tls: block, DEFAULTS ("key=value") overridden by
# SPEC's keys; keys only in SPEC come after them.
tls_yaml() {
    local ind=$1 spec=$2 kv k seen=" "
    local -a pairs
    shift 2
    echo "${ind}tls:"
    echo "${ind}  mode: $(spec_get "$spec" mode '')"
    for kv in "$@"; do
        k=${kv%%=*}
        echo "${ind}  $k: $(yaml_value "$(spec_get "$spec" "$k" "${kv#*=}")")"
        seen+="$k "
    done
    IFS=, read -ra pairs <<<"$spec"
    for kv in "${pairs[@]:1}"; do
        k=${kv%%=*}
        [[ $seen == *" $k "* ]] || echo "${ind}  $k: $(yaml_value "${kv#*=}")"
    done
}
listener_tls_yaml() {
    tls_yaml "    " "$1" "cert=$PKI/server.pem" "key=$PKI/server.key" data=optional require_reuse=false min_version=1.2
}
route_tls_yaml() {
    tls_yaml "      " "$1" verify=true "ca=$CA" data=private
}

write_gate_config() { # GATE FILE
    local g=$1 file=$2 l key plo phi alo ahi
    read -r plo phi <<<"${GW_PASV[$g]}"
    read -r alo ahi <<<"${GW_ACT[$g]}"
    {
        echo "listeners:"
        for l in ${GATE_LISTENERS[$g]}; do
            key=$g/$l
            echo "  - name: $l"
            echo "    bind: 127.0.0.1:${L_PORT[$key]}"
            [[ ${L_LTLS[$key]} == off ]] || listener_tls_yaml "${L_LTLS[$key]}"
            echo "    route:"
            echo "      kind: fixed"
            echo "      upstreams: [127.0.0.1:${SRV_PORT[${L_UP[$key]}]}]"
            [[ ${L_RTLS[$key]} == off ]] || route_tls_yaml "${L_RTLS[$key]}"
        done
        cat <<EOF
data:
  passive_ports: $plo-$phi
  advertise:
    - clients: 0.0.0.0/0
      address: auto
  server_mode: ${GATE_MODE[$g]}
  server_active_ports: $alo-$ahi
timeouts: { connect: 10s, idle: 900s, data_accept: 30s }
limits: { max_sessions: 1000 }
log: { level: ${FTPGATE_LOG_LEVEL:-info}, format: text }
EOF
    } >"$file"
}

# ------------------------------------------------------------ reporting ----
PASSED=0
FAILED=0
declare -A TALLY_PASS TALLY_TOTAL
TALLY_ORDER=()
BYTES=0 SECS=0 REASON='' TRACE=

# report STATUS LEG SERVER VIA CLIENT OP: one case line; on failure the reason, the
# client trace and this case's part of the logs marked with mark_logs.
report() {
    local status=$1 leg=$2 server=$3 via=$4 client=$5 op=$6 word=PASS key="$2 $3"
    ((status == 0)) || word=FAIL
    echo "$word leg=$leg server=$server via=$via client=$client op=$op bytes=$BYTES secs=$SECS"
    [[ -n ${TALLY_TOTAL[$key]:-} ]] || TALLY_ORDER+=("$key")
    TALLY_TOTAL[$key]=$((${TALLY_TOTAL[$key]:-0} + 1))
    if ((status == 0)); then
        PASSED=$((PASSED + 1))
        TALLY_PASS[$key]=$((${TALLY_PASS[$key]:-0} + 1))
        return 0
    fi
    FAILED=$((FAILED + 1))
    echo "    reason: $REASON"
    if [[ -s ${TRACE:-} ]]; then
        echo "    --- client trace (last 30 lines)"
        tail -n 30 "$TRACE" | mask_pass | sed 's/^/    | /'
    fi
    show_logs
}

# slow T0 SECS: more than SECS seconds since T0?
slow() { awk -v a="$1" -v b="$EPOCHREALTIME" -v d="$2" 'BEGIN { exit !(b - a > d) }'; }

past_deadline() {
    awk -v a="$SUITE_START" -v b="$EPOCHREALTIME" -v d="$DEADLINE_SECS" 'BEGIN { exit !(b - a > d) }'
}

# selected LEG SERVER VIA CLIENT: does INTEROP_TLS_FILTER select this case?
selected() { [[ -z $FILTER ]] || grep -Eq -- "$FILTER" <<<"$*"; }

# ------------------------------------------------------------- clients ----
# Client name -> TLS on the control connection (off|explicit|implicit), PROT (p|c|-)
# and data mode (pasv|port). There is no active-mode FTPS curl: Debian 12's curl 7.88
# never adds TLS to an active data connection and hangs (curl issue 10666, fixed in
# 8.0); lftp and ftplib are the active FTPS clients.
declare -A C_TLS=(
    [curl]=off [curl-port]=off [curl-tls]=explicit [curl-tls-pasv]=explicit
    [curl-implicit]=implicit [lftp]=off [lftp-tls]=explicit [lftp-tls-port]=explicit
    [lftp-tls-protc]=explicit [lftp-implicit]=implicit [ftplib-p]=explicit [ftplib-c]=explicit
    [ftplib-p-port]=explicit
)
declare -A C_PROT=(
    [curl]=- [curl-port]=- [curl-tls]=p [curl-tls-pasv]=p [curl-implicit]=p
    [lftp]=- [lftp-tls]=p [lftp-tls-port]=p [lftp-tls-protc]=c [lftp-implicit]=p
    [ftplib-p]=p [ftplib-c]=c [ftplib-p-port]=p
)
client_data() { if [[ $1 == *-port ]]; then echo port; else echo pasv; fi; }

# run_client CLIENT PORT OP REMOTE LOCAL: one bounded client command; stdout to
# $OUT_FILE, the protocol trace to $TRACE.
run_client() {
    local client=$1 port=$2 op=$3 remote=$4 lpath=$5 url script
    local -a args
    case $client in
    curl*)
        args=(-sS -v --no-ftp-skip-pasv-ip --connect-timeout 10 --max-time "$CMD_TIMEOUT"
            --speed-limit 1 --speed-time "$STALL" -u "$FTP_USER:$FTP_PASS")
        url="ftp://127.0.0.1:$port/"
        case $client in
        curl-tls*) args+=(--ssl-reqd --cacert "$CA") ;;
        curl-implicit) args+=(--cacert "$CA") url="ftps://127.0.0.1:$port/" ;;
        esac
        case $client in
        *-port) args+=(--ftp-port 127.0.0.1) ;;
        *-pasv) args+=(--ftp-pasv --disable-epsv) ;;
        *) args+=(--ftp-pasv) ;;
        esac
        case $op in
        retr) timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -o "$lpath" "$url$remote" >"$OUT_FILE" 2>"$TRACE" ;;
        stor) timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -T "$lpath" "$url$remote" >"$OUT_FILE" 2>"$TRACE" ;;
        list) timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" "$url" >"$OUT_FILE" 2>"$TRACE" ;;
        esac
        ;;
    lftp*)
        script=$WORK/lftp.script
        {
            lftp_settings "$client"
            if [[ $client == lftp-implicit ]]; then
                echo "open -u $FTP_USER,$FTP_PASS -p $port ftps://127.0.0.1"
            else
                echo "open -u $FTP_USER,$FTP_PASS -p $port ftp://127.0.0.1"
            fi
            case $op in
            retr) echo "get $remote -o $lpath" ;;
            stor) echo "put $lpath -o $remote" ;;
            list) echo "ls" ;;
            esac
            echo "bye"
        } >"$script"
        run_lftp_script "$script"
        ;;
    ftplib*)
        args=(--port "$port" --user "$FTP_USER" --tls "${C_TLS[$client]}" --prot "${C_PROT[$client]}"
            --cafile "$CA" --timeout "$STALL")
        [[ $client == *-port ]] && args+=(--active)
        timeout -k 5 "$CMD_TIMEOUT" "$PY" "$INTEROP_DIR/ftpstls.py" xfer "${args[@]}" "$op" "$remote" "$lpath" \
            >"$OUT_FILE" 2>"$TRACE"
        ;;
    esac
}

# lftp_settings CLIENT: the "set" lines for an lftp client (TLS, PROT, data mode).
lftp_settings() {
    echo "set cmd:fail-exit yes"
    echo "set net:max-retries 1"
    echo "set net:persist-retries 0"
    echo "set net:timeout $STALL"
    echo "set net:reconnect-interval-base 1"
    echo "set xfer:clobber yes"
    echo "set ssl:verify-certificate yes"
    echo "set ssl:ca-file $CA"
    case ${C_TLS[$1]} in
    off) echo "set ftp:ssl-allow no" ;;
    explicit) echo "set ftp:ssl-allow yes"; echo "set ftp:ssl-force true" ;;
    esac
    if [[ ${C_PROT[$1]} == c ]]; then
        echo "set ftp:ssl-protect-data false"
        echo "set ftp:ssl-protect-list false"
    else
        echo "set ftp:ssl-protect-data true"
        echo "set ftp:ssl-protect-list true"
    fi
    if [[ $(client_data "$1") == port ]]; then
        echo "set ftp:passive-mode off"
        echo "set ftp:port-ipv4 127.0.0.1"
    else
        echo "set ftp:passive-mode on"
    fi
}

run_lftp_script() {
    HOME=$WORK/lftp-home XDG_CONFIG_HOME=$WORK/lftp-home XDG_DATA_HOME=$WORK/lftp-home \
        timeout -k 5 "$CMD_TIMEOUT" lftp -d -f "$1" >"$OUT_FILE" 2>"$TRACE"
}

# The trace's line prefixes for commands sent and replies received, per client.
cmd_re() {
    case $1 in
    curl*) echo '^> ' ;;
    lftp*) echo '^---> ' ;;
    ftplib*) echo "^\\*cmd\\* '" ;;
    esac
}
resp_re() {
    case $1 in
    curl*) echo '^< ' ;;
    lftp*) echo '^<--- ' ;;
    ftplib*) echo "^\\*resp\\* '" ;;
    esac
}

# check_trace CLIENT: the client took the TLS steps of its kind and used its data mode.
check_trace() {
    local client=$1 c
    c=$(cmd_re "$client")
    if [[ ${C_TLS[$client]} == explicit ]]; then
        grep -Eq "${c}AUTH (TLS|SSL)" "$TRACE" || { REASON="client trace has no AUTH TLS"; return 1; }
    elif grep -Eq "${c}AUTH" "$TRACE"; then
        REASON="client (${C_TLS[$client]} TLS) sent AUTH"
        return 1
    fi
    case ${C_PROT[$client]} in
    p) grep -Eq "${c}PROT P" "$TRACE" || { REASON="client trace has no PROT P"; return 1; } ;;
    c | -) ! grep -Eq "${c}PROT P" "$TRACE" || { REASON="client sent PROT P"; return 1; } ;;
    esac
    if [[ $(client_data "$client") == port ]]; then
        grep -Eq "${c}(PORT|EPRT)" "$TRACE" || { REASON="client trace has no PORT/EPRT"; return 1; }
        ! grep -Eq "${c}(PASV|EPSV)" "$TRACE" || { REASON="active client fell back to passive"; return 1; }
    else
        grep -Eq "${c}(PASV|EPSV)" "$TRACE" || { REASON="client trace has no PASV/EPSV"; return 1; }
        ! grep -Eq "${c}(PORT|EPRT)" "$TRACE" || { REASON="passive client fell back to active"; return 1; }
    fi
}

# server_cmds SERVER: the commands SERVER logged during this case (vsftpd's protocol
# log, proftpd's ExtendedLog), one a line; nothing for pure-ftpd.
server_cmds() {
    local f=${SRV_LOG[$1]}
    [[ -n $f ]] || return 0
    tail -c +$((${LOG_OFF[$f]:-0} + 1)) "$f" |
        sed -nE 's/.*FTP command: Client "[^"]*", "([^"]*)"$/\1/p; s/^[^"]*\[[^]]*\] "([^"]*)" [0-9]+ .*/\1/p'
}

# check_upstream SERVER LISTENER CLIENT: what ftpgate sent the server on this listener:
# AUTH TLS iff the route is explicit TLS; PROT P iff the route's data is private (or
# match_client and the client asked for P); PASV/EPSV or PORT/EPRT per server_mode.
check_upstream() {
    local server=$1 key=$2 client=$3 cmds rmode rdata want_p=0 smode want other
    [[ -n ${SRV_LOG[$server]} ]] || return 0
    cmds=$(server_cmds "$server")
    rmode=$(spec_get "${L_RTLS[$key]}" mode off)
    rdata=$(spec_get "${L_RTLS[$key]}" data private)
    if [[ $rmode == match_client ]]; then
        rmode=explicit
        [[ ${C_TLS[$client]} == off ]] && rmode=off
    fi
    if [[ $rmode == explicit ]]; then
        grep -Eq '^AUTH (TLS|SSL)' <<<"$cmds" || { REASON="$server received no AUTH TLS from ftpgate: $(tr '\n' ';' <<<"$cmds")"; return 1; }
    elif grep -Eq '^AUTH' <<<"$cmds"; then
        REASON="$server received AUTH though the route is $rmode"
        return 1
    fi
    if [[ $rmode != off ]]; then
        case $rdata in
        private) want_p=1 ;;
        match_client) [[ ${C_PROT[$client]} == p ]] && want_p=1 ;;
        esac
        if ((want_p)) && ! grep -Eq '^PROT P' <<<"$cmds"; then
            REASON="$server received no PROT P (route data $rdata): $(tr '\n' ';' <<<"$cmds")"
            return 1
        fi
        if ((!want_p)) && grep -Eq '^PROT P' <<<"$cmds"; then
            REASON="$server received PROT P though the route's data is $rdata"
            return 1
        fi
    fi
    smode=${GATE_MODE[${L_GATE[$key]}]}
    want='^(PASV|EPSV)' other='^(PORT|EPRT)'
    [[ $smode == active ]] && want='^(PORT|EPRT)' other='^(PASV|EPSV)'
    if ! grep -Eq "$want" <<<"$cmds" || grep -Eq "$other" <<<"$cmds"; then
        REASON="server_mode $smode, but $server received: $(grep -E '^(PASV|EPSV|PORT|EPRT)' <<<"$cmds" | tr '\n' ';')"
        return 1
    fi
}

# --------------------------------------------------------------- cases ----
CASE_N=0
OUT_FILE=$WORK/case.out

# xfer_op LEG SERVER VIA CLIENT OP: one transfer case (VIA is "direct" or GATE/LISTENER).
# Sets BYTES SECS REASON; returns 0 on pass.
xfer_op() {
    local leg=$1 server=$2 via=$3 client=$4 port remote lpath rc=0 t0 got
    OP=$5
    CASE_N=$((CASE_N + 1))
    BYTES=0 SECS=0 REASON='' TRACE=$WORK/case.trace
    : >"$OUT_FILE"
    : >"$TRACE"
    if [[ $via == direct ]]; then port=${SRV_PORT[$server]}; else port=${L_PORT[$via]}; fi
    case $OP in
    retr) remote=src.bin lpath=$DL/retr.bin && rm -f "$lpath" ;;
    stor) remote="up-$CASE_N.bin" lpath=$SRC && rm -f "$FTPHOME/$remote" ;;
    list) remote='' lpath='' ;;
    esac
    t0=$EPOCHREALTIME
    run_client "$client" "$port" "$OP" "$remote" "$lpath" || rc=$?
    SECS=$(elapsed "$t0")
    case $OP in
    retr) [[ -f $lpath ]] && BYTES=$(stat -c %s "$lpath") ;;
    stor) [[ -f $FTPHOME/$remote ]] && BYTES=$(stat -c %s "$FTPHOME/$remote") ;;
    list) BYTES=$(stat -c %s "$OUT_FILE") ;;
    esac
    if ((rc != 0)); then
        REASON="$client exited $rc"
        ((rc == 124)) && REASON+=" (timed out after ${CMD_TIMEOUT}s)"
        [[ $OP == stor ]] && rm -f "$FTPHOME/$remote"
        return 1
    fi
    check_trace "$client" || return 1
    if [[ $(client_data "$client") == pasv ]]; then
        if [[ $via == direct ]]; then
            check_passive_replies "$(resp_re "$client")" "${SRV_PASV[$server]}" "$server's" || return 1
        else
            check_passive_replies "$(resp_re "$client")" "${GW_PASV[${L_GATE[$via]}]}" "ftpgate's" || return 1
        fi
    fi
    [[ $via == direct ]] || check_upstream "$server" "$via" "$client" || return 1
    case $OP in
    retr)
        got=$(sha256sum "$lpath" | cut -d' ' -f1)
        rm -f "$lpath"
        [[ $got == "$SRC_SHA" ]] || { REASON="sha256 mismatch: got $got want $SRC_SHA (bytes=$BYTES)"; return 1; }
        ;;
    stor)
        [[ -f $FTPHOME/$remote ]] || { REASON="no stored file $FTPHOME/$remote"; return 1; }
        got=$(sha256sum "$FTPHOME/$remote" | cut -d' ' -f1)
        rm -f "$FTPHOME/$remote"
        [[ $got == "$SRC_SHA" ]] || { REASON="stored sha256 mismatch: got $got want $SRC_SHA (bytes=$BYTES)"; return 1; }
        ;;
    list)
        tr -d '\r' <"$OUT_FILE" | grep -Eq "[[:space:]]${SRC_BYTES}[[:space:]].*[[:space:]]src\\.bin\$" ||
            { REASON="listing lacks 'src.bin' with size $SRC_BYTES"; return 1; }
        ;;
    esac
}

# case_logs SERVER VIA: the logs a case shows on failure.
case_logs() {
    local -a f=("${SRV_OUT[$1]}")
    [[ -n ${SRV_LOG[$1]} ]] && f+=("${SRV_LOG[$1]}")
    [[ $1 == proftpd* ]] && f+=("$WORK/srv-$1/proftpd.tls.log")
    [[ $2 == direct ]] || f+=("$WORK/${L_GATE[$2]}/ftpgate.log")
    printf '%s\n' "${f[@]}"
}

# gate_ok VIA: is the gate of VIA up? (sets REASON when not)
gate_ok() {
    local g=${L_GATE[$1]}
    if [[ -n ${GATE_DOWN[$g]:-} ]]; then
        REASON=${GATE_DOWN[$g]}
        return 1
    fi
    if ! kill -0 "${GATE_PID[$g]}" 2>/dev/null; then
        REASON="ftpgate $g (pid ${GATE_PID[$g]}) is not running"
        return 1
    fi
}

# xfer LEG SERVER VIA CLIENT...: every op for every client.
xfer() {
    local leg=$1 server=$2 via=$3 client op st logs
    shift 3
    for client in "$@"; do
        selected "$leg $server $via $client" || continue
        for op in "${OPS[@]}"; do
            mapfile -t logs < <(case_logs "$server" "$via")
            mark_logs "${logs[@]}"
            st=0
            if past_deadline; then
                BYTES=0 SECS=0 REASON="suite deadline of ${DEADLINE_SECS}s passed" TRACE=
                st=1
            elif [[ $via != direct ]] && ! gate_ok "$via"; then
                BYTES=0 SECS=0 TRACE=
                st=1
            else
                xfer_op "$leg" "$server" "$via" "$client" "$op" || st=1
            fi
            report "$st" "$leg" "$server" "$via" "$client" "$op"
        done
    done
}

# one_case STATUS LEG SERVER VIA CLIENT OP: report a case that is not a transfer.
one_case() {
    report "$@"
    BYTES=0 SECS=0 REASON='' TRACE=
}

# --------------------------------------------------- TLS version proofs ----
# s_client_proto PORT [OPENSSL ARGS...]: the protocol `openssl s_client -starttls ftp`
# negotiates on 127.0.0.1:PORT ("TLSv1.3"), or "none".
s_client_proto() {
    local port=$1 out
    shift
    out=$(timeout -k 2 15 openssl s_client -connect "127.0.0.1:$port" -starttls ftp -CAfile "$CA" \
        -verify_return_error "$@" </dev/null 2>&1) || true
    printf '%s\n' "$out" >"$TRACE"
    sed -nE 's/^New, (TLSv[0-9.]+), Cipher is .*/\1/p' <<<"$out" | head -n1 | grep . || echo none
}

version_case() { # LEG SERVER VIA PORT WANT [OPENSSL ARGS...]
    local leg=$1 server=$2 via=$3 port=$4 want=$5 got st=0 t0
    shift 5
    selected "$leg $server $via openssl" || return 0
    TRACE=$WORK/case.trace REASON=''
    : >"$TRACE"
    t0=$EPOCHREALTIME
    if [[ $via != direct ]] && ! gate_ok "$via"; then
        got="(not run)"
    else
        got=$(s_client_proto "$port" "$@")
    fi
    SECS=$(elapsed "$t0") BYTES=0
    if [[ $via != direct && -n $REASON ]]; then
        st=1
    elif [[ $got != "$want" ]]; then
        st=1
        REASON="openssl s_client -starttls ftp $* negotiated $got, want $want"
    fi
    one_case "$st" "$leg" "$server" "$via" "openssl${*:+ $*}" tls-version
}

# ----------------------------------------------------------------- long ----
# long_case LEG SERVER VIA CLIENT: ONE session doing LONG_COUNT uploads then LONG_COUNT
# downloads of LONG_KIB KiB files, each checked by sha256.
long_case() {
    local leg=$1 server=$2 via=$3 client=$4 port i st=0 bad=0 script rc=0
    selected "$leg $server $via $client" || return 0
    if [[ $via == direct ]]; then port=${SRV_PORT[$server]}; else port=${L_PORT[$via]}; fi
    rm -f "$FTPHOME"/lup-long-*.bin "$FTPHOME"/pyup-long-*.bin "$WORK"/long/ldl-long-*.bin "$WORK"/long/pydl-long-*.bin
    if ! case_begin "$server" "$via"; then
        rc=1
    elif [[ $client == lftp* ]]; then
        script=$WORK/lftp-long.script
        {
            lftp_settings "$client"
            echo "open -u $FTP_USER,$FTP_PASS -p $port ftp://127.0.0.1"
            for ((i = 0; i < LONG_COUNT; i++)); do echo "put $WORK/long/long-$i.bin -o lup-long-$i.bin"; done
            for ((i = 0; i < LONG_COUNT; i++)); do echo "get long-$i.bin -o $WORK/long/ldl-long-$i.bin"; done
            echo "bye"
        } >"$script"
        run_lftp_script "$script" || rc=$?
    else
        timeout -k 5 "$CMD_TIMEOUT" "$PY" "$INTEROP_DIR/ftpstls.py" long --port "$port" --user "$FTP_USER" \
            --tls "${C_TLS[$client]}" --prot "${C_PROT[$client]}" --cafile "$CA" --timeout "$STALL" \
            "$LONG_COUNT" "$WORK/long" \
            >"$OUT_FILE" 2>"$TRACE" || rc=$?
    fi
    if ((rc != 0)); then
        st=1
        [[ -n $REASON ]] || REASON="$client exited $rc"
    else
        local up=lup dl=ldl
        [[ $client == ftplib* ]] && up=pyup dl=pydl
        for ((i = 0; i < LONG_COUNT; i++)); do
            if ! cmp -s "$WORK/long/long-$i.bin" "$FTPHOME/$up-long-$i.bin" ||
                ! cmp -s "$WORK/long/long-$i.bin" "$WORK/long/$dl-long-$i.bin"; then
                bad=$((bad + 1))
            fi
        done
        BYTES=$((2 * LONG_COUNT * LONG_KIB * 1024))
        if ((bad)); then
            st=1
            REASON="$bad of $LONG_COUNT upload/download pairs differ from their source"
        fi
        if [[ $client == lftp* ]] && (($(grep -c -- '---> STOR' "$TRACE") != LONG_COUNT)); then
            st=1
            REASON="lftp did not send $LONG_COUNT STOR in its one session"
        fi
        if (($(grep -Ec "$(cmd_re "$client")(USER|AUTH)" "$TRACE") > 2)); then
            st=1
            REASON="the client logged in more than once: not one session"
        fi
    fi
    case_end "$st" "$leg" "$server" "$via" "$client" "long-${LONG_COUNT}x2x${LONG_KIB}KiB"
}

# ------------------------------------------------------------ negatives ----
# case_begin SERVER VIA: start a case that is not a transfer: mark the logs it shows on
# failure, reset its fields, start its clock (CASE_T0), and check its gate (returns 1,
# with REASON set, when the gate is down). The caller reports with case_end.
case_begin() {
    local -a logs
    mapfile -t logs < <(case_logs "$1" "$2")
    mark_logs "${logs[@]}"
    TRACE=$WORK/case.trace BYTES=0 SECS=0 REASON=''
    : >"$TRACE"
    : >"$OUT_FILE"
    CASE_T0=$EPOCHREALTIME
    [[ $2 == direct ]] || gate_ok "$2"
}
case_end() { # STATUS LEG SERVER VIA CLIENT OP
    SECS=$(elapsed "$CASE_T0")
    one_case "$@"
}

# no_login_upstream SERVER: SERVER logged no USER/PASS during this case.
no_login_upstream() {
    local cmds
    cmds=$(server_cmds "$1")
    if grep -Eq '^(USER|PASS)' <<<"$cmds"; then
        REASON="${REASON:+$REASON; }$1 received a login: $(grep -E '^(USER|PASS)' <<<"$cmds" | sed 's/^PASS .*/PASS ****/' | tr '\n' ';')"
        return 1
    fi
}

# curl_list VIA SCHEME [CURL ARGS...]: a bounded curl LIST of SCHEME://VIA's port/;
# sets RC.
curl_list() {
    local via=$1 scheme=$2
    shift 2
    RC=0
    timeout -k 5 40 curl -sS -v --connect-timeout 10 --max-time 30 -u "$FTP_USER:$FTP_PASS" "$@" \
        "$scheme://127.0.0.1:${L_PORT[$via]}/" >"$OUT_FILE" 2>"$TRACE" || RC=$?
}

# refused_case LEG SERVER VIA WHAT: a plain curl LIST through VIA must be refused with
# a 421 or 530 reply, quickly, and SERVER must not see the login (verification
# failures, versions). curl exits 28 ("We got a 421 - timeout") on a 421 greeting too,
# so a hang is judged by the time it took.
refused_case() {
    local leg=$1 server=$2 via=$3 what=$4 st=0
    selected "$leg $server $via curl" || return 0
    if case_begin "$server" "$via"; then
        curl_list "$via" ftp
        if ((RC == 0)); then
            st=1 REASON="the listing succeeded, but $what"
        elif ((RC == 124)) || slow "$CASE_T0" 20; then
            st=1 REASON="curl hung (exit $RC after $(elapsed "$CASE_T0")s) instead of being refused: $what"
        elif ! grep -Eq '^< (421|530)' "$TRACE"; then
            st=1 REASON="curl exited $RC without a 421/530 reply: $what"
        fi
        sleep 0.3 # let the server flush its log
        no_login_upstream "$server" || st=1
    else
        st=1
    fi
    case_end "$st" "$leg" "$server" "$via" curl refused
}

# required_cases: a listener with tls.mode required refuses USER before AUTH TLS, from
# a raw socket and from curl without TLS; vsftpd sees no login.
required_cases() {
    local via=gw-vsftpd/required st code rc
    if selected "negative vsftpd $via python-raw"; then
        st=0 rc=0
        if case_begin vsftpd "$via"; then
            code=$(timeout -k 2 20 "$PY" "$INTEROP_DIR/ftpstls.py" user-first 127.0.0.1 "${L_PORT[$via]}" 2>"$TRACE") || rc=$?
            if ((rc != 0)) || [[ $code != 530 && $code != 534 ]]; then
                st=1 REASON="USER before AUTH TLS got '${code:-nothing}' (exit $rc), want 530 or 534"
            fi
            no_login_upstream vsftpd || st=1
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" python-raw user-before-auth
    fi
    if selected "negative vsftpd $via curl"; then
        st=0
        if case_begin vsftpd "$via"; then
            curl_list "$via" ftp
            if ((RC == 0)); then
                st=1 REASON="curl without --ssl listed the directory through a tls.mode required listener"
            elif ! grep -Eq '^< (530|534)' "$TRACE"; then
                st=1 REASON="curl exited $RC without a 530/534 reply"
            fi
            no_login_upstream vsftpd || st=1
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" curl user-before-auth
    fi
}

# datareq_cases: a listener with tls.data required refuses a data command under PROT C
# (ftplib LIST fails with a 5xx) and serves one under PROT P.
datareq_cases() {
    local via=gw-vsftpd/datareq st rc prot
    for prot in c p; do
        selected "negative vsftpd $via ftplib-$prot" || continue
        st=0 rc=0
        if case_begin vsftpd "$via"; then
            timeout -k 5 60 "$PY" "$INTEROP_DIR/ftpstls.py" xfer --port "${L_PORT[$via]}" --user "$FTP_USER" \
                --tls explicit --prot "$prot" --cafile "$CA" --timeout "$STALL" list >"$OUT_FILE" 2>"$TRACE" || rc=$?
            if [[ $prot == c ]]; then
                if ((rc == 0)); then
                    st=1 REASON="LIST under PROT C succeeded on a data: required listener"
                elif ! grep -Eq "^\\*resp\\* '5[0-9][0-9]" "$TRACE" || grep -Eq '^\* error: (timeout|TimeoutError)' "$TRACE"; then
                    st=1 REASON="LIST under PROT C failed (exit $rc) without a 5xx refusal"
                fi
            elif ((rc != 0)); then
                st=1 REASON="LIST under PROT P failed (exit $rc) on a data: required listener"
            elif ! tr -d '\r' <"$OUT_FILE" | grep -q 'src\.bin$'; then
                st=1 REASON="LIST under PROT P lacks src.bin"
            fi
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" "ftplib-$prot" data-required
    done
}

# reuse_case: a listener with require_reuse true refuses ftplib's data connections
# (ftplib never resumes the control session): RETR must fail, quickly, without the file.
reuse_case() {
    local via=gw-vsftpd/t2p-reuse st=0 rc=0
    selected "negative vsftpd $via ftplib-p" || return 0
    rm -f "$DL/reuse.bin"
    if case_begin vsftpd "$via"; then
        timeout -k 5 60 "$PY" "$INTEROP_DIR/ftpstls.py" xfer --port "${L_PORT[$via]}" --user "$FTP_USER" \
            --tls explicit --prot p --cafile "$CA" --timeout "$STALL" retr src.bin "$DL/reuse.bin" \
            >"$OUT_FILE" 2>"$TRACE" || rc=$?
        [[ -f $DL/reuse.bin ]] && BYTES=$(stat -c %s "$DL/reuse.bin")
        if ((rc == 0)); then
            st=1 REASON="RETR without TLS session reuse succeeded on a require_reuse: true listener ($BYTES bytes)"
        elif ((rc == 124)) || slow "$CASE_T0" 10; then
            st=1 REASON="RETR without session reuse hung instead of failing"
        elif ((BYTES == SRC_BYTES)); then
            st=1 REASON="the whole file arrived over a data connection that did not resume the session"
        fi
    else
        st=1
    fi
    rm -f "$DL/reuse.bin"
    case_end "$st" negative vsftpd "$via" ftplib-p no-reuse-refused
}

# mismatch_cases: plaintext to an implicit listener, TLS to a plaintext listener; both
# must end quickly and cleanly (and ftpgate keeps serving: still-running).
mismatch_cases() {
    local via out rc st
    via=gw-vsftpd/imp2p
    if selected "negative vsftpd $via python-raw"; then
        st=0 rc=0
        if case_begin vsftpd "$via"; then
            out=$(timeout -k 2 30 "$PY" "$INTEROP_DIR/ftpstls.py" plain-to-tls 127.0.0.1 "${L_PORT[$via]}" 2>"$TRACE") || rc=$?
            echo "result: $out" >>"$TRACE"
            if ((rc != 0)) || [[ $out != closed* ]]; then
                st=1 REASON="a plaintext client on the implicit listener was not closed within 10 s (exit $rc): $out"
            elif [[ $out == *220* ]]; then
                st=1 REASON="the implicit listener sent a plaintext greeting: $out"
            fi
            no_login_upstream vsftpd || st=1
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" python-raw plaintext-to-implicit
    fi
    # curl waits for a greeting that an implicit listener never sends in clear: ftpgate's
    # TLS handshake deadline (timeouts.tls_handshake, 10 s by default) must end it
    if selected "negative vsftpd $via curl"; then
        st=0
        if case_begin vsftpd "$via"; then
            curl_list "$via" ftp
            if ((RC == 0)); then
                st=1 REASON="a plaintext curl listed the directory through an implicit listener"
            elif ((RC == 124)) || slow "$CASE_T0" 25; then
                st=1 REASON="a silent plaintext client on the implicit listener was not closed within 25 s (exit $RC after $(elapsed "$CASE_T0")s)"
            elif grep -q '^< 220' "$TRACE"; then
                st=1 REASON="the implicit listener sent a plaintext greeting"
            fi
            no_login_upstream vsftpd || st=1
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" curl plaintext-to-implicit-silent
    fi
    via=gw-vsftpd/plain
    if selected "negative vsftpd $via python-raw"; then
        st=0 rc=0
        if case_begin vsftpd "$via"; then
            out=$(timeout -k 2 30 "$PY" "$INTEROP_DIR/ftpstls.py" tls-to-plain 127.0.0.1 "${L_PORT[$via]}" 2>"$TRACE") || rc=$?
            echo "result: $out" >>"$TRACE"
            if ((rc != 0)) || [[ $out != handshake-failed* && $out != closed* ]]; then
                st=1 REASON="a TLS client on a plaintext listener did not fail cleanly (exit $rc): $out"
            fi
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" python-raw tls-to-plaintext
    fi
    if selected "negative vsftpd $via curl-implicit"; then
        st=0
        if case_begin vsftpd "$via"; then
            curl_list "$via" ftps --cacert "$CA"
            if ((RC == 0)); then
                st=1 REASON="curl ftps:// listed a plaintext listener"
            elif ((RC == 124)) || slow "$CASE_T0" 20; then
                st=1 REASON="curl ftps:// on a plaintext listener hung (exit $RC after $(elapsed "$CASE_T0")s)"
            fi
        else
            st=1
        fi
        case_end "$st" negative vsftpd "$via" curl-implicit tls-to-plaintext
    fi
}

# -------------------------------------------------------------- ftpgate ----
declare -A GATE_PID GATE_DOWN
start_gates() {
    local g dir cfg l key t0 ok
    for g in "${ALL_GATES[@]}"; do
        dir=$WORK/$g
        mkdir -p "$dir"
        cfg=$dir/ftpgate.yaml
        write_gate_config "$g" "$cfg"
        : >"$dir/ftpgate.log"
        GATE_PID[$g]=0
        if [[ -z ${FTPGATE_BIN:-} ]]; then
            GATE_DOWN[$g]="no ftpgate binary (build it, or set FTPGATE=path)"
            continue
        fi
        t0=$EPOCHREALTIME
        BYTES=0 TRACE=
        if ! timeout -k 5 30 "$FTPGATE_BIN" check -c "$cfg" >"$dir/check.out" 2>&1; then
            REASON="ftpgate check -c rejected the config: $(tail -n 5 "$dir/check.out" | tr '\n' ' ')"
            GATE_DOWN[$g]="ftpgate $g: $REASON"
            SECS=$(elapsed "$t0")
            one_case 1 ftpgate "$g" - ftpgate check
            echo "    --- config"
            sed 's/^/    | /' "$cfg"
            continue
        fi
        SECS=$(elapsed "$t0")
        one_case 0 ftpgate "$g" - ftpgate check
        start_bg "$dir/ftpgate.log" "$FTPGATE_BIN" run -c "$cfg"
        GATE_PID[$g]=$BG_PID
        ok=1
        for l in ${GATE_LISTENERS[$g]}; do
            key=$g/$l
            if [[ " $REFUSING " == *" $key "* ]]; then
                wait_accept "${L_PORT[$key]}" 20 "$BG_PID" 2>>"$dir/wait.err" || ok=0
            elif [[ $(spec_get "${L_LTLS[$key]}" mode off) == implicit ]]; then
                wait_tls_banner "${L_PORT[$key]}" 20 "$BG_PID" 2>>"$dir/wait.err" || ok=0
            else
                wait_banner "${L_PORT[$key]}" 20 "$BG_PID" 2>>"$dir/wait.err" || ok=0
            fi
            ((ok)) || break
        done
        if ((!ok)); then
            GATE_DOWN[$g]="ftpgate $g did not greet on listener $l ($(tail -n 1 "$dir/wait.err"))"
            REASON=${GATE_DOWN[$g]} SECS=$(elapsed "$t0")
            one_case 1 ftpgate "$g" - ftpgate start
            tail -n 30 "$dir/ftpgate.log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    | /'
            stop_pid "$BG_PID"
        else
            log "ftpgate $g up: ${GATE_LISTENERS[$g]}(passive ${GW_PASV[$g]/ /-}, server_mode ${GATE_MODE[$g]})"
        fi
    done
}

end_gates() {
    local g glog
    for g in "${ALL_GATES[@]}"; do
        [[ -z ${GATE_DOWN[$g]:-} ]] || continue
        glog=$WORK/$g/ftpgate.log
        BYTES=0 SECS=0 TRACE=
        LOG_OFF=()
        if kill -0 "${GATE_PID[$g]}" 2>/dev/null; then
            one_case 0 ftpgate "$g" - ftpgate still-running
        else
            REASON="ftpgate exited during the run"
            one_case 1 ftpgate "$g" - ftpgate still-running
        fi
        if grep -q 'panicked' "$glog"; then
            REASON="ftpgate log has a panic: $(grep -m1 'panicked' "$glog")"
            one_case 1 ftpgate "$g" - ftpgate no-panic
        else
            one_case 0 ftpgate "$g" - ftpgate no-panic
        fi
        stop_pid "${GATE_PID[$g]}"
    done
}

# ================================================================= run ====
if find_ftpgate; then
    log "ftpgate: $FTPGATE_BIN ($("$FTPGATE_BIN" --version 2>&1 | head -n1 || true))"
else
    FTPGATE_BIN=
fi

log "== TLS versions the servers negotiate"
version_case direct vsftpd-tls12 direct "${SRV_PORT[vsftpd-tls12]}" TLSv1.2
version_case direct vsftpd-tls12 direct "${SRV_PORT[vsftpd-tls12]}" none -tls1_3
version_case direct vsftpd-tls13 direct "${SRV_PORT[vsftpd-tls13]}" TLSv1.3
version_case direct vsftpd-tls13 direct "${SRV_PORT[vsftpd-tls13]}" none -tls1_2
version_case direct proftpd direct "${SRV_PORT[proftpd]}" TLSv1.3

log "== direct: clients straight to the servers (the baseline)"
xfer direct vsftpd direct curl lftp
xfer direct vsftpd-tls12 direct curl-tls lftp-tls lftp-tls-port
xfer direct vsftpd-tls13 direct curl-tls curl-tls-pasv lftp-tls lftp-tls-port
xfer direct pure-ftpd direct curl-tls lftp-tls ftplib-p ftplib-p-port
xfer direct proftpd direct curl-tls lftp-tls lftp-tls-port
xfer direct proftpd-implicit direct curl-implicit lftp-implicit
xfer direct proftpd-cleardata direct curl-tls lftp-tls-protc
long_case direct vsftpd-tls13 direct lftp-tls

log "== through ftpgate"
start_gates

version_case via-ftpgate vsftpd gw-ver/min13 "${L_PORT[gw-ver/min13]}" TLSv1.3
version_case via-ftpgate vsftpd gw-ver/min13 "${L_PORT[gw-ver/min13]}" none -tls1_2
version_case via-ftpgate vsftpd gw-vsftpd/t2p "${L_PORT[gw-vsftpd/t2p]}" TLSv1.3
version_case via-ftpgate vsftpd gw-vsftpd/t2p "${L_PORT[gw-vsftpd/t2p]}" TLSv1.2 -tls1_2

# plain client -> ftpgate -> FTPS server (route.tls, data private)
for s in vsftpd-tls12 vsftpd-tls13 pure-ftpd proftpd proftpd-implicit; do
    xfer "plain>tls" "$s" "gw-$s/p2t" curl lftp
done
xfer "plain>tls" vsftpd-tls13 gw-vsftpd-tls13/p2t curl-port
# FTPS client -> ftpgate -> plain server
xfer "tls>plain" vsftpd gw-vsftpd/t2p-reuse curl-tls lftp-tls
xfer "tls>plain" vsftpd gw-vsftpd/t2p ftplib-p ftplib-c ftplib-p-port
# FTPS on both legs
for s in vsftpd-tls12 vsftpd-tls13 pure-ftpd proftpd proftpd-implicit; do
    xfer "tls>tls" "$s" "gw-$s/t2t" curl-tls lftp-tls
    xfer "tls>tls" "$s" "gw-$s/t2t-noreuse" ftplib-p
done
xfer "tls>tls" vsftpd-tls13 gw-vsftpd-tls13/t2t curl-tls-pasv lftp-tls-port
xfer "tls>tls" vsftpd-tls13 gw-vsftpd-tls13/t2t-noreuse ftplib-p-port
# implicit FTPS client -> implicit listener
xfer "implicit>tls" vsftpd-tls13 gw-vsftpd-tls13/imp2t curl-implicit lftp-implicit
xfer "implicit>tls" proftpd-implicit gw-proftpd-implicit/imp2t curl-implicit
xfer "implicit>plain" vsftpd gw-vsftpd/imp2p curl-implicit
# clear data on one leg, PROT P on the other
xfer "protc>private" vsftpd-tls13 gw-vsftpd-tls13/t2t-noreuse ftplib-c
xfer "protc>private" vsftpd-tls13 gw-vsftpd-tls13/t2t lftp-tls-protc
xfer "protp>clear" proftpd-cleardata gw-proftpd-cleardata/t2t-clear curl-tls lftp-tls
xfer "protp>clear" proftpd-cleardata gw-proftpd-cleardata/t2t-clear-noreuse ftplib-p
xfer "match-data" proftpd-cleardata gw-proftpd-cleardata/t2t-match ftplib-p ftplib-c
xfer "match-mode" vsftpd-tls13 gw-vsftpd-tls13/tmatch curl-tls lftp-tls
# ftpgate server_mode active, client passive and active
xfer "active" vsftpd-tls13 gw-act-vsftpd-tls13/t2t curl-tls lftp-tls lftp-tls-port
xfer "active" vsftpd-tls13 gw-act-vsftpd-tls13/p2t curl curl-port
xfer "active" proftpd gw-act-proftpd/t2t curl-tls lftp-tls-port

log "== long sessions through ftpgate"
long_case long vsftpd-tls13 gw-vsftpd-tls13/t2t lftp-tls
long_case long vsftpd-tls13 gw-vsftpd-tls13/t2t-noreuse ftplib-p

log "== negative cases"
refused_case negative vsftpd-rogue gw-neg/badca "the server's certificate is from an unrelated CA (route.tls.verify true)"
refused_case negative vsftpd-tls13 gw-neg/badname "route.tls.server_name wrong.invalid does not match the server certificate"
refused_case negative vsftpd-tls13 gw-ver/rmax12 "route max_version 1.2 against a TLS 1.3-only server"
refused_case negative vsftpd-tls12 gw-ver/rmin13 "route min_version 1.3 against a TLS 1.2-only server"
required_cases
datareq_cases
reuse_case
mismatch_cases

end_gates

# ---------------------------------------------------------------- table ----
echo
echo "summary (passed/total per leg and server):"
printf '  %-16s %-20s %s\n' leg server cases
for k in "${TALLY_ORDER[@]}"; do
    read -r leg server <<<"$k"
    printf '  %-16s %-20s %s\n' "$leg" "$server" "${TALLY_PASS[$k]:-0}/${TALLY_TOTAL[$k]}"
done
for s in "${ALL_SERVERS[@]}"; do
    kill -0 "${SRV_PID[$s]}" 2>/dev/null || log "WARNING: $s exited during the run"
done
log "suite took $(elapsed "$SUITE_START") s"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
