//! The task that drives a session's [`Core`]: it owns the two control connections, the
//! clock, the running data task and the port pools, and nothing else. Each turn it performs
//! the core's actions in order, then waits on whichever comes first (a client line when
//! the core wants one, a server line, a data task's report, the core's next deadline, a
//! shutdown) and feeds it to the core.

use super::context::SessionContext;
use super::core::{Action, Core, Input, Pool, Ports, TransferPlan};
use super::error::{ClientFault, ServerFault, SessionEnd};
use crate::data::{self, DataEvent, DataListener, PortError, PortPool, RateLimit, Throttle};
use crate::data::{TransferHandle, TransferSpec};
use crate::error::Side;
use crate::proto::line::{encode_line, LineCodec};
use crate::proto::reply::Reply;
use crate::stream::BoxedStream;
use bytes::BytesMut;
use futures_util::StreamExt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

pub(crate) type LineReader = FramedRead<ReadHalf<BoxedStream>, LineCodec>;

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

/// One control connection's two halves.
pub(super) struct Leg {
    pub reader: LineReader,
    pub writer: WriteHalf<BoxedStream>,
}

pub(super) async fn drive(
    ctx: &Arc<SessionContext>,
    core: &mut Core<PoolPorts>,
    client: &mut Leg,
    server: &mut Leg,
    shutdown: CancellationToken,
) -> SessionEnd {
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
        while let Some(action) = core.poll_action() {
            let done = match action {
                Action::ToClient(reply) => write_reply(&mut client.writer, &reply, stall).await,
                Action::ToServer(line) => write_line(&mut server.writer, &line, stall).await,
                Action::StartTransfer(plan) => {
                    transfer = Some(start_transfer(ctx, plan, &throttle, &data_tx));
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
                Some(Err(source)) => return SessionEnd::Io { side: Side::Server, source },
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

fn start_transfer(
    ctx: &SessionContext,
    plan: TransferPlan<DataListener>,
    throttle: &Throttle,
    events: &mpsc::Sender<DataEvent>,
) -> TransferHandle {
    let t = &ctx.config.timeouts;
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
    };
    data::spawn(spec, events.clone(), Arc::clone(&ctx.metrics))
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
