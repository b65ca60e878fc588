#!/usr/bin/env bash
# The systemd units: `systemd-analyze verify` passes, and the exposure score of the
# hardened services is 1.0 or lower (`systemd-analyze security --offline=true`), i.e.
# better than every unit we compared with (conduwuit 1.1, headscale 1.5, ntfy 9.3).
#
#   bash packaging/test-systemd.sh [path/to/calltrackd]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/calltrackd}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp packaging/systemd/*.service packaging/systemd/*.timer "$work/"
# verify checks that ExecStart exists: point it at the binary just built.
sed -i "s#/usr/bin/calltrackd#$BIN#" "$work"/*.service
( cd "$work" && systemd-analyze verify ./calltrackd.service ./calltrackd-backup.service ./calltrackd-backup.timer )
echo "ok: systemd-analyze verify"

for unit in calltrackd.service calltrackd-backup.service; do
    line=$(systemd-analyze security --offline=true "packaging/systemd/$unit" | grep 'Overall exposure level')
    score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$line")
    awk -v s="$score" 'BEGIN { exit !(s <= 1.0) }' || { echo "FAIL: $unit exposure $score > 1.0" >&2; exit 1; }
    echo "ok: $unit exposure $score"
done

# The sysusers entry parses and creates the user in a scratch root.
mkdir -p "$work/root/etc" "$work/root/usr/lib/sysusers.d"
cp packaging/systemd/calltrackd.sysusers "$work/root/usr/lib/sysusers.d/calltrackd.conf"
systemd-sysusers --root="$work/root"
grep -q '^calltrackd:' "$work/root/etc/passwd" || { echo "FAIL: sysusers did not create calltrackd" >&2; exit 1; }
echo "ok: sysusers creates the calltrackd user"
