//! Connection flow, last step of a passed-through connection (`TCP`/`TLS` listeners) and of an
//! upgraded HTTP exchange (a WebSocket, see `upgrade.rs`): one bidirectional, byte-exact copy
//! between the downstream and the upstream, until both sides have closed, either fails, or
//! nothing has moved either way for the idle timeout. Counts bytes as they move and the tunnels
//! open.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes read per call. Two buffers per tunnel: 32 KiB for a long-lived connection, the size
/// most proxies use (HAProxy's `tune.bufsize` is 16 KiB).
const BUFFER: usize = 16 * 1024;

/// The metric handles of one tunnel, resolved before it starts.
#[derive(Clone)]
pub(crate) struct TunnelMetrics {
    /// Tunnels open now.
    pub(crate) open: Gauge,
    /// Bytes copied from the downstream to the upstream.
    pub(crate) to_upstream: Counter,
    /// Bytes copied from the upstream to the downstream.
    pub(crate) to_downstream: Counter,
}

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Both sides closed their sending half.
    Closed,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// A read or write failed (a reset); the other side is closed with it.
    Failed(std::io::ErrorKind),
}

/// What the tunnel copied each way, and how it ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Bytes from the downstream to the upstream.
    pub(crate) to_upstream: u64,
    /// Bytes from the upstream to the downstream.
    pub(crate) to_downstream: u64,
    /// Why it ended.
    pub(crate) end: End,
}

/// Copies both ways until the tunnel ends. A side that closes its sending half (EOF) has that
/// passed on as a half-close (`shutdown` of the other side's writing half) while the other
/// direction goes on: protocols that half-close to mark the end of a request keep working.
pub(crate) async fn run<D, U>(
    downstream: D,
    upstream: U,
    idle: Duration,
    m: &TunnelMetrics,
) -> Outcome
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    m.open.inc();
    let _open = OpenGuard(&m.open);
    let start = Instant::now();
    // Milliseconds since `start` of the last byte moved, either way.
    let activity = AtomicU64::new(0);
    let totals = [AtomicU64::new(0), AtomicU64::new(0)];
    let (mut dr, mut dw) = tokio::io::split(downstream);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = copy(
        &mut dr,
        &mut uw,
        (&m.to_upstream, &totals[0]),
        &activity,
        start,
    );
    let down = copy(
        &mut ur,
        &mut dw,
        (&m.to_downstream, &totals[1]),
        &activity,
        start,
    );
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        // A failure either way ends both (the halves are dropped, closing both sockets); a clean
        // EOF ends one direction and lets the other run on.
        let result = tokio::select! {
            r = &mut up, if !up_done => { up_done = true; r }
            r = &mut down, if !down_done => { down_done = true; r }
            () = idle_watch(&activity, start, idle) => break End::Idle,
        };
        if let Err(e) = result {
            break End::Failed(e);
        }
        if up_done && down_done {
            break End::Closed;
        }
    };
    Outcome {
        to_upstream: totals[0].load(Ordering::Relaxed),
        to_downstream: totals[1].load(Ordering::Relaxed),
        end,
    }
}

/// Decrements the open gauge however the tunnel's future ends (dropped by a drain included).
struct OpenGuard<'a>(&'a Gauge);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One direction: reads until EOF, writing each chunk whole, then half-closes the writer.
/// Counts bytes into the metric and the tunnel's own total as they move.
async fn copy<R, W>(
    r: &mut R,
    w: &mut W,
    (counter, total): (&Counter, &AtomicU64),
    activity: &AtomicU64,
    start: Instant,
) -> Result<(), std::io::ErrorKind>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    let result = loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e.kind()),
        };
        if let Err(e) = w.write_all(&buf[..n]).await {
            break Err(e.kind());
        }
        total.fetch_add(n as u64, Ordering::Relaxed);
        counter.inc_by(n as u64);
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    };
    // The peer learns that this side is done sending (FIN); on a failure it is closed anyway.
    let _ = w.shutdown().await;
    result
}

/// Returns once nothing has moved for `idle`.
async fn idle_watch(activity: &AtomicU64, start: Instant, idle: Duration) {
    let mut last = u64::MAX;
    loop {
        let at = activity.load(Ordering::Relaxed);
        if at == last {
            return;
        }
        last = at;
        tokio::time::sleep_until(start + Duration::from_millis(at) + idle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> TunnelMetrics {
        TunnelMetrics {
            open: Gauge::default(),
            to_upstream: Counter::default(),
            to_downstream: Counter::default(),
        }
    }

    /// Bytes go through unchanged both ways; a half-close from the client reaches the upstream,
    /// which can still answer after it.
    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close_on() {
        let (client, down) = tokio::io::duplex(1024);
        let (up, server) = tokio::io::duplex(1024);
        let m = metrics();
        let tunnel = tokio::spawn({
            let m = m.clone();
            async move { run(down, up, Duration::from_secs(60), &m).await }
        });
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            cw.write_all(&sent).await.unwrap();
            cw.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, payload,
            "the upstream sees the client's bytes, then EOF"
        );
        writer.await.unwrap();
        sw.write_all(b"reply after half-close").await.unwrap();
        sw.shutdown().await.unwrap();
        let mut reply = Vec::new();
        cr.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply after half-close");
        let out = tunnel.await.unwrap();
        assert_eq!(out.end, End::Closed);
        assert_eq!(out.to_upstream, 100_000);
        assert_eq!(m.to_downstream.get(), 22);
        assert_eq!(m.open.get(), 0);
    }

    /// With nothing moving, the tunnel ends after the idle timeout and not before; traffic
    /// pushes the deadline back.
    #[tokio::test(start_paused = true)]
    async fn ends_after_the_idle_timeout() {
        let (mut client, down) = tokio::io::duplex(1024);
        let (up, mut server) = tokio::io::duplex(1024);
        let m = metrics();
        let started = Instant::now();
        let tunnel = tokio::spawn({
            let m = m.clone();
            async move { run(down, up, Duration::from_secs(10), &m).await }
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(m.open.get(), 1);
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        let out = tunnel.await.unwrap();
        assert_eq!(out.end, End::Idle);
        let lasted = started.elapsed();
        assert!(lasted >= Duration::from_secs(18), "{lasted:?}");
        assert!(lasted < Duration::from_secs(19), "{lasted:?}");
        assert_eq!(m.open.get(), 0);
    }
}
