#!/usr/bin/env python3
"""Writes tests/data/schema3.db with the schema 3 calltrackd (commit 5af40f5), through
real signed requests, for the upgrade test (tests/integration/upgrade.rs).

    git worktree add /tmp/old3 5af40f5 && (cd /tmp/old3 && cargo build --release)
    python3 tests/data/make-schema3.py /tmp/old3/target/release/calltrackd

The calls (T0 = 2026-03-02T15:00:00Z; numbers as in tests/integration/support.rs):
- CAv3ans: +14155550100 -> +18005551212 (forwarded), answered 45 s of 57: rang 12 s.
- CAv3again: the same caller a day later; nobody answered, gone after 10 s; its
  incoming request was sent twice.
- CAv3anon: an anonymous caller to +18005550100 (not forwarded: hung up on).
- CAv3live: still ringing.
"""
import base64, hashlib, hmac, os, shutil, socket, subprocess, sys, tempfile, time
import urllib.parse, urllib.request
from email.utils import formatdate

TOKEN = "test-auth-token-0123456789"
TRACKING, NO_FORWARD, SHOP, CALLER = "+18005551212", "+18005550100", "+15558675309", "+14155550100"
T0 = 1772463600
DAY = 86400

binary = sys.argv[1]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema3.db")
work = tempfile.mkdtemp()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
with open(os.path.join(work, "config.toml"), "w") as f:
    f.write(f"""[server]
listen = "127.0.0.1:{port}"
[storage]
path = "calls.db"
[twilio]
auth_token = "{TOKEN}"
[qualify]
min_duration_seconds = 30
[[numbers]]
number = "{TRACKING}"
user = "acme-plumbing"
source = "Google Ads"
forward_to = "{SHOP}"
[[numbers]]
number = "{NO_FORWARD}"
user = "bob-electric"
source = "Flyer"
""")
os.chmod(os.path.join(work, "config.toml"), 0o600)
daemon = subprocess.Popen([binary, "serve", "--config", "config.toml"], cwd=work)
url = f"http://127.0.0.1:{port}/call-tracking/webhook"


def post(params):
    data = url + "".join(k + v for k, v in sorted(params))
    sig = base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()
    req = urllib.request.Request(url, urllib.parse.urlencode(params).encode(),
                                 {"X-Twilio-Signature": sig})
    for _ in range(100):
        try:
            with urllib.request.urlopen(req) as r:
                assert r.status == 200
                return
        except (ConnectionRefusedError, urllib.error.URLError):
            time.sleep(0.1)
    raise SystemExit("daemon did not answer")


def call(sid, to, caller, status, **extra):
    p = [("CallSid", sid), ("AccountSid", "AC" + "0" * 32), ("From", caller), ("To", to),
         ("Direction", "inbound"), ("CallStatus", status)]
    return p + list(extra.items())


def ts(t):
    return formatdate(t, usegmt=True).replace("GMT", "+0000")


def callback(sid, to, caller, status, t, duration=None):
    p = call(sid, to, caller, status, CallbackSource="call-progress-events", Timestamp=ts(t),
             SequenceNumber="0")
    return p + ([("CallDuration", str(duration))] if duration is not None else [])


post(call("CAv3ans", TRACKING, CALLER, "ringing"))
post(callback("CAv3ans", TRACKING, CALLER, "ringing", T0))
post(call("CAv3ans", TRACKING, CALLER, "in-progress", DialCallStatus="completed",
          DialCallDuration="45", DialCallSid="CAv3ans-leg"))
post(callback("CAv3ans", TRACKING, CALLER, "completed", T0 + 57, 57))
again = call("CAv3again", TRACKING, CALLER, "ringing")
post(again)
post(again)
post(callback("CAv3again", TRACKING, CALLER, "ringing", T0 + DAY))
post(call("CAv3again", TRACKING, CALLER, "in-progress", DialCallStatus="no-answer",
          DialCallSid="CAv3again-leg"))
post(callback("CAv3again", TRACKING, CALLER, "no-answer", T0 + DAY + 10, 0))
post(call("CAv3anon", NO_FORWARD, "anonymous", "ringing"))
post(callback("CAv3anon", NO_FORWARD, "anonymous", "ringing", T0 + 2 * DAY))
post(callback("CAv3anon", NO_FORWARD, "anonymous", "completed", T0 + 2 * DAY + 3, 3))
post(call("CAv3live", TRACKING, "+13125550199", "ringing"))
post(callback("CAv3live", TRACKING, "+13125550199", "ringing", T0 + 3 * DAY))
daemon.terminate()
assert daemon.wait(20) == 0
shutil.copy(os.path.join(work, "calls.db"), out)
shutil.rmtree(work)
print("wrote", out)
