/*!
systemd integration without a crate: `sd_notify` over `$NOTIFY_SOCKET` and the watchdog.

`READY=1` is sent once the listener and the database are up, `STOPPING=1` on shutdown.
When the unit sets `WatchdogSec=`, a thread sends `WATCHDOG=1` at half that interval, but
only after a real `GET /healthz` over the daemon's own listener was answered `200`, or
`503` for a cause a restart cannot cure (a full disk, a read-only or locked database:
calltrackd recovers by itself once it is gone, while a restart loop would only make
systemd give up on the service). No answer, or a `503` that says a restart is needed (a
stuck writer, a database file deleted or replaced), and systemd restarts calltrackd.
*/

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Sends a state string to systemd; a no-op outside systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = result {
        log::warn!("cannot notify systemd ({state}): {e}");
    }
}

/// The watchdog interval systemd asks for, if any (`$WATCHDOG_USEC` for this pid).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// One `GET /healthz` over our own listener; true when calltrackd should be left
/// running: `200`, or a `503` that does not ask for a restart.
pub fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let Ok(mut s) = TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    if s.take(4096).read_to_end(&mut answer).is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.1 200 ") {
        return true;
    }
    text.starts_with("HTTP/1.1 503 ") && !text.contains(crate::routes::HEALTH_RESTART)
}

/// Starts the watchdog thread when systemd asked for one.
pub fn start_watchdog(addr: SocketAddr, stopping: Arc<AtomicBool>) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let period = interval / 2;
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                if probe(addr, period.min(Duration::from_secs(5))) {
                    notify("WATCHDOG=1");
                } else {
                    log::error!("watchdog: GET /healthz on {addr} got no answer, or one asking for a restart; systemd will restart calltrackd if this persists");
                }
                std::thread::sleep(period);
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the watchdog thread: {e}");
    }
}
