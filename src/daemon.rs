/*!
`calltrackd serve`: start-up, signals, reload and a clean stop.

Start-up opens the database (exit 1 if it cannot), binds the listeners (exit 1 if the port
is taken), starts the workers and tells systemd it is ready. Then the main thread waits:

- `SIGTERM`/`SIGINT`: stop accepting, let the workers finish the requests in flight and
  those already queued, let the writer commit what it holds, close the database, exit 0;
- `SIGHUP`: reload `[[numbers]]` and `[qualify]` from the config file; a file that fails
  to load is refused with a logged error and the old rules stay;
- the listener dying (tiny_http gives up after an accept error): stop and exit 1, so
  systemd restarts the daemon rather than leaving it alive and deaf.
*/

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, RwLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::{Config, Env};
use crate::export;
use crate::http;
use crate::metrics::Metrics;
use crate::routes::{self, App};
use crate::storage::{BatchObserver, Store};
use crate::systemd;

enum Event {
    Signal(i32),
    Fatal(String),
}

/// Why the daemon could not run, or had to stop (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database cannot be opened, created or migrated.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// A listener cannot be set up.
    #[error(transparent)]
    Listen(#[from] http::ServerError),
    /// Signal handling cannot be set up.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// A thread cannot be started.
    #[error("cannot start the signal thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The listening socket broke while serving.
    #[error("{0}")]
    ListenerBroke(String),
}

/// Runs the daemon until a stop signal (Ok) or a fatal error (Err, exit 1).
pub fn serve(cfg: Config, env: Env) -> Result<(), ServeError> {
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let rules = Arc::new(RwLock::new(Arc::new(cfg.rules.clone())));
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = Store::start(
        &cfg.storage_path,
        Arc::clone(&metrics) as Arc<dyn BatchObserver>,
        &cfg.rules,
    )?;

    let server = http::Server::bind(cfg.server.listen)?;
    let addr = server.local_addr();
    let metrics_server = match cfg.server.metrics_listen {
        Some(a) => Some(http::Server::bind(a)?),
        None => None,
    };

    let (tx, rx) = channel::<Event>();
    let fatal_tx = tx.clone();
    let on_fatal: Arc<dyn Fn(String) + Send + Sync> = Arc::new(move |msg| {
        let _ = fatal_tx.send(Event::Fatal(msg));
    });

    let app = Arc::new(App {
        public_url: cfg.server.public_url.clone(),
        urls: crate::callflow::Urls::new(
            cfg.server
                .public_url
                .as_ref()
                .map(|b| format!("{b}{}", crate::routes::WEBHOOK_PATH)),
        ),
        max_body_bytes: cfg.server.max_body_bytes,
        auth_tokens: cfg.auth_tokens.clone(),
        rules: Arc::clone(&rules),
        store,
        export: export::Settings {
            db_path: cfg.storage_path.clone(),
            token: cfg.export.token.clone(),
            timezone: cfg.export.timezone,
        },
        metrics: Arc::clone(&metrics),
    });
    let handler_app = Arc::clone(&app);
    let running = server.run(
        "http",
        http::Limits::new(
            cfg.server.max_body_bytes,
            cfg.server.max_connections,
            cfg.server.workers,
        ),
        Arc::new(move |req: &mut http::Request| routes::handle(&handler_app, req)),
        Arc::clone(&on_fatal),
    )?;
    metrics.set_http_stats(running.stats());
    let metrics_running = match metrics_server {
        Some(ms) => {
            let m = Arc::clone(&metrics);
            let db = cfg.storage_path.clone();
            let maddr = ms.local_addr();
            let r = ms.run(
                "metrics",
                http::Limits::new(1024, 16, 1),
                Arc::new(move |req: &mut http::Request| {
                    http::Reply::Now(routes::metrics_route(&m, &db, req))
                }),
                Arc::clone(&on_fatal),
            )?;
            log::info!("metrics on http://{maddr}/metrics");
            Some(r)
        }
        None => None,
    };

    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(ServeError::Signals)?;
    let signals_handle = signals.handle();
    let sig_tx: Sender<Event> = tx;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if sig_tx.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })
        .map_err(ServeError::Thread)?;

    log::info!(
        "calltrackd {} listening on http://{addr} (webhook {}), database {}, {} numbers",
        env!("CARGO_PKG_VERSION"),
        routes::WEBHOOK_PATH,
        cfg.storage_path.display(),
        cfg.rules.numbers.len()
    );
    let stopping = Arc::new(AtomicBool::new(false));
    // Dropped at the end of `serve`: the reconcile thread stops at its next wait.
    let (_reconcile_stop, reconcile_stopped) = channel::<()>();
    if cfg.twilio_api.reconcile_minutes > 0 {
        crate::reconcile::start(
            &cfg,
            app.store.clone(),
            Arc::clone(&rules),
            reconcile_stopped,
        )
        .map_err(ServeError::Thread)?;
        log::info!(
            "reconciling with Twilio's Calls API every {} min (the last {} days)",
            cfg.twilio_api.reconcile_minutes,
            crate::backfill::DEFAULT_DAYS
        );
    }
    // The notification outbox's delivery thread; stops with the same channel's drop.
    let (notify_stop, notify_stopped) = channel::<()>();
    let notifier = crate::notify::deliver::start(
        &cfg,
        app.store.clone(),
        Arc::clone(&rules),
        Arc::clone(&metrics),
        notify_stopped,
    )
    .map_err(ServeError::Thread)?;
    systemd::notify("READY=1");
    systemd::start_watchdog(addr, Arc::clone(&stopping));

    let result = loop {
        match rx.recv() {
            Ok(Event::Signal(SIGHUP)) => reload(&cfg, &env, &rules, &metrics),
            Ok(Event::Signal(s)) => {
                log::info!(
                    "{} received: finishing requests in flight, then stopping",
                    if s == SIGINT { "SIGINT" } else { "SIGTERM" }
                );
                break Ok(());
            }
            Ok(Event::Fatal(msg)) => {
                log::error!(
                    "{msg}: stopping with exit code 1 so the service manager restarts calltrackd"
                );
                break Err(ServeError::ListenerBroke(msg));
            }
            Err(_) => {
                break Err(ServeError::ListenerBroke("the event channel closed".into()));
            }
        }
    };

    stopping.store(true, Ordering::Relaxed);
    systemd::notify("STOPPING=1");
    signals_handle.close();
    running.stop();
    if let Some(m) = metrics_running {
        m.stop();
    }
    drop(on_fatal);
    // The delivery thread closes its connection first: the writer's must be the last,
    // which removes the WAL. (A send in progress finishes in its worker; its row stays
    // pending and goes again after the next start, with the same webhook-id.)
    drop(notify_stop);
    let _ = notifier.join();
    // The writer stores what is queued and closes the file, even if a connection thread
    // cut at the end of the drain still holds a handle.
    app.store.shutdown();
    drop(app);
    let _ = writer.join();
    if result.is_ok() {
        log::info!("stopped cleanly");
    }
    result
}

fn reload(cfg: &Config, env: &Env, rules: &RwLock<Arc<crate::config::Rules>>, metrics: &Metrics) {
    match Config::load(&cfg.path, env) {
        Ok(new) => {
            for w in &new.warnings {
                log::warn!("{w}");
            }
            let n = new.rules.numbers.len();
            let min = new.rules.qualify.min_duration_seconds;
            let pending = needs_restart(cfg, &new);
            match rules.write() {
                Ok(mut r) => *r = Arc::new(new.rules),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(new.rules),
            }
            metrics.count_reload(true);
            log::info!(
                "SIGHUP: reloaded {}: {n} numbers, qualified at {min} s",
                cfg.path.display()
            );
            if !pending.is_empty() {
                log::warn!(
                    "SIGHUP: changed but not applied until calltrackd restarts: {}",
                    pending.join(", ")
                );
            }
        }
        Err(e) => {
            metrics.count_reload(false);
            log::error!("SIGHUP: reload refused, keeping the previous numbers and rules: {e}");
        }
    }
}

/// The settings a reload cannot apply that differ between the running config and the
/// file: named, never with their values (a token may be among them).
fn needs_restart(running: &Config, file: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.server, &file.server);
    [
        ("[server] listen", a.listen != b.listen),
        ("[server] public_url", a.public_url != b.public_url),
        (
            "[server] metrics_listen",
            a.metrics_listen != b.metrics_listen,
        ),
        ("[server] workers", a.workers != b.workers),
        (
            "[server] max_body_bytes",
            a.max_body_bytes != b.max_body_bytes,
        ),
        (
            "[server] max_connections",
            a.max_connections != b.max_connections,
        ),
        ("[storage] path", running.storage_path != file.storage_path),
        (
            "[twilio] auth tokens",
            running.auth_tokens != file.auth_tokens,
        ),
        ("[export] token", running.export.token != file.export.token),
        (
            "[twilio] account, API key, api_base, reconcile_minutes",
            running.twilio_api != file.twilio_api,
        ),
        (
            "[export] timezone",
            running.export.timezone != file.export.timezone,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}
