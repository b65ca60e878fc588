//! One integration-test binary (one link on a 2-core CI box), a module per area.

mod support;

mod backup;
mod callflow;
mod cli;
mod export;
mod hostile;
mod outcomes;
mod promises;
mod properties;
mod resilience;
mod systemd;
mod upgrade;
mod vectors;
mod webhook;
