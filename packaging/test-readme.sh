#!/usr/bin/env bash
# The README's quick start and "Try it without a phone" snippet, run as written: the
# daemon from the quick-start command, the snippet pasted into bash, and the TwiML and
# CSV it prints checked against what the README says.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -e calls.db ]; then
    echo "test-readme: calls.db exists here (the quick start writes it); move it away first" >&2
    exit 1
fi
log=$(mktemp)
cleanup() {
    [ -n "${daemon:-}" ] && kill -INT "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -f calls.db calls.db-wal calls.db-shm "$log"
}
trap cleanup EXIT

# Quick start, first command (the build happens here; allow it time).
quick=$(grep -m1 -- '-- serve --config config.example.toml' README.md | sed 's/ *#.*//')
echo "quick start: $quick"
bash -c "exec $quick" 2>"$log" &
daemon=$!
for _ in $(seq 1 600); do
    grep -q "listening on" "$log" && break
    kill -0 "$daemon" 2>/dev/null || { cat "$log"; echo "test-readme: the daemon exited" >&2; exit 1; }
    sleep 1
done
grep -q "listening on" "$log" || { cat "$log"; echo "test-readme: the daemon never listened" >&2; exit 1; }

# The snippet, as the README shows it.
snippet=$(awk '/^## Try it without a phone/{f=1} f&&/^```bash$/{g=1;next} g&&/^```$/{exit} g' README.md)
[ -n "$snippet" ] || { echo "test-readme: no bash snippet found" >&2; exit 1; }
out=$(bash -c "$snippet")
echo "$out"

# The TwiML the README shows for the first post is the TwiML the daemon sent.
twiml=$(awk '/^The first `post` prints/{f=1} f&&/^```xml$/{g=1;next} g&&/^```$/{exit} g' README.md)
got=$(printf '%s\n' "$out" | head -n 2)
if [ "$got" != "$twiml" ]; then
    printf 'test-readme: the README shows\n%s\nbut the daemon sent\n%s\n' "$twiml" "$got" >&2
    exit 1
fi
# The CSV's call is answered and qualified.
row=$(printf '%s\n' "$out" | grep '^CA1,')
IFS=, read -r -a cells <<<"$row"
if [ "${cells[10]}" != true ] || [ "${cells[11]}" != true ]; then
    echo "test-readme: the call is not answered and qualified: $row" >&2
    exit 1
fi
echo "ok: README quick start and snippet work as written"
