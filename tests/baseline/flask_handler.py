"""The Flask-plus-Twilio-SDK webhook a shop would otherwise write, kept as a baseline
for calltrackd's benchmark (README.md, Performance). Not part of calltrackd.

It does what such glue usually does: checks X-Twilio-Signature with the SDK's
RequestValidator, stores the parameters and upserts a call row in SQLite with Python's
defaults (rollback journal, synchronous=FULL, one transaction per request), and answers
TwiML built with the SDK (<Dial> for an incoming call, empty otherwise).

    apt-get install python3-flask python3-twilio gunicorn
    TWILIO_AUTH_TOKEN=bench-token CALLS_DB=/tmp/flask-calls.db \\
        gunicorn -w 5 -b 127.0.0.1:5000 --chdir tests/baseline flask_handler:app
    ./target/release/calltrackd-bench fire --url http://127.0.0.1:5000/call-tracking/webhook \\
        --token bench-token
"""

import json
import os
import sqlite3

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

app = Flask(__name__)
validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
DB = os.environ.get("CALLS_DB", "flask-calls.db")
FORWARD_TO = os.environ.get("FORWARD_TO", "+15558675309")


def connect():
    return sqlite3.connect(DB, timeout=5)


with connect() as c:
    c.execute(
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, call_sid TEXT NOT NULL,"
        " received_at TEXT DEFAULT CURRENT_TIMESTAMP, params TEXT NOT NULL)"
    )
    c.execute(
        "CREATE TABLE IF NOT EXISTS calls (call_sid TEXT PRIMARY KEY, tracking_number TEXT,"
        " caller TEXT, status TEXT, duration INTEGER)"
    )


@app.post("/call-tracking/webhook")
def webhook():
    signature = request.headers.get("X-Twilio-Signature", "")
    if not validator.validate(request.url, request.form, signature):
        abort(403)
    f = request.form
    conn = connect()
    try:
        with conn:
            conn.execute(
                "INSERT INTO events (call_sid, params) VALUES (?, ?)",
                (f["CallSid"], json.dumps(f.to_dict(flat=False))),
            )
            conn.execute(
                "INSERT INTO calls (call_sid, tracking_number, caller, status, duration)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(call_sid) DO UPDATE SET"
                " status = excluded.status, duration = coalesce(excluded.duration, duration)",
                (f["CallSid"], f.get("To"), f.get("From"), f.get("CallStatus"),
                 f.get("CallDuration", type=int)),
            )
    finally:
        conn.close()
    twiml = VoiceResponse()
    if "CallbackSource" not in f and "DialCallStatus" not in f:
        twiml.dial(FORWARD_TO)
    return Response(str(twiml), mimetype="text/xml")
