#!/bin/bash
# Install Debian packages without starting their services, then make sure no system KDC runs.
#
# krb5-kdc (and krb5-admin-server, if present) would start a system-wide KDC on
# install; vcard's tests run their own KDC as a child process instead, on
# 127.0.0.1 and a free port. A policy-rc.d that refuses every start (exit 101,
# invoke-rc.d's "action forbidden") is put in place for the install when none
# exists, and removed afterwards. Usage (as root): apt-install.sh PACKAGE...
set -eu

[ "$#" -gt 0 ] || exit 0
POLICY=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary: installed by vcard scripts/apt-install.sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    ours=1
fi
cleanup() {
    if [ "$ours" = 1 ]; then rm -f "$POLICY"; fi
}
trap cleanup EXIT

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"

# Belt and braces: the KDC services must not be enabled or running.
for service in krb5-kdc krb5-admin-server; do
    [ -e "/etc/init.d/$service" ] || [ -e "/lib/systemd/system/$service.service" ] || continue
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        systemctl disable --now "$service" >/dev/null 2>&1 || true
    else
        invoke-rc.d --force "$service" stop >/dev/null 2>&1 || true
        update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
done
for pidfile in /run/krb5-kdc.pid /run/krb5kdc.pid /run/kadmind.pid; do
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "apt-install: a system KDC is still running (pid file $pidfile); stop it before testing" >&2
        exit 1
    fi
done
