#!/usr/bin/env bash
# The .deb: build it with cargo-deb, check what is inside, and (as root, with dpkg)
# install it: the user exists, the config is a conffile without secrets, the service
# is installed but not started, check-config passes; then purge it.
#
#   bash packaging/test-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo deb --locked >/tmp/calltrackd-deb-build.log 2>&1 || { tail -30 /tmp/calltrackd-deb-build.log; exit 1; }
deb=$(ls -t target/debian/calltrackd_*.deb | head -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"

contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/calltrackd ./etc/calltrackd/config.toml \
         ./usr/lib/systemd/system/calltrackd.service \
         ./usr/lib/systemd/system/calltrackd-backup.service \
         ./usr/lib/systemd/system/calltrackd-backup.timer \
         ./usr/lib/sysusers.d/calltrackd.conf \
         ./usr/share/doc/calltrackd/README.md ./usr/share/doc/calltrackd/copyright \
         ./usr/share/doc/calltrackd/examples/config.example.toml \
         ./usr/share/doc/calltrackd/examples/nginx-calltrackd.conf \
         ./usr/share/doc/calltrackd/examples/Caddyfile; do
    grep -qx -- "$f" <<<"$contents" || { echo "FAIL: $f missing from $deb" >&2; exit 1; }
done
dpkg-deb -f "$deb" Depends | grep -q systemd || { echo "FAIL: Depends lacks systemd" >&2; exit 1; }
ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl"
grep -qx /etc/calltrackd/config.toml "$ctl/conffiles" || { echo "FAIL: config is not a conffile" >&2; exit 1; }
if dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/calltrackd/config.toml | grep -Eq '^[[:space:]]*(auth_token|previous_auth_token|token)[[:space:]]*='; then
    echo "FAIL: the packaged config holds a secret" >&2; exit 1
fi
grep -q 'deb-systemd-invoke start' "$ctl/postinst" && { echo "FAIL: postinst starts the service" >&2; exit 1; }
echo "ok: contents, conffile without secrets, service not started by postinst"

if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null && command -v deb-systemd-helper >/dev/null; then
    dpkg -i "$deb" >/dev/null
    id calltrackd >/dev/null || { echo "FAIL: no calltrackd user" >&2; exit 1; }
    calltrackd --version
    # check-config needs the token, read as systemd's LoadCredential hands it over.
    install -m 600 /dev/null /etc/calltrackd/twilio-auth-token
    echo test-token > /etc/calltrackd/twilio-auth-token
    CREDENTIALS_DIRECTORY=/etc/calltrackd calltrackd check-config --config /etc/calltrackd/config.toml >/dev/null
    rm -f /etc/calltrackd/twilio-auth-token
    if [ -d /run/systemd/system ]; then
        systemctl is-active --quiet calltrackd && { echo "FAIL: started without a token" >&2; exit 1; }
    fi
    dpkg --purge calltrackd >/dev/null
    echo "ok: installs (user, config, units), check-config passes, purges"
else
    echo "skipped the install test (needs root, systemd-sysusers and deb-systemd-helper)"
fi
