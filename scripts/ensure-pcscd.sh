#!/bin/bash
# Make sure pcscd is running with the vpcd reader driver, without systemd.
#
# Idempotent: does nothing when a pcscd already answers. Otherwise starts
# `pcscd --foreground` in the background (logging to $VCARD_PCSCD_LOG, default
# /tmp/vcard-pcscd.log) and waits up to 10 s for its socket. Works as root in a
# fresh Debian 12 container where systemd is not running (CI), and on a desktop
# where systemd socket-activates pcscd. pcscd 1.9.9 has one fixed socket, so only
# one pcscd can run per machine: never start a second one.
set -eu

SOCKET=/run/pcscd/pcscd.comm
VPCD_CONF=/etc/reader.conf.d/vpcd
LOG=${VCARD_PCSCD_LOG:-/tmp/vcard-pcscd.log}
WAIT_SECONDS=10

fail() {
    echo "ensure-pcscd: $*" >&2
    exit 1
}

if [ ! -f "$VPCD_CONF" ]; then
    fail "$VPCD_CONF is missing: the vpcd reader driver is not installed. Install it with: apt-get install -y pcscd vsmartcard-vpcd"
fi

PCSCD=$(command -v pcscd 2>/dev/null || true)
if [ -z "$PCSCD" ] && [ -x /usr/sbin/pcscd ]; then
    PCSCD=/usr/sbin/pcscd
fi
[ -n "$PCSCD" ] || fail "pcscd is not installed. Install it with: apt-get install -y pcscd vsmartcard-vpcd"

running() {
    # /proc instead of pgrep: procps is not in a minimal container, and pgrep counts
    # zombies (a killed pcscd whose parent has not reaped it yet) as running
    for dir in /proc/[0-9]*; do
        [ "$(cat "$dir/comm" 2>/dev/null)" = pcscd ] || continue
        state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "$dir/status" 2>/dev/null)
        case "$state" in
            Z | X | "") ;;
            *) return 0 ;;
        esac
    done
    return 1
}

socket_activated() {
    # systemd listening on the socket for pcscd counts as running: the first client starts it
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet pcscd.socket 2>/dev/null
}

wait_for_socket() {
    i=0
    while [ "$i" -lt $((WAIT_SECONDS * 10)) ]; do
        if [ -S "$SOCKET" ]; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

if running || socket_activated; then
    wait_for_socket || fail "pcscd is running but $SOCKET did not appear within ${WAIT_SECONDS} s"
    exit 0
fi

# A pid file left by a killed pcscd makes the new one refuse to start ("another pcscd seems
# to be running"); nothing runs now, so it is stale.
rm -f /run/pcscd/pcscd.pid "$SOCKET" 2>/dev/null || true

echo "ensure-pcscd: starting $PCSCD --foreground (log: $LOG)" >&2
# Every descriptor above 2 is closed first: a caller holding a lock (`flock LOCK ./ensure-pcscd.sh`,
# or a CI runner's pipe) must not pass it on to the long-lived pcscd, which would hold it forever.
(
    for fd_path in /proc/self/fd/*; do
        fd=${fd_path##*/}
        if [ "$fd" -gt 2 ] 2>/dev/null; then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
    exec nohup "$PCSCD" --foreground >"$LOG" 2>&1 </dev/null
) &
PID=$!

if ! wait_for_socket; then
    if ! running; then
        fail "pcscd exited at once; its log $LOG says: $(tail -n 5 "$LOG" 2>/dev/null | tr '\n' ' ')"
    fi
    fail "pcscd (pid $PID) did not create $SOCKET within ${WAIT_SECONDS} s; see $LOG"
fi
if ! running; then
    fail "pcscd exited after creating its socket; see $LOG"
fi
echo "ensure-pcscd: pcscd running (pid $PID)" >&2
