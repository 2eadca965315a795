#!/usr/bin/env bash
# ftpgate operations interop: the transfer log and the metrics after real transfers with
# real clients (curl, lftp) through ftpgate to a real vsftpd, checked field by field, and
# against the xferlog vsftpd itself writes for the same transfers (xferlog_std_format):
# every field ftpgate can know must be what vsftpd wrote. Then logrotate's way: the log
# is moved, SIGHUP, and the next transfer lands in a new file at the path. The metrics
# scraped from admin.bind count the bytes exactly and pass `promtool check metrics`.
#
# Usage (as root, with vsftpd lftp curl promtool; see .ci/run): tests/interop/ops.sh
# Knobs: FTPGATE=path, INTEROP_PORT_LO/HI (default 20000-27999), INTEROP_KEEP=1.
# Output: one PASS/FAIL line per check, then exactly "N passed, M failed".
set -euo pipefail

# shellcheck source=tests/interop/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PORT_LO=${INTEROP_PORT_LO:-20000}
PORT_HI=${INTEROP_PORT_HI:-27999}

need_root
need_tools vsftpd curl lftp python3 sha256sum
install_cleanup_trap
find_ftpgate || die "no ftpgate binary"
make_work_dir ftpgate-ops

pick_ports "$PORT_LO" "$PORT_HI" 1 20 1 20 20 1
V_PORT=${PORT_FIRST[0]}
G_PORT=${PORT_FIRST[2]}
ADMIN_PORT=${PORT_FIRST[5]}

HOME_DIR=$WORK/home
make_ftp_user "$HOME_DIR"
head -c $((4 * 1024 * 1024 + 11)) /dev/urandom >"$HOME_DIR/down.bin"
head -c 70000 /dev/urandom >"$HOME_DIR/name with space.bin"
printf 'line one\nline two\n' >"$HOME_DIR/notes.txt"
head -c $((1024 * 1024 + 3)) /dev/urandom >"$WORK/up.bin"
chown -R "$FTP_USER:" "$HOME_DIR"

VSFTPD_XFERLOG=$WORK/vsftpd.xferlog
printf 'xferlog_std_format=YES\ndual_log_enable=YES\nxferlog_file=%s\n' "$VSFTPD_XFERLOG" >"$WORK/vsftpd.extra"
start_vsftpd "$WORK" "$V_PORT" "${PORT_FIRST[1]}" "${PORT_LAST[1]}" "$WORK/vsftpd.extra"

XFERLOG=$WORK/ftpgate.xferlog
CFG=$WORK/ftpgate.yaml
write_ftpgate_config "$CFG" "$G_PORT" "$V_PORT" "${PORT_FIRST[3]}" "${PORT_LAST[3]}" \
    "${PORT_FIRST[4]}" "${PORT_LAST[4]}" passive
sed -i "s|^log: .*|log: { level: info, format: text, xferlog: $XFERLOG }|" "$CFG"
printf 'admin: { bind: 127.0.0.1:%s }\n' "$ADMIN_PORT" >>"$CFG"
GATE_LOG=$WORK/ftpgate.log
start_ftpgate "$CFG" "$GATE_LOG" "$G_PORT" || die "ftpgate did not start"

URL=ftp://127.0.0.1:$G_PORT
CRED="$FTP_USER:$FTP_PASS"
sum() { sha256sum "$1" | cut -d' ' -f1; }
same_sum() { [[ $(sum "$1") == $(sum "$2") ]]; }

# The transfers: curl RETR (binary), curl STOR, lftp get of a name with a space, curl
# RETR in ASCII mode (-B: TYPE A).
curl -sS --max-time 60 -u "$CRED" "$URL/down.bin" -o "$WORK/got-down.bin" || true
check "curl RETR through ftpgate" "$(ok same_sum "$WORK/got-down.bin" "$HOME_DIR/down.bin")"
curl -sS --max-time 60 -u "$CRED" -T "$WORK/up.bin" "$URL/up.bin" || true
check "curl STOR through ftpgate" "$(ok same_sum "$HOME_DIR/up.bin" "$WORK/up.bin")"
(cd "$WORK" && timeout 60 lftp -u "$CRED" -e "set cmd:fail-exit yes; set ftp:passive-mode on; get 'name with space.bin' -o got-space.bin; quit" "127.0.0.1:$G_PORT") || true
check "lftp get through ftpgate" "$(ok same_sum "$WORK/got-space.bin" "$HOME_DIR/name with space.bin")"
curl -sS --max-time 60 -B -u "$CRED" "$URL/notes.txt" -o "$WORK/got-notes.txt" || true
check "curl RETR TYPE A through ftpgate" "$(ok cmp -s "$WORK/got-notes.txt" "$HOME_DIR/notes.txt")"

# Field by field. The date is five fields; then transfer-time remote-host file-size
# filename transfer-type special-action direction access-mode username service-name
# authentication-method authenticated-user-id completion-status.
lines_of() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
for _ in $(seq 50); do [[ $(lines_of "$XFERLOG") -ge 4 ]] && break; sleep 0.1; done
asctime() { python3 -c 'import sys,time; time.strptime(" ".join(sys.argv[1:6]), "%a %b %d %H:%M:%S %Y")' "$@" 2>/dev/null; }
expect_line() { # expect_line N FILE-SIZE NAME TYPE DIRECTION
    local n=$1 size=$2 name=$3 type=$4 dir=$5 line want got
    local -a f
    line=$(sed -n "${n}p" "$XFERLOG" 2>/dev/null || true)
    read -ra f <<<"$line"
    want="${size} ${name} ${type} _ ${dir} r ${FTP_USER} ftp 0 * c"
    got="${f[7]:-} ${f[8]:-} ${f[9]:-} ${f[10]:-} ${f[11]:-} ${f[12]:-} ${f[13]:-} ${f[14]:-} ${f[15]:-} ${f[16]:-} ${f[17]:-}"
    check "xferlog line $n: 18 fields" "$(ok test "${#f[@]}" = 18)" "$line"
    check "xferlog line $n: remote-host is the real client" "$(ok test "${f[6]:-}" = 127.0.0.1)" "$line"
    check "xferlog line $n: transfer-time is whole seconds >= 1" "$(ok grep -qE '^[1-9][0-9]*$' <<<"${f[5]:-}")" "$line"
    check "xferlog line $n: $want" "$(ok test "$got" = "$want")" "got: $got"
    check "xferlog line $n: the date is asctime" "$(ok asctime "${f[@]:0:5}")" "$line"
}
check "xferlog has one line per file transfer" "$(ok test "$(lines_of "$XFERLOG")" = 4)" "$(cat "$XFERLOG" 2>/dev/null)"
expect_line 1 $((4 * 1024 * 1024 + 11)) down.bin b o
expect_line 2 $((1024 * 1024 + 3)) up.bin b i
expect_line 3 70000 "name_with_space.bin" b o
expect_line 4 "$(stat -c %s "$HOME_DIR/notes.txt")" notes.txt a o

# Against vsftpd's own lines for the same transfers: every field but the time and the
# transfer-time, and a filename that is vsftpd's absolute path ending in ftpgate's (the
# client's argument: ftpgate does not track the working directory).
same_as_vsftpd() {
    local n=$1 i
    local -a ours theirs
    read -ra ours <<<"$(sed -n "${n}p" "$XFERLOG" 2>/dev/null || true)"
    read -ra theirs <<<"$(sed -n "${n}p" "$VSFTPD_XFERLOG" 2>/dev/null || true)"
    ((${#theirs[@]} == 18)) || return 1
    for i in 6 7 9 10 11 12 13 14 15 16 17; do
        [[ ${ours[$i]:-x} == "${theirs[$i]:-y}" ]] || return 1
    done
    [[ ${theirs[8]} == */"${ours[8]:-none}" ]]
}
for n in 1 2 3 4; do
    check "xferlog line $n has vsftpd's fields" "$(ok same_as_vsftpd "$n")" \
        "ours: $(sed -n "${n}p" "$XFERLOG" 2>/dev/null) | vsftpd: $(sed -n "${n}p" "$VSFTPD_XFERLOG" 2>/dev/null)"
done

# logrotate: move, SIGHUP, and the next transfer creates the file again.
mv "$XFERLOG" "$XFERLOG.1" || true
kill -HUP "$FTPGATE_PID"
for _ in $(seq 50); do grep -q "transfer log reopened" "$GATE_LOG" && break; sleep 0.1; done
check "SIGHUP reopens the transfer log" "$(ok grep -q "transfer log reopened" "$GATE_LOG")"
check "SIGHUP reloads the configuration" "$(ok grep -q "configuration reloaded" "$GATE_LOG")"
curl -sS --max-time 60 -u "$CRED" "$URL/down.bin" -o "$WORK/got-down2.bin" || true
for _ in $(seq 50); do [[ $(lines_of "$XFERLOG") -ge 1 ]] && break; sleep 0.1; done
check "after rotation the path is created again with the new line" \
    "$(ok grep -q ' down.bin b _ o r ' "$XFERLOG")" "$(cat "$XFERLOG" 2>/dev/null)"
check "after rotation the new file has one line" "$(ok test "$(lines_of "$XFERLOG")" = 1)"
check "the rotated file kept its lines" "$(ok test "$(lines_of "$XFERLOG.1")" = 4)"
check "the structured transfer event is logged" \
    "$(ok grep -qE 'transfer .*command=RETR path=down.bin bytes=4194315 .*result="?ok' "$GATE_LOG")" \
    "$(grep -m2 ' transfer ' "$GATE_LOG" || true)"

# Metrics: exact byte counts, and promtool's approval.
curl -sS --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics" -o "$WORK/metrics.txt" || true
down=$((2 * (4 * 1024 * 1024 + 11) + 70000 + $(stat -c %s "$HOME_DIR/notes.txt")))
check "ftpgate_transfer_bytes_total download = $down" \
    "$(ok grep -qx "ftpgate_transfer_bytes_total{listener=\"default\",direction=\"download\"} $down" "$WORK/metrics.txt")" \
    "$(grep transfer_bytes "$WORK/metrics.txt" || true)"
check "ftpgate_transfer_bytes_total upload" \
    "$(ok grep -qx "ftpgate_transfer_bytes_total{listener=\"default\",direction=\"upload\"} $((1024 * 1024 + 3))" "$WORK/metrics.txt")"
check "ftpgate_transfers is back at 0" "$(ok grep -qx 'ftpgate_transfers 0' "$WORK/metrics.txt")"
if command -v promtool >/dev/null; then
    out=$(promtool check metrics <"$WORK/metrics.txt" 2>&1 || echo "promtool failed")
    check "promtool check metrics" "$(ok test -z "$out")" "$out"
else
    check "promtool check metrics (promtool installed)" 1 "apt-get install prometheus"
fi
check "/readyz is 200" "$(ok test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200)"

summary
