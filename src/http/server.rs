//! The listener: accepts connections within the connection limit, gives each its thread,
//! and stops cleanly within the drain time.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Handler, Limits, conn};

/// Stack of a connection thread: handlers run on it (SQLite, the workbook writer).
const CONN_STACK: usize = 512 * 1024;
/// Longest pause between `accept()` retries when the process is out of descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this long about refused accepts.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counters of one listener, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one at the limit.
    pub evicted: AtomicU64,
    /// `accept()` failures (out of descriptors or memory), each retried.
    pub accept_errors: AtomicU64,
    /// Requests that did not arrive, or answers not read, in time.
    pub timeouts: AtomicU64,
    /// Requests refused by the HTTP layer itself (malformed, too large a head, ...).
    pub refused: AtomicU64,
}

impl Stats {
    pub(super) fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a connection is doing, for choosing which one makes room at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// A request is arriving.
    Receiving,
    /// A request is being handled: never cut for room.
    Busy,
    /// An answer is being written: cut for room once it has taken [`WRITE_GRACE`], as
    /// a client that does not read would hold its place until the write timeout.
    Writing,
}

/// How long an answer may take to write before its connection may be cut for room.
const WRITE_GRACE: Duration = Duration::from_secs(2);
/// Kernel send buffer of a connection: fixed (no autotuning to megabytes), so a client
/// that stops reading blocks our writes soon and the write timeout can see it.
const SEND_BUFFER: usize = 256 * 1024;

/// What a connection is doing and since when, written by its thread without a lock.
pub(super) struct State {
    phase: std::sync::atomic::AtomicU8,
    /// Milliseconds since the listener started.
    since_ms: AtomicU64,
}

impl State {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Receiving,
            2 => Phase::Busy,
            _ => Phase::Writing,
        }
    }
}

struct Entry {
    stream: Arc<TcpStream>,
    state: Arc<State>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    map: HashMap<u64, Entry>,
}

/// A counting semaphore: at most `workers` handlers run at once.
pub(super) struct Permits {
    free: Mutex<usize>,
    returned: Condvar,
}

/// One handler's turn; given back when dropped.
pub(super) struct Permit<'a>(&'a Permits);

impl Permits {
    pub(super) fn acquire(&self) -> Permit<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self.returned.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.returned.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the listener and every connection thread share.
pub(super) struct Shared {
    pub(super) limits: Limits,
    pub(super) handler: Arc<Handler>,
    pub(super) permits: Permits,
    pub(super) stats: Arc<Stats>,
    name: String,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    /// Signalled whenever a connection closes.
    closed: Condvar,
    /// When the listener started: connection times are kept relative to it.
    epoch: Instant,
}

impl Shared {
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn remove(&self, id: u64) {
        let mut conns = lock(&self.conns);
        conns.map.remove(&id);
        self.stats
            .open
            .store(conns.map.len() as u64, Ordering::Relaxed);
        drop(conns);
        self.closed.notify_all();
    }

    /// Closes the connection that has waited longest without a request being handled
    /// (or has been stuck writing an answer longest), if there is one. Its thread sees the end of the stream and leaves.
    fn evict_oldest(&self, conns: &mut Conns) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let grace = WRITE_GRACE.as_millis() as u64;
        let victim = conns
            .map
            .iter()
            .map(|(id, e)| {
                (
                    id,
                    e.state.phase(),
                    e.state.since_ms.load(Ordering::Relaxed),
                )
            })
            .filter(|(_, phase, since)| match phase {
                Phase::Idle | Phase::Receiving => true,
                Phase::Writing => now.saturating_sub(*since) >= grace,
                Phase::Busy => false,
            })
            .min_by_key(|(_, _, since)| *since)
            .map(|(id, _, _)| *id);
        let Some(id) = victim else { return false };
        if let Some(e) = conns.map.remove(&id) {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives an accepted connection its thread, making room first when at the limit.
    fn admit(self: &Arc<Self>, stream: TcpStream) {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let stream = Arc::new(stream);
        let state = Arc::new(State {
            phase: std::sync::atomic::AtomicU8::new(0),
            since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
        });
        let id = {
            let mut conns = lock(&self.conns);
            while conns.map.len() >= self.limits.max_connections {
                if self.evict_oldest(&mut conns) {
                    continue;
                }
                // Every connection is busy with a request: wait for one to finish.
                conns = self
                    .closed
                    .wait_timeout(conns, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
                if self.stopping() {
                    return;
                }
            }
            let id = conns.next_id;
            conns.next_id += 1;
            conns.map.insert(
                id,
                Entry {
                    stream: Arc::clone(&stream),
                    state: Arc::clone(&state),
                },
            );
            self.stats
                .open
                .store(conns.map.len() as u64, Ordering::Relaxed);
            id
        };
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-conn", self.name))
            .stack_size(CONN_STACK)
            .spawn(move || {
                // Leaves the table however serving ends.
                let _gone = Gone {
                    shared: &shared,
                    id,
                };
                let slot = Slot {
                    state,
                    epoch: shared.epoch,
                };
                conn::serve(&stream, &slot, &shared);
            });
        if let Err(e) = spawned {
            self.remove(id);
            log::warn!("http: cannot start a connection thread ({e}); connection dropped");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

struct Gone<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.shared.remove(self.id);
    }
}

/// A connection's place in the table, through which it says what it is doing.
pub(super) struct Slot {
    state: Arc<State>,
    epoch: Instant,
}

impl Slot {
    pub(super) fn set(&self, phase: Phase) {
        if self.state.phase() != phase {
            self.state
                .since_ms
                .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            self.state.phase.store(
                match phase {
                    Phase::Idle => 0,
                    Phase::Receiving => 1,
                    Phase::Busy => 2,
                    Phase::Writing => 3,
                },
                Ordering::Relaxed,
            );
        }
    }
}

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound (in use, not ours, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The accept thread could not be started.
    #[error("cannot start the accept thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A bound listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

/// A running listener: its accept thread, its connections, and how to stop them.
pub struct Running {
    shared: Arc<Shared>,
    /// A second handle on the listening socket, to stop accepting on shutdown.
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> Result<Server, ServerError> {
        let listen = |source| ServerError::Listen { addr, source };
        let listener = TcpListener::bind(addr).map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        Ok(Server { listener, addr })
    }

    /// The address actually bound (the port when binding `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts accepting. `on_fatal` is called if the listening socket itself breaks
    /// (not for running out of descriptors, which is retried).
    pub fn run(
        self,
        name: &str,
        limits: Limits,
        handler: Arc<Handler>,
        on_fatal: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<Running, ServerError> {
        let addr = self.addr;
        let ours = self
            .listener
            .try_clone()
            .map_err(|source| ServerError::Listen { addr, source })?;
        let shared = Arc::new(Shared {
            permits: Permits {
                free: Mutex::new(limits.workers.max(1)),
                returned: Condvar::new(),
            },
            limits,
            handler,
            stats: Arc::new(Stats::default()),
            name: name.to_owned(),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
            closed: Condvar::new(),
            epoch: Instant::now(),
        });
        let accept_shared = Arc::clone(&shared);
        let listener = self.listener;
        let acceptor = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&listener, &accept_shared, &*on_fatal))
            .map_err(ServerError::Thread)?;
        Ok(Running {
            shared,
            listener: ours,
            acceptor: Some(acceptor),
        })
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, on_fatal: &(dyn Fn(String) + Sync)) {
    let mut backoff = Duration::ZERO;
    let mut last_log: Option<Instant> = None;
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                shared.admit(stream);
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS) => {
                    shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    // Free a descriptor: the longest-waiting idle connection goes.
                    shared.evict_oldest(&mut lock(&shared.conns));
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
                    if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        last_log = Some(Instant::now());
                        log::error!(
                            "http: cannot accept connections ({e}); retrying every {backoff:?} at most (raise LimitNOFILE or lower [server] max_connections)"
                        );
                    }
                    std::thread::sleep(backoff);
                }
                Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK) => {
                    on_fatal(format!(
                        "the HTTP listener stopped accepting connections ({e})"
                    ));
                    return;
                }
                // A connection that went away before it was accepted, a signal, ...
                _ => {}
            },
        }
    }
}

impl Running {
    /// The listener's counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Stops accepting, closes idle connections, lets requests in flight finish (their
    /// answers say `Connection: close`) for up to the drain time, then cuts what is left.
    pub fn stop(mut self) {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on a socket this struct owns; the descriptor stays valid
        // until `self.listener` is dropped. The accept thread's blocked accept() then
        // fails at once and, seeing `stopping`, returns. std has no safe way to wake a
        // blocked accept().
        #[allow(unsafe_code)]
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RD);
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        // Idle connections stop reading: a blocked read ends, while a request whose
        // bytes were read a moment ago (its thread not yet marked busy) can still be
        // answered, since the writing side stays open. After the drain, everything goes.
        let cut = |only_idle: bool| {
            let conns = lock(&shared.conns);
            for e in conns.map.values() {
                if only_idle {
                    if e.state.phase() == Phase::Idle {
                        let _ = e.stream.shutdown(Shutdown::Read);
                    }
                } else {
                    let _ = e.stream.shutdown(Shutdown::Both);
                }
            }
        };
        cut(true);
        if !self.wait_closed(shared.limits.drain) {
            let n = lock(&shared.conns).map.len();
            log::warn!(
                "http: {n} connections still busy after {:?}; closing them",
                shared.limits.drain
            );
            cut(false);
            self.wait_closed(Duration::from_secs(1));
        }
    }

    /// Waits until no connection is open; false when `limit` ran out first.
    fn wait_closed(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut conns = lock(&self.shared.conns);
        while !conns.map.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            conns = self
                .shared
                .closed
                .wait_timeout(conns, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }
}
