//! One data transfer as a task: open both legs, relay, report a [`DataEvent`].
//!
//! The session creates a [`TransferSpec`] once the data-channel commands on both sides
//! have been settled and the addresses checked; this task never decides where to connect.
//! It waits for the session's `start` before connecting to an active-mode client, so the
//! client is contacted only once the server has accepted the transfer command (1xx/2xx).

use super::conn::{client_side, drain, server_side, DataConn, DataTls};
use super::error::{DataError, Side};
use super::legs::{accept_from, connect_from, ClientLeg, ServerLeg};
use super::rate::Throttle;
use super::relay::{pump, Flow};
use super::splice::{splice_pump, Unsupported};
use crate::metrics::{GaugeGuard, Metrics};
use crate::proto::command::Direction;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the session learns when a transfer task ends.
#[derive(Debug)]
pub struct DataEvent {
    pub id: u64,
    pub bytes: u64,
    pub result: Result<(), DataError>,
}

#[derive(Debug)]
pub struct TransferSpec {
    pub id: u64,
    pub direction: Direction,
    pub client: ClientLeg,
    pub server: ServerLeg,
    pub accept_timeout: Duration,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub buffer_size: usize,
    pub throttle: Throttle,
    pub tls: DataTls,
    /// `listeners[].proxy_protocol.trusted`: a client data connection from one of these
    /// must begin with a PROXY header naming the session's client.
    pub proxy_trusted: Option<Arc<[ipnet::IpNet]>>,
    /// `data.path: kernel`: try kernel forwarding first (crate::kernel).
    pub kernel: bool,
}

/// The session's handle on a running transfer. Dropping it cancels the transfer.
#[derive(Debug)]
pub struct TransferHandle {
    pub id: u64,
    start: Option<oneshot::Sender<()>>,
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

impl TransferHandle {
    /// The server accepted the transfer command: an active-mode client may now be contacted.
    pub fn start(&mut self) {
        if let Some(tx) = self.start.take() {
            let _ = tx.send(());
        }
    }

    /// Ends the transfer; the task still reports a `DataEvent` (with `Cancelled`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for TransferHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
        // The task ends by itself on cancel; abort covers a task stuck in a syscall-free
        // await we did not anticipate, so nothing outlives its session.
        self.join.abort();
    }
}

/// Starts the transfer on `tracker` (the shutdown's: the drain waits for data tasks too).
pub fn spawn(
    mut spec: TransferSpec,
    events: mpsc::Sender<DataEvent>,
    metrics: Arc<Metrics>,
    tracker: &tokio_util::task::TaskTracker,
) -> TransferHandle {
    let (start_tx, start_rx) = oneshot::channel();
    let cancel = CancellationToken::new();
    let id = spec.id;
    // Before the session sends the transfer command: an active server connects as soon
    // as it has it, so its mapping must already be in place.
    let premapped = match &mut spec.client {
        ClientLeg::Accept { listener, .. } => listener.premap.take(),
        ClientLeg::Connect { .. } => None,
    };
    let kernel = if spec.kernel {
        crate::kernel::prepare(
            crate::kernel::Legs {
                client: &spec.client,
                server: &spec.server,
                upload: spec.direction == Direction::Upload,
                tls: spec.tls.client.is_some() || spec.tls.server.is_some(),
                rate_limited: spec.throttle.max_chunk().is_some(),
                proxy_headers: spec.proxy_trusted.is_some(),
            },
            premapped,
        )
    } else {
        Ok(None)
    };
    let span = tracing::info_span!("data", data.id = id, data.dir = ?spec.direction);
    let token = cancel.clone();
    let join = tracker.spawn(
        async move {
            let _guard = GaugeGuard::new(Arc::clone(&metrics), |m| &m.transfers);
            metrics.transfers_total.add(1);
            let direction = spec.direction;
            let mut bytes = 0u64;
            let result = tokio::select! {
                r = async {
                    match kernel {
                        Ok(k) => run(spec, k, start_rx, &mut bytes, &metrics).await,
                        Err(e) => Err(e),
                    }
                } => r,
                _ = token.cancelled() => Err(DataError::Cancelled),
            };
            match direction {
                Direction::Download => metrics.bytes_down.add(bytes),
                Direction::Upload => metrics.bytes_up.add(bytes),
            }
            match &result {
                Ok(()) => tracing::debug!(bytes, "transfer complete"),
                Err(e) => {
                    metrics.transfers_failed.add(1);
                    if let DataError::Tls { side, .. } = e {
                        let leg = match side {
                            Side::Client => crate::metrics::families::Leg::client,
                            Side::Server => crate::metrics::families::Leg::server,
                        };
                        metrics.tls_failed(leg, crate::metrics::families::Channel::data);
                    }
                    tracing::info!(bytes, error = %e, "transfer failed");
                }
            }
            let _ = events.send(DataEvent { id, bytes, result }).await;
        }
        .instrument(span),
    );
    TransferHandle {
        id,
        start: Some(start_tx),
        cancel,
        join,
    }
}

async fn run(
    spec: TransferSpec,
    kernel: Option<crate::kernel::Kernel>,
    start: oneshot::Receiver<()>,
    bytes: &mut u64,
    metrics: &Metrics,
) -> Result<(), DataError> {
    let accept_deadline = Instant::now() + spec.accept_timeout;
    if let Some(k) = kernel {
        let listener = match (&spec.client, &spec.server) {
            (ClientLeg::Accept { listener, .. }, _) | (_, ServerLeg::Accept { listener, .. }) => {
                listener
            }
            _ => return Err(DataError::Cancelled),
        };
        *bytes = crate::kernel::forward(k, listener, accept_deadline, spec.stall_timeout).await?;
        return Ok(());
    }
    let client = async {
        match &spec.client {
            ClientLeg::Accept { listener, expect } => {
                accept_from(
                    listener,
                    *expect,
                    Side::Client,
                    accept_deadline,
                    metrics,
                    spec.proxy_trusted.as_deref(),
                )
                .await
            }
            ClientLeg::Connect {
                target,
                source,
                source_port,
                transparent,
            } => {
                // The session drops `start` without sending only when it cancels us.
                if start.await.is_err() {
                    return Err(DataError::Cancelled);
                }
                connect_from(
                    *target,
                    *source,
                    *source_port,
                    *transparent,
                    Side::Client,
                    spec.connect_timeout,
                )
                .await
            }
        }
    };
    let server = async {
        match &spec.server {
            ServerLeg::Connect { target, source } => {
                connect_from(
                    *target,
                    *source,
                    None,
                    false,
                    Side::Server,
                    spec.connect_timeout,
                )
                .await
            }
            ServerLeg::Accept { listener, expect } => {
                accept_from(
                    listener,
                    *expect,
                    Side::Server,
                    accept_deadline,
                    metrics,
                    None,
                )
                .await
            }
        }
    };
    let (client, server): (TcpStream, TcpStream) =
        if matches!(spec.client, ClientLeg::Accept { .. }) {
            // A passive client connects on its own: wait for it before touching the server,
            // so a client that never comes does not leave an empty upload on the server.
            let client = match client.await {
                Ok(c) => c,
                Err(e) => {
                    // A passive server is blocked waiting for us. For a download, connect
                    // and close so it fails the command now rather than at its own
                    // timeout; never for an upload, where that would leave an empty file.
                    if spec.direction == Direction::Download
                        && matches!(spec.server, ServerLeg::Connect { .. })
                    {
                        drop(server.await);
                    }
                    return Err(e);
                }
            };
            (client, server.await?)
        } else {
            // An active client is contacted only after the server's 1xx, which a passive
            // server sends only once we are connected: both at once, or neither happens.
            tokio::try_join!(client, server)?
        };
    // Both legs are up: the listeners (and their port leases) are no longer needed.
    drop(spec.client);
    drop(spec.server);
    // Until the relay has succeeded, closing a leg resets it (SO_LINGER 0): a peer must
    // see a failed or aborted transfer as an error, never as a clean end of file.
    set_abortive(&client, true);
    set_abortive(&server, true);
    let role = match spec.direction {
        Direction::Download => crate::tls::DataRole::Download,
        Direction::Upload => crate::tls::DataRole::Upload,
    };
    let (mut client, mut server) = tokio::try_join!(
        client_side(client, &spec.tls, role),
        server_side(server, &spec.tls)
    )?;
    let (from, from_side, to, to_side) = match spec.direction {
        Direction::Download => (&mut server, Side::Server, &mut client, Side::Client),
        Direction::Upload => (&mut client, Side::Client, &mut server, Side::Server),
    };
    let flow = Flow {
        from_side,
        to_side,
        size: spec.buffer_size,
        stall: spec.stall_timeout,
        throttle: &spec.throttle,
    };
    let spliced = match (&*from, &*to) {
        (DataConn::Plain(f), DataConn::Plain(t)) => Some(splice_pump(f, t, &flow, bytes).await),
        _ => None,
    };
    let result = match spliced {
        Some(Ok(())) => Ok(()),
        Some(Err(Ok(e))) => Err(e),
        Some(Err(Err(Unsupported(reason)))) => {
            // Said once per process at warn: it is a property of the host (kernel,
            // budget), not of this transfer; each later fallback is a debug line.
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::debug!(reason, "splice cannot run; copying through user space");
            } else {
                tracing::warn!(
                    reason,
                    "splice cannot run; copying through user space (logged once)"
                );
            }
            pump(from, to, &flow, bytes).await
        }
        None => relay_tls(from, to, &flow, bytes).await,
    };
    if result.is_ok() {
        set_abortive(client.tcp(), false);
        set_abortive(server.tcp(), false);
    }
    result
}

/// The buffered relay when either leg is TLS. EOF on a TLS leg means close_notify (an
/// end without it is [`DataError::Truncated`]); ftpgate ends each TLS leg with its own
/// close_notify, and waits for the receiving peer to close before the transfer counts
/// as done.
async fn relay_tls(
    from: &mut DataConn,
    to: &mut DataConn,
    flow: &Flow<'_>,
    bytes: &mut u64,
) -> Result<(), DataError> {
    pump(from, to, flow, bytes).await.map_err(|e| match e {
        DataError::Io { side, source }
            if side == flow.from_side
                && from.is_tls()
                && source.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            DataError::Truncated { side }
        }
        e => e,
    })?;
    let linger = flow.stall.min(Duration::from_secs(5));
    if from.is_tls() {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(linger, from.shutdown()).await;
    }
    if to.is_tls() {
        drain(to, linger).await;
    }
    Ok(())
}

fn set_abortive(stream: &TcpStream, on: bool) {
    let linger = on.then_some(Duration::ZERO);
    let _ = socket2::SockRef::from(stream).set_linger(linger);
}
