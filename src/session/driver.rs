//! The task that drives a session's [`Core`]: it owns the two control connections, the
//! clock, the running data task and the port pools, and nothing else. Each turn it performs
//! the core's actions in order, then waits on whichever comes first (a client line when
//! the core wants one, a server line, a data task's report, the core's next deadline, a
//! shutdown) and feeds it to the core.

use super::context::SessionContext;
use super::core::{Action, Core, Input, Pool, Ports, TransferPlan};
use super::error::{ClientFault, ServerFault, SessionEnd};
use crate::data::{self, DataEvent, DataListener, PortError, PortPool, RateLimit, Throttle};
use crate::data::{DataTls, TransferHandle, TransferSpec};
use crate::error::Side;
use crate::metrics::families::{Channel, Leg as TlsLeg};
use crate::proto::line::encode_line;
use crate::proto::reply::Reply;
use crate::stream::BoxedStream;
use crate::tls::{DataRole, SessionAcceptor, SessionConnector, TlsError};
use crate::wire::Leg;
use bytes::BytesMut;
use futures_util::StreamExt;
use rustls::pki_types::ServerName;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// This session's TLS configurations (its own session stores, see `crate::tls`).
pub(super) struct SessionTls {
    /// ftpgate as the client's TLS server; `None` on a listener without TLS.
    pub acceptor: Option<SessionAcceptor>,
    /// ftpgate as the server's TLS client, with the name to verify; `None` on a route
    /// without TLS, `Err` when the server's name cannot be a TLS name.
    pub connector: Option<(SessionConnector, Result<ServerName<'static>, TlsError>)>,
    pub require_reuse: bool,
    pub handshake: Duration,
}

/// The port pools as the core's [`Ports`].
#[derive(Debug)]
pub(super) struct PoolPorts {
    pub passive: Arc<PortPool>,
    pub active: Arc<PortPool>,
    /// TPROXY: passive listeners bind the (non-local) address the client reached.
    pub transparent: bool,
}

impl Ports for PoolPorts {
    type Listener = DataListener;
    fn listen(&mut self, pool: Pool, ip: IpAddr) -> Result<DataListener, PortError> {
        match pool {
            Pool::Passive => self.passive.listen(ip, self.transparent),
            Pool::Active => self.active.listen(ip, false),
        }
    }
}

pub(super) async fn drive(
    ctx: &Arc<SessionContext>,
    core: &mut Core<PoolPorts>,
    client: &mut Leg,
    server: &mut Leg,
    tls: &SessionTls,
    shutdown: CancellationToken,
    accepted: Instant,
) -> SessionEnd {
    // `ftpgate_session_setup_seconds`: from the accept to the first reply relayed (the
    // server's greeting, held until both legs are secured where TLS is configured).
    let mut setup = Some(accepted);
    let (data_tx, mut data_rx) = mpsc::channel(4);
    let limits = &ctx.config.limits;
    let throttle = Throttle::new(
        limits
            .rate_per_session
            .map(RateLimit::new)
            .into_iter()
            .chain(ctx.rate_total.clone()),
    );
    // Dropping the handle (at the end of this function too) cancels the transfer.
    let mut transfer: Option<TransferHandle> = None;
    let mut shutdown_seen = false;
    let stall = ctx.config.timeouts.data_stall;
    loop {
        for refusal in core.take_refusals() {
            ctx.metrics.refused(refusal);
        }
        for record in core.take_records() {
            super::report::transfer(ctx, core.addrs(), &record);
        }
        while let Some(action) = core.poll_action() {
            let done = match action {
                Action::ToClient(reply) => {
                    let r = write_reply(&mut client.writer, &reply, stall).await;
                    if let Some(t) = setup.take() {
                        ctx.metrics
                            .families
                            .session_setup_seconds
                            .observe(t.elapsed().as_secs_f64());
                    }
                    r
                }
                Action::ToServer(line) => write_line(&mut server.writer, &line, stall).await,
                Action::StartTransfer(plan) => {
                    transfer = Some(start_transfer(ctx, plan, tls, &throttle, &data_tx));
                    Ok(())
                }
                Action::SecureClient => {
                    let result = secure_client(tls, client).await;
                    if result.is_err() {
                        ctx.metrics.tls_failed(TlsLeg::client, Channel::control);
                    }
                    core.handle(Input::ClientSecured(result), Instant::now().into_std());
                    Ok(())
                }
                Action::SecureServer => {
                    let result = secure_server(tls, server).await;
                    if result.is_err() {
                        ctx.metrics.tls_failed(TlsLeg::server, Channel::control);
                    }
                    core.handle(Input::ServerSecured(result), Instant::now().into_std());
                    Ok(())
                }
                Action::GoTransfer(id) => {
                    if let Some(t) = transfer.as_mut().filter(|t| t.id == id) {
                        t.start();
                    }
                    Ok(())
                }
                Action::CancelTransfer(id) => {
                    if let Some(t) = transfer.as_ref().filter(|t| t.id == id) {
                        t.cancel();
                    }
                    Ok(())
                }
                Action::Close(end) => Err(end),
            };
            if let Err(end) = done {
                return end;
            }
        }
        // A complete server line already buffered is handled before the next client
        // command is read: an unsolicited reply that came with (or before) the last one
        // must not be paired with a command sent after it (SECURITY.md 6).
        let read_client = core.wants_client() && !server.reader.read_buffer().contains(&b'\n');
        let deadline = core.next_deadline().map(Instant::from_std);
        let input = tokio::select! {
            frame = client.reader.next(), if read_client => match frame {
                None => Input::ClientClosed,
                Some(Err(source)) => return SessionEnd::Io { side: Side::Client, source },
                Some(Ok(frame)) => Input::Client {
                    frame,
                    more_buffered: !client.reader.read_buffer().is_empty(),
                },
            },
            frame = server.reader.next() => match frame {
                None => Input::ServerClosed,
                // The client hears a 421, as when the server closes; a TLS server that
                // refused our client certificate ends its connection this way.
                Some(Err(source)) => {
                    tracing::warn!(error = %source, "server control connection failed");
                    Input::ServerClosed
                }
                Some(Ok(frame)) => Input::Server(frame),
            },
            Some(event) = data_rx.recv() => {
                if transfer.as_ref().is_some_and(|t| t.id == event.id) {
                    transfer = None;
                }
                Input::Data(event)
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Input::Tick,
            _ = shutdown.cancelled(), if !shutdown_seen => {
                shutdown_seen = true;
                Input::Shutdown
            }
        };
        core.handle(input, Instant::now().into_std());
    }
}

/// The TLS handshake on the client's control connection after our 234.
pub(super) async fn secure_client(tls: &SessionTls, client: &mut Leg) -> Result<(), TlsError> {
    let acceptor = tls.acceptor.as_ref().ok_or(TlsError::NotConfigured)?;
    let stream = client
        .take_for_tls()
        .map_err(|_| TlsError::PlaintextAfterAuth)?;
    let secured = acceptor
        .accept(stream, DataRole::Control, tls.handshake, false)
        .await?;
    client.replace(Box::new(secured));
    Ok(())
}

/// The TLS handshake on the server's control connection after its 234.
async fn secure_server(tls: &SessionTls, server: &mut Leg) -> Result<(), TlsError> {
    let Some((connector, name)) = &tls.connector else {
        return Err(TlsError::NotConfigured);
    };
    let name = match name {
        Ok(n) => n,
        Err(TlsError::BadName(text)) => return Err(TlsError::BadName(text.clone())),
        Err(_) => return Err(TlsError::NotConfigured),
    };
    let stream = server
        .take_for_tls()
        .map_err(|_| TlsError::PlaintextAfterAuth)?;
    let secured = connector.connect(name, stream, tls.handshake).await?;
    server.replace(Box::new(secured));
    Ok(())
}

fn start_transfer(
    ctx: &SessionContext,
    plan: TransferPlan<DataListener>,
    tls: &SessionTls,
    throttle: &Throttle,
    events: &mpsc::Sender<DataEvent>,
) -> TransferHandle {
    let t = &ctx.config.timeouts;
    let data_tls = DataTls {
        client: plan
            .client_tls
            .then(|| tls.acceptor.clone())
            .flatten()
            .map(|a| (a, tls.require_reuse)),
        server: plan
            .server_tls
            .then(|| match &tls.connector {
                Some((c, Ok(name))) => Some((c.clone(), name.clone())),
                _ => None,
            })
            .flatten(),
        handshake: tls.handshake,
    };
    let spec = TransferSpec {
        id: plan.id,
        direction: plan.direction,
        client: plan.client,
        server: plan.server,
        accept_timeout: t.data_accept,
        connect_timeout: t.connect,
        stall_timeout: t.data_stall,
        buffer_size: ctx.config.data.buffer_size,
        throttle: throttle.clone(),
        tls: data_tls,
        proxy_trusted: ctx
            .listener
            .proxy_protocol
            .as_ref()
            .map(|p| Arc::from(p.trusted.as_slice())),
        kernel: ctx.config.data.path == crate::config::DataPath::Kernel,
    };
    data::spawn(spec, events.clone(), Arc::clone(&ctx.metrics), &ctx.tracker)
}

/// Writes one reply to the client, within `limit`: a client that does not read its
/// control connection must not hold the session.
pub(super) async fn write_reply(
    w: &mut WriteHalf<BoxedStream>,
    reply: &Reply,
    limit: Duration,
) -> Result<(), SessionEnd> {
    let mut buf = BytesMut::new();
    reply.encode(&mut buf);
    timeout(limit, w.write_all(&buf))
        .await
        .map_err(|_| SessionEnd::Client(ClientFault::NotReading))?
        .map_err(|source| SessionEnd::Io {
            side: Side::Client,
            source,
        })
}

async fn write_line(
    w: &mut WriteHalf<BoxedStream>,
    line: &[u8],
    limit: Duration,
) -> Result<(), SessionEnd> {
    let mut buf = BytesMut::with_capacity(line.len() + 2);
    encode_line(line, &mut buf);
    timeout(limit, w.write_all(&buf))
        .await
        .map_err(|_| SessionEnd::Server(ServerFault::NotReading))?
        .map_err(|source| SessionEnd::Io {
            side: Side::Server,
            source,
        })
}
