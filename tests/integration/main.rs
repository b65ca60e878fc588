//! One integration-test binary (one link on a 2-core CI box), a module per area.

mod support;

mod backup;
mod browser;
mod callflow;
mod cli;
mod export;
mod hostile;
mod notify;
mod outcomes;
mod promises;
mod properties;
mod report;
mod resilience;
mod systemd;
mod twilio;
mod upgrade;
mod vectors;
mod webhook;
