#!/usr/bin/env bash
# ftpgate network-namespace lab: ftpgate at NAT and firewall edges, with real vsftpd
# and pure-ftpd servers and curl/lftp clients in separate network namespaces, every
# case also run WITHOUT ftpgate (via=direct) as a negative control.
#
# Topologies (each builds its namespaces, runs its cases and tears them down):
#   1 firewall     client behind a stateful firewall that drops inbound; variants
#                  fw-nat (masquerading NAT) and fw-drop (no NAT); an active-only
#                  server (vsftpd pasv_enable=NO) shows passive client + active server
#   2 server-nat   server behind a port-forwarding NAT whose 227 carries its private
#                  address; server_pasv_address use_control / check / trust
#   3 split        one listener, inside and outside (NATed) clients, per-client advertise
#   4 v4v6         IPv4 client -> IPv6 server and IPv6 client -> IPv4 server
#   5 transparent  interception on a router: nftables REDIRECT and TPROXY
#
# Output: one "PASS|FAIL|XFAIL topology=... via=ftpgate|direct ..." line per case
# (XFAIL: a case expected to fail that failed, counted as passed), a Markdown table,
# then "N passed, M failed". Exit 1 on any failure; 2 when the lab cannot set up.
# Without network namespaces: a SKIP banner and exit 0, unless CI is set (then 2).
#
# Knobs: LAB_TOPOS="1 2 3 4 5"  LAB_SIZE_MIB=2  LAB_CMD_TIMEOUT=20  LAB_KEEP=1 (keep
# the work dir)  LAB_VERBOSE=1 (print failing traces)  FTPGATE=path
set -uo pipefail

# shellcheck source=tests/lab/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

read -ra TOPOS <<<"${LAB_TOPOS:-1 2 3 4 5}"
SIZE_MIB=${LAB_SIZE_MIB:-2}

skip_or_fail() {
    printf '\n%s\n' "################################################################"
    printf '%s\n' "SKIP: network-namespace lab not run: $1"
    printf '%s\n\n' "################################################################"
    if [[ -n "${CI:-}" ]]; then
        echo "CI is set: the lab must run in CI; failing."
        echo "0 passed, 1 failed"
        exit 2
    fi
    echo "0 passed, 0 failed"
    exit 0
}

[[ $(id -u) -eq 0 ]] || skip_or_fail "not root (needs ip netns, nftables, a local FTP user)"
for t in ip nft vsftpd curl lftp python3 sha256sum timeout setsid ss; do
    command -v "$t" >/dev/null 2>&1 || skip_or_fail "missing tool: $t"
done
install_lab_trap
clean_stale
probe="${LAB_PREFIX}probe"
if ! err=$(ip netns add "$probe" 2>&1); then
    skip_or_fail "ip netns add failed: $err"
fi
LAB_NS+=("$probe")
if ! err=$(ip -n "$probe" link add p0 type veth peer name p1 2>&1); then
    skip_or_fail "cannot create veth pairs in a namespace: $err"
fi
ns_del "$probe"
LAB_NS=()

find_ftpgate || {
    log "building ftpgate (cargo build --release)"
    (cd "$REPO_ROOT" && cargo build --release >&2) || die "cargo build --release failed"
    find_ftpgate || die "no ftpgate binary"
}
ensure_pureftpd

LAB_START=$EPOCHREALTIME
WORK=$(mktemp -d /tmp/ftpgate-lab.XXXXXX)
chmod 755 "$WORK"
if [[ "${LAB_KEEP:-0}" == 1 ]]; then log "keeping work directory $WORK"; else CLEAN_PATHS+=("$WORK"); fi
mkdir -p "$WORK/dl" "$WORK/lftp-home"
make_ftp_user "$WORK/home"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/home/src.bin"
chown "$FTP_USER:" "$WORK/home/src.bin"
SRC_SHA=$(sha256sum <"$WORK/home/src.bin" | cut -d' ' -f1)
log "ftpgate $FTPGATE_BIN; user $FTP_USER; ${SIZE_MIB} MiB test file; work dir $WORK"

CLIENTS4=(curl-pasv curl-epsv curl-port curl-eprt lftp-pasv lftp-port)
NFT_DIR=$REPO_ROOT/deploy/nftables

# gate_cfg FILE SERVER_MODE PASV_POLICY: an ftpgate config; listeners YAML on stdin.
gate_cfg() {
    {
        echo "listeners:"
        cat
        cat <<EOF
acl:
  servers: { allow: [198.51.100.0/24, "2001:db8::/32"] }
data:
  passive_ports: 50000-50099
  server_mode: $2
  server_active_ports: 40000-40099
  server_pasv_address: $3
timeouts: { connect: 3s, data_accept: 6s, banner: 10s }
log: { level: ${FTPGATE_LOG_LEVEL:-info}, format: text }
EOF
    } >"$1"
}

# is_active CLIENT: does this client mode make the client listen (PORT/EPRT)?
is_active() { [[ $1 == *-port || $1 == *-eprt ]]; }

# ================================================================ 1 ====
# cli(192.0.2.10) -- fw(192.0.2.1 | 203.0.113.2) -- edge(203.0.113.1 | 198.51.100.1) -- srv(198.51.100.10)
topo_firewall() {
    local variant=$1 s c m servers
    TOPO=firewall-$variant
    log "=== topology 1: $TOPO"
    ns_add cli && ns_add fw router && ns_add edge router && ns_add srv || return 1
    link cli eth0 fw inside && link fw outside edge outside && link edge srvside srv eth0 || return 1
    addr cli eth0 192.0.2.10/24
    addr fw inside 192.0.2.1/24
    addr fw outside 203.0.113.2/24
    addr edge outside 203.0.113.1/24
    addr edge srvside 198.51.100.1/24
    addr srv eth0 198.51.100.10/24
    route cli default via 192.0.2.1
    route fw 198.51.100.0/24 via 203.0.113.1
    route edge 192.0.2.0/24 via 203.0.113.2
    route srv default via 198.51.100.1
    nft_load fw "$NFT_DIR/edge-firewall.nft" || return 1
    if [[ $variant == fw-drop ]]; then
        nsx fw nft delete table ip fw_nat || return 1
        servers=(vsftpd pure-ftpd vsftpd-nopasv)
    else
        servers=(vsftpd pure-ftpd)
    fi
    no_ftp_helper fw edge || return 1
    start_servers srv "${servers[@]}"
    local peer_direct=192.0.2.10
    [[ $variant == fw-nat ]] && peer_direct=203.0.113.2

    # Without ftpgate: passive works through the firewall (NAT or not), active never
    # does (the NATed PORT names a private address / inbound connections are dropped);
    # the active-only server cannot serve this client at all.
    VIA=direct SMODE=- CNS=cli HOST=198.51.100.10 WHERE=behind-$variant
    for s in "${servers[@]}"; do
        for c in "${CLIENTS4[@]}"; do
            SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
            if is_active "$c" || [[ $s == vsftpd-nopasv ]]; then EXPECT=fail; else EXPECT=ok WANT_PEER=$peer_direct; fi
            case_run
        done
    done
    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - { name: vsftpd, bind: "203.0.113.1:21", route: { kind: fixed, upstreams: ["198.51.100.10:21"], source: 198.51.100.1 } }
  - { name: pure, bind: "203.0.113.1:2121", route: { kind: fixed, upstreams: ["198.51.100.10:2121"], source: 198.51.100.1 } }
  - { name: nopasv, bind: "203.0.113.1:2100", route: { kind: fixed, upstreams: ["198.51.100.10:2100"], source: 198.51.100.1 } }
EOF
        GATE_WAIT="203.0.113.1 21"
        gate_start edge "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m HOST=203.0.113.1
        for s in "${servers[@]}"; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                if is_active "$c"; then
                    # NAT: the PORT names 192.0.2.10 but the session comes from
                    # 203.0.113.2 -> ftpgate refuses it (501). No NAT: ftpgate's
                    # connection to the client is dropped by the firewall (425).
                    EXPECT=fail
                    if [[ $variant == fw-nat ]]; then WANT_CODE=501; else WANT_CODE=425; fi
                elif [[ $s == vsftpd-nopasv && $m == passive ]]; then
                    EXPECT=fail
                else
                    EXPECT=ok WANT_PEER=198.51.100.1 WANT_SRV_CMD=${m/passive/PASV}
                    WANT_SRV_CMD=${WANT_SRV_CMD/active/PORT}
                    [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=203.0.113.1
                fi
                case_run
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 2 ====
# cli(203.0.113.10) -- edge(203.0.113.1 | 198.51.100.1) -- natr(198.51.100.20 | 192.0.2.1) -- srv(192.0.2.10)
topo_server_nat() {
    local s c pol m
    TOPO=server-nat
    log "=== topology 2: $TOPO"
    ns_add cli && ns_add edge router && ns_add natr router && ns_add srv || return 1
    link cli eth0 edge outside && link edge srvside natr outside && link natr inside srv eth0 || return 1
    addr cli eth0 203.0.113.10/24
    addr edge outside 203.0.113.1/24
    addr edge srvside 198.51.100.1/24
    addr natr outside 198.51.100.20/24
    addr natr inside 192.0.2.1/24
    addr srv eth0 192.0.2.10/24
    route cli default via 203.0.113.1
    route natr default via 198.51.100.1
    route srv default via 192.0.2.1
    nft_load natr "$NFT_DIR/server-nat.nft" || return 1
    start_servers srv vsftpd pure-ftpd

    # Without ftpgate: the 227 names 192.0.2.10, unreachable -> PASV fails; EPSV and
    # active work (the DNAT/masquerade handle them).
    VIA=direct SMODE=- CNS=cli HOST=198.51.100.20 WHERE=outside
    for s in vsftpd pure-ftpd; do
        for c in "${CLIENTS4[@]}"; do
            SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
            if [[ $c == curl-pasv || $c == lftp-pasv ]]; then EXPECT=fail; else EXPECT=ok WANT_PEER=203.0.113.10; fi
            case_run
        done
    done
    for pm in passive:use_control active:use_control passive:check passive:trust; do
        m=${pm%%:*} pol=${pm##*:}
        gate_cfg "$WORK/gate-$TOPO-$m-$pol.yaml" "$m" "$pol" <<EOF
  - { name: vsftpd, bind: "203.0.113.1:21", route: { kind: fixed, upstreams: ["198.51.100.20:21"] } }
  - { name: pure, bind: "203.0.113.1:2121", route: { kind: fixed, upstreams: ["198.51.100.20:2121"] } }
EOF
        GATE_WAIT="203.0.113.1 21"
        gate_start edge "$WORK/gate-$TOPO-$m-$pol.yaml" "$TOPO-$m-$pol" || return 1
        VIA=ftpgate SMODE="$m/$pol" HOST=203.0.113.1
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                if [[ $pol == use_control ]]; then
                    EXPECT=ok WANT_PEER=198.51.100.1
                    [[ $m == passive ]] && WANT_SRV_CMD=PASV
                    [[ $m == active ]] && WANT_SRV_CMD=PORT
                else
                    # check: 227 names 192.0.2.10 != control 198.51.100.20 -> 425;
                    # trust: ftpgate connects to 192.0.2.10, unreachable -> 425.
                    [[ $c == curl-pasv || $c == curl-port || $c == lftp-pasv ]] || continue
                    EXPECT=fail WANT_CODE=425
                fi
                case_run
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 3 ====
# incli(192.0.2.10/25) -- edge(lan 192.0.2.1/25 | dmz 192.0.2.129/25 | 198.51.100.1) -- srv(198.51.100.10)
#                          edge dmz -- gw(192.0.2.130/25 | outside 203.0.113.1,.2) -- outcli(203.0.113.10)
topo_split() {
    local s c m loc
    TOPO=split-horizon
    log "=== topology 3: $TOPO"
    ns_add incli && ns_add outcli && ns_add gw router && ns_add edge router && ns_add srv || return 1
    link incli eth0 edge lan && link edge dmz gw dmz && link gw outside outcli eth0 && link edge srvside srv eth0 || return 1
    addr incli eth0 192.0.2.10/25
    addr edge lan 192.0.2.1/25
    addr edge dmz 192.0.2.129/25
    addr edge srvside 198.51.100.1/24
    addr gw dmz 192.0.2.130/25
    addr gw outside 203.0.113.1/24 203.0.113.2/24
    addr outcli eth0 203.0.113.10/24 # no default route: only what is published on 203.0.113.0/24
    addr srv eth0 198.51.100.10/24
    route incli default via 192.0.2.1
    route edge default via 192.0.2.130
    route gw 192.0.2.0/25 via 192.0.2.129
    route gw 198.51.100.0/24 via 192.0.2.129
    route srv default via 198.51.100.1
    nft_load gw "$NFT_DIR/split-horizon.nft" || return 1
    start_servers srv vsftpd pure-ftpd

    # Without ftpgate: inside clients reach the server directly; outside clients get it
    # published on 203.0.113.2, but its 227 names 198.51.100.10 -> PASV fails outside.
    VIA=direct SMODE=-
    for loc in inside outside; do
        if [[ $loc == inside ]]; then CNS=incli HOST=198.51.100.10; else CNS=outcli HOST=203.0.113.2; fi
        WHERE=$loc
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok
                if [[ $loc == outside && ($c == curl-pasv || $c == lftp-pasv) ]]; then EXPECT=fail; fi
                case_run
            done
        done
    done
    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - name: vsftpd
    bind: "192.0.2.1:21"
    route: { kind: fixed, upstreams: ["198.51.100.10:21"], source: 198.51.100.1 }
    advertise:
      - { clients: 192.0.2.0/24, address: auto }
      - { clients: 0.0.0.0/0, address: 203.0.113.1 }
  - name: pure
    bind: "192.0.2.1:2121"
    route: { kind: fixed, upstreams: ["198.51.100.10:2121"], source: 198.51.100.1 }
    advertise:
      - { clients: 192.0.2.0/24, address: auto }
      - { clients: 0.0.0.0/0, address: 203.0.113.1 }
EOF
        GATE_WAIT="192.0.2.1 21"
        gate_start edge "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m
        for loc in inside outside; do
            if [[ $loc == inside ]]; then CNS=incli HOST=192.0.2.1; else CNS=outcli HOST=203.0.113.1; fi
            WHERE=$loc
            for s in vsftpd pure-ftpd; do
                for c in "${CLIENTS4[@]}"; do
                    SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok WANT_PEER=198.51.100.1
                    [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=$HOST
                    case_run
                done
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 4 ====
# cli4(192.0.2.10) / cli6(2001:db8:1::10) -- edge -- srv(198.51.100.10, 2001:db8:2::10)
topo_v4v6() {
    local s c m
    TOPO=v4v6
    log "=== topology 4: $TOPO"
    ns_add cli4 && ns_add cli6 && ns_add edge router && ns_add srv || return 1
    link cli4 eth0 edge c4 && link cli6 eth0 edge c6 && link edge srvside srv eth0 || return 1
    addr cli4 eth0 192.0.2.10/24
    addr cli6 eth0 2001:db8:1::10/64
    addr edge c4 192.0.2.1/24
    addr edge c6 2001:db8:1::1/64
    addr edge srvside 198.51.100.1/24 2001:db8:2::1/64
    addr srv eth0 198.51.100.10/24 2001:db8:2::10/64
    route cli4 default via 192.0.2.1
    route cli6 default via 2001:db8:1::1
    route srv default via 198.51.100.1
    route srv default via 2001:db8:2::1
    start_servers srv vsftpd pure-ftpd
    # curl and lftp always use EPSV/EPRT on IPv6, so PASV (and LPSV/LPRT, which
    # ftpgate never supports) on an IPv6 leg is sent by hand (ftpraw.py)
    local -a C6=(curl-epsv curl-eprt lftp-pasv lftp-port)

    # Without ftpgate an IPv4-only client cannot reach an IPv6 server (and back).
    VIA=direct SMODE=- EXPECT=fail
    for s in vsftpd pure-ftpd; do
        for c in "${CLIENTS4[@]}"; do
            WHERE=v4-client-to-v6-server CNS=cli4 HOST=2001:db8:2::10 SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=fail
            case_run
        done
        for c in "${C6[@]}"; do
            WHERE=v6-client-to-v4-server CNS=cli6 HOST=198.51.100.10 SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=fail
            case_run
        done
    done
    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - { name: v4v6-vsftpd, bind: "192.0.2.1:21", route: { kind: fixed, upstreams: ["[2001:db8:2::10]:21"] } }
  - { name: v4v6-pure, bind: "192.0.2.1:2121", route: { kind: fixed, upstreams: ["[2001:db8:2::10]:2121"] } }
  - { name: v6v4-vsftpd, bind: "[2001:db8:1::1]:21", route: { kind: fixed, upstreams: ["198.51.100.10:21"] } }
  - { name: v6v4-pure, bind: "[2001:db8:1::1]:2121", route: { kind: fixed, upstreams: ["198.51.100.10:2121"] } }
EOF
        GATE_WAIT="192.0.2.1 21
2001:db8:1::1 21"
        gate_start edge "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                WHERE=v4-client-to-v6-server CNS=cli4 HOST=192.0.2.1 SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                EXPECT=ok WANT_PEER=2001:db8:2::1
                [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=192.0.2.1
                [[ $m == passive ]] && WANT_SRV_CMD=PASV
                [[ $m == active ]] && WANT_SRV_CMD=PORT
                case_run
            done
            for c in "${C6[@]}"; do
                WHERE=v6-client-to-v4-server CNS=cli6 HOST=2001:db8:1::1 SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                EXPECT=ok WANT_PEER=198.51.100.1
                [[ $m == passive ]] && WANT_SRV_CMD=PASV
                [[ $m == active ]] && WANT_SRV_CMD=PORT
                case_run
            done
            # PASV cannot carry an IPv6 address: 425; LPSV/LPRT: 502 on both legs
            WHERE=v6-client-to-v4-server CNS=cli6 HOST=2001:db8:1::1 CLIENT=raw-pasv EXPECT=fail WANT_CODE=425
            case_run
            for c in raw-lpsv raw-lprt; do
                WHERE=v6-client-to-v4-server CNS=cli6 HOST=2001:db8:1::1 CLIENT=$c EXPECT=fail WANT_CODE=502
                case_run
                WHERE=v4-client-to-v6-server CNS=cli4 HOST=192.0.2.1 CLIENT=$c EXPECT=fail WANT_CODE=502
                case_run
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 5 ====
# cli(192.0.2.10) -- rtr(lan 192.0.2.1 | wan 198.51.100.1, ftpgate) -- srv(198.51.100.10)
topo_transparent() {
    local s c m kind
    TOPO=transparent
    log "=== topology 5: $TOPO"
    ns_add cli && ns_add rtr router && ns_add srv || return 1
    link cli eth0 rtr lan && link rtr wan srv eth0 || return 1
    addr cli eth0 192.0.2.10/24
    addr rtr lan 192.0.2.1/24
    addr rtr wan 198.51.100.1/24
    addr srv eth0 198.51.100.10/24
    route cli default via 192.0.2.1
    route srv default via 198.51.100.1
    start_servers srv vsftpd pure-ftpd

    for kind in redirect tproxy; do
        TOPO=transparent-$kind
        # Without interception (no rules loaded yet): a plain router; every mode works
        # and the server sees the client itself.
        nsx rtr nft delete table ip ftpgate_redirect 2>/dev/null
        VIA=direct SMODE=- CNS=cli HOST=198.51.100.10 WHERE=client
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok WANT_PEER=192.0.2.10
                case_run
            done
        done
        if [[ $kind == redirect ]]; then
            nft_load rtr "$NFT_DIR/redirect.nft" || return 1
        else
            nsx rtr ip rule add fwmark 0x1 lookup 100 || return 1
            nsx rtr ip route add local 0.0.0.0/0 dev lo table 100 || return 1
            nft_load rtr "$NFT_DIR/tproxy.nft" || return 1
        fi
        for m in passive active; do
            local tp=""
            [[ $kind == tproxy ]] && tp=", tproxy: true"
            gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - { name: intercept, bind: "192.0.2.1:2021", route: { kind: transparent, source: 198.51.100.1$tp } }
EOF
            GATE_WAIT=""
            gate_start rtr "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
            # transparent listeners refuse a session to themselves: wait for the socket
            timeout 20 bash -c "until ip netns exec $(ns rtr) ss -Hltn 'sport = :2021' | grep -q .; do sleep 0.1; done" ||
                { log "ftpgate did not listen on :2021"; return 1; }
            VIA=ftpgate SMODE=$m CNS=cli HOST=198.51.100.10 WHERE=client
            for s in vsftpd pure-ftpd; do
                for c in "${CLIENTS4[@]}"; do
                    SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok WANT_PEER=198.51.100.1
                    [[ $m == passive ]] && WANT_SRV_CMD=PASV
                    [[ $m == active ]] && WANT_SRV_CMD=PORT
                    # REDIRECT: passive listeners on the router's lan address;
                    # TPROXY: on the intercepted (server's) address
                    if [[ $c == curl-pasv || $c == lftp-pasv ]]; then
                        if [[ $kind == redirect ]]; then WANT_227=192.0.2.1; else WANT_227=198.51.100.10; fi
                    fi
                    case_run
                done
            done
            gate_stop
        done
    done
    teardown
}

for t in "${TOPOS[@]}"; do
    t_start=$EPOCHREALTIME
    case $t in
    1) topo_firewall fw-nat || { log "topology 1 (fw-nat) setup failed"; FAILED=$((FAILED + 1)); teardown; }
       topo_firewall fw-drop || { log "topology 1 (fw-drop) setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    2) topo_server_nat || { log "topology 2 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    3) topo_split || { log "topology 3 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    4) topo_v4v6 || { log "topology 4 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    5) topo_transparent || { log "topology 5 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    *) die "unknown topology $t (1-5)" ;;
    esac
    log "topology $t took $(elapsed "$t_start") s"
done

print_table
echo "lab took $(elapsed "$LAB_START") s"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
