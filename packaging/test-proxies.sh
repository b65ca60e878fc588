#!/usr/bin/env bash
# The shipped reverse-proxy examples (packaging/nginx/calltrackd.conf and
# packaging/caddy/Caddyfile) in front of the real daemon, on loopback, with TLS: a
# Twilio-signed callback goes through each proxy and lands in the database.
#
#   bash packaging/test-proxies.sh [path/to/calltrackd] [nginx|caddy|all]
#
# Needs nginx, caddy, openssl and curl (Debian packages); .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/calltrackd}")
WHICH=${2:-all}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "== $f" >&2; tail -20 "$f" >&2; done; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=calls.example.com \
    -addext subjectAltName=DNS:calls.example.com \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# $1: proxy name, $2: its https port. Starts calltrackd behind it and checks.
check_through() {
    local name=$1 port=$2 ct_port=$3
    local base="https://calls.example.com:$port"
    local c=(curl -sS --max-time 10 --cacert "$work/cert.pem" --resolve "calls.example.com:$port:127.0.0.1")
    [ "$name" = caddy ] && c=(curl -sS --max-time 10 -k --resolve "calls.example.com:$port:127.0.0.1")
    local cfg="$work/$name.toml"
    cat > "$cfg" <<EOF
[server]
listen = "127.0.0.1:$ct_port"
public_url = "$base"
[storage]
path = "$name.db"
[twilio]
auth_token = "proxy-test-token"
[export]
token = "proxy-export-token"
[[numbers]]
number = "+18005551212"
user = "acme-plumbing"
forward_to = "+15558675309"
EOF
    chmod 600 "$cfg"
    "$BIN" serve --config "$cfg" 2>"$work/calltrackd-$name.log" &
    pids+=($!)
    for _ in $(seq 50); do "${c[@]}" -o /dev/null "$base/healthz" 2>/dev/null && break; sleep 0.2; done
    [ "$("${c[@]}" "$base/healthz")" = ok ] || fail "$name: /healthz through the proxy"

    local url="$base/call-tracking/webhook"
    local params=(CallSid=CA-$name-1 From=+14155550100 To=+18005551212 CallStatus=ringing Direction=inbound "CallerName=JOHN SMITH")
    local sig; sig=$("$BIN" sign --config "$cfg" "$url" "${params[@]}")
    local form=(); for p in "${params[@]}"; do form+=(--data-urlencode "$p"); done
    local out; out=$("${c[@]}" -w '\n%{http_code}' -H "X-Twilio-Signature: $sig" "${form[@]}" "$url")
    [ "$(tail -1 <<<"$out")" = 200 ] || fail "$name: signed callback: $out"
    grep -q '<Number>+15558675309</Number>' <<<"$out" || fail "$name: TwiML: $out"
    grep -q "action=\"$url\"" <<<"$out" || fail "$name: dial action: $out"

    [ "$("${c[@]}" -o /dev/null -w '%{http_code}' -H "X-Twilio-Signature: AAAA" "${form[@]}" "$url")" = 403 ] \
        || fail "$name: a wrong signature must get 403"
    head -c 200000 /dev/zero | tr '\0' a > "$work/big.txt"
    [ "$("${c[@]}" -o /dev/null -w '%{http_code}' -H "X-Twilio-Signature: $sig" --data "@$work/big.txt" "$url")" = 413 ] \
        || fail "$name: an oversized body must get 413"
    [ "$("${c[@]}" -o /dev/null -w '%{http_code}' "$base/metrics")" = 404 ] || fail "$name: /metrics must stay private"
    local csv; csv=$("${c[@]}" -u ":proxy-export-token" "$base/calls.csv")
    grep -q "CA-$name-1,acme-plumbing,+18005551212" <<<"$csv" || fail "$name: export through the proxy: $csv"
    [ "$("${c[@]}" -o /dev/null -w '%{http_code}' "$base/calls.csv")" = 401 ] || fail "$name: export without credentials"
    echo "ok: $name -> calltrackd: signed callback stored, 403, 413, private /metrics, export"
}

if [ "$WHICH" = all ] || [ "$WHICH" = nginx ]; then
    ngx_port=$(free_port); ngx_http=$(free_port); ct_port=$(free_port)
    mkdir -p "$work/nginx-tmp"
    sed -e "s#listen 443 ssl;#listen 127.0.0.1:$ngx_port ssl;#" \
        -e '/listen \[::\]:443 ssl;/d' -e '/listen \[::\]:80;/d' \
        -e "s#listen 80;#listen 127.0.0.1:$ngx_http;#" \
        -e "s#/etc/letsencrypt/live/calls.example.com/fullchain.pem#$work/cert.pem#" \
        -e "s#/etc/letsencrypt/live/calls.example.com/privkey.pem#$work/key.pem#" \
        -e "s#127.0.0.1:8080#127.0.0.1:$ct_port#g" \
        packaging/nginx/calltrackd.conf > "$work/site.conf"
    cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
    access_log $work/nginx-access.log;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    include $work/site.conf;
}
EOF
    nginx -t -c "$work/nginx.conf" -e "$work/nginx-error.log" 2>"$work/nginx-t.log" || fail "nginx -t: $(cat "$work/nginx-t.log")"
    nginx -c "$work/nginx.conf" -e "$work/nginx-error.log"
    check_through nginx "$ngx_port" "$ct_port"
fi

if [ "$WHICH" = all ] || [ "$WHICH" = caddy ]; then
    cd_port=$(free_port); cd_http=$(free_port); ct_port=$(free_port)
    # The shipped Caddyfile with a local address, Caddy's internal CA instead of ACME,
    # and no admin endpoint.
    sed -e "s#^calls.example.com {#https://calls.example.com:$cd_port {\n\ttls internal#" \
        -e "s#127.0.0.1:8080#127.0.0.1:$ct_port#g" \
        -e "s#^{#{\n\tadmin off\n\tskip_install_trust\n\thttp_port $cd_http\n\tstorage file_system $work/caddy-data#" \
        packaging/caddy/Caddyfile > "$work/Caddyfile"
    caddy validate --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy-validate.log" 2>&1 \
        || fail "caddy validate: $(tail -5 "$work/caddy-validate.log")"
    HOME=$work XDG_DATA_HOME=$work caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
    pids+=($!)
    check_through caddy "$cd_port" "$ct_port"
fi
