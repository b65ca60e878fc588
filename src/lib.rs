/*!
calltrackd: a self-hosted Twilio call-tracking daemon.

Twilio posts voice webhooks and call status callbacks; calltrackd verifies each
request's `X-Twilio-Signature` ([`signature`]), parses it ([`twilio`]), answers incoming
calls with TwiML that forwards them, stores every request verbatim and derives one row
per call ([`storage`], [`calls`]), and hands the calls out as CSV or XLSX ([`export`]).

Where things happen:
- a request is read and answered in [`http`] (the only code that touches a socket);
- a callback is verified in `routes/webhook.rs` (with [`signature::verify`]);
- what calltrackd answers (block list, hours, whisper, guard, voicemail, recording) is
  decided in [`callflow`] and written as TwiML by [`twiml`];
- a call's state is decided in [`calls::Summary::decide`];
- a row is written in `storage/rows.rs`, by the single writer thread
  (`storage/writer.rs`, group commit).
*/

// Two places need a system call std does not wrap (each says why at its `allow`).
#![deny(unsafe_code)]

pub mod backfill;
pub mod callflow;
pub mod calls;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod export;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod report;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod storage;
pub mod systemd;
pub mod twilio;
pub mod twiml;
