//! The control session: one task per client connection that owns all of its state.
//!
//! The task terminates the client's control connection, opens one to the server, and
//! relays commands and replies in order (RFC 959). It parses only what it polices
//! (`proto::command::Verb`); the data-channel commands are never passed through: PASV,
//! EPSV, PORT and EPRT from the client are answered by ftpgate itself, and towards the
//! server ftpgate issues its own PASV/EPSV/PORT/EPRT (RFC 2428) per `data.server_mode`.
//! Data connections run as separate tasks (`crate::data`) that report back with a
//! `DataEvent`; the server's final reply to a transfer is held until the client-side data
//! connection has delivered every byte and been closed.
//!
//! Flow control is lockstep: a new client command is read only once every earlier one is
//! answered, except while a transfer runs, when ABOR is acted on at once and any other
//! command waits in a one-slot stash. That bounds every queue by construction.

mod commands;
pub mod policy;
mod replies;

use crate::config::{Config, ListenerConfig, Route};
use crate::data::{DataEvent, DataListener, PortPool, TransferHandle};
use crate::metrics::Metrics;
use crate::proto::command::{CommandLine, Verb};
use crate::proto::line::{encode_line, Frame, LineCodec};
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::stream::BoxedStream;
use bytes::BytesMut;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Most 1xx replies accepted for one command before the server is deemed broken.
const MAX_PRELIMINARY: u32 = 16;
/// Most commands in flight to the server (only reachable with ABOR during a transfer).
const MAX_PENDING: usize = 8;
/// Largest reply ftpgate assembles (bytes, all lines).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// What every session of a listener shares.
#[derive(Debug)]
pub struct SessionContext {
    pub config: Arc<Config>,
    pub listener: ListenerConfig,
    pub passive_pool: Arc<PortPool>,
    pub active_pool: Arc<PortPool>,
    pub metrics: Arc<Metrics>,
}

/// Why a session ended; logged once when it does.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("client quit")]
    Quit,
    #[error("server closed the connection")]
    ServerClosed,
    #[error("upstream unavailable: {0}")]
    Upstream(String),
    #[error("server protocol error: {0}")]
    ServerProtocol(String),
    #[error("client protocol error: {0}")]
    ClientProtocol(String),
    #[error("idle timeout")]
    Idle,
    #[error("shutting down")]
    Shutdown,
    #[error("control connection I/O error on the {side} side: {source}")]
    Io {
        side: &'static str,
        source: std::io::Error,
    },
}

/// How the client asked for its next data connection.
#[derive(Debug)]
enum ClientPlan {
    /// PASV/EPSV: the client will connect to this listener.
    Passive(DataListener),
    /// PORT/EPRT: ftpgate will connect to this (already checked) address.
    Active(SocketAddr),
}

/// A command sent to the server whose final reply is still due.
#[derive(Debug)]
enum Pending {
    /// A client command; the final reply is relayed (after `Verb`-specific bookkeeping).
    Relay(Verb),
    /// ftpgate's own PASV/EPSV towards the server, sent for the client command `cmd`.
    ServerPasv { cmd: CommandLine, plan: ClientPlan },
    /// ftpgate's own PORT/EPRT towards the server, with the listener it named.
    ServerPort {
        cmd: CommandLine,
        plan: ClientPlan,
        listener: DataListener,
    },
    /// A transfer command (RETR, STOR, LIST, ...) relayed to the server.
    Transfer,
}

#[derive(Debug)]
struct PendingEntry {
    what: Pending,
    preliminary: u32,
}

/// One line from the client, classified.
#[derive(Debug)]
enum ClientInput {
    Command(CommandLine),
    /// A line refused by framing or parsing, with the reply it earns.
    Refused(Reply),
}

/// A reply waiting to go to the client, in order.
#[derive(Debug)]
enum Outgoing {
    Ready(Reply),
    /// A transfer's final reply: held until the transfer task has reported.
    AfterTransfer(Reply),
}

type ClientReader = FramedRead<ReadHalf<BoxedStream>, LineCodec>;
type ServerReader = FramedRead<ReadHalf<BoxedStream>, LineCodec>;

pub(crate) struct Session {
    ctx: Arc<SessionContext>,
    client_peer: SocketAddr,
    client_local: SocketAddr,
    server_peer: SocketAddr,
    server_local: SocketAddr,
    client_wr: WriteHalf<BoxedStream>,
    server_wr: WriteHalf<BoxedStream>,
    assembler: ReplyAssembler,
    pending: VecDeque<PendingEntry>,
    out: VecDeque<Outgoing>,
    plan: Option<ClientPlan>,
    transfer: Option<TransferHandle>,
    /// The outcome of a transfer whose task ended before the server's final reply came.
    finished: Option<DataEvent>,
    stash: Option<ClientInput>,
    logged_in: bool,
    epsv_all: bool,
    seen_command: bool,
    next_transfer: u64,
    data_tx: mpsc::Sender<DataEvent>,
    closing: bool,
}

/// Runs one session to its end. Never panics on input; every exit path closes both legs.
pub async fn run(ctx: Arc<SessionContext>, client: TcpStream, shutdown: CancellationToken) {
    let client_peer = client.peer_addr();
    let client_local = client.local_addr();
    let (Ok(client_peer), Ok(client_local)) = (client_peer, client_local) else {
        return;
    };
    let client: BoxedStream = Box::new(client);
    let (client_rd, mut client_wr) = tokio::io::split(client);
    let mut client_rd = FramedRead::new(client_rd, LineCodec::new(ctx.config.limits.max_line));

    let upstream = match connect_upstream(&ctx).await {
        Ok(u) => u,
        Err(reason) => {
            tracing::warn!(%reason, "upstream unavailable");
            let reply = Reply::new(421, &format!("Service not available: {reason}"));
            let _ = write_reply(&mut client_wr, &reply, ctx.config.timeouts.data_stall).await;
            let _ = client_wr.shutdown().await;
            return;
        }
    };
    let (server_stream, server_peer, server_local) = upstream;
    tracing::info!(server.addr = %server_peer, "connected upstream");
    let (server_rd, server_wr) = tokio::io::split(server_stream);
    let mut server_rd = FramedRead::new(server_rd, LineCodec::new(ctx.config.limits.max_line));

    let (data_tx, mut data_rx) = mpsc::channel(4);
    let mut session = Session {
        assembler: ReplyAssembler::new(ctx.config.limits.max_reply_lines, MAX_REPLY_BYTES),
        ctx,
        client_peer,
        client_local,
        server_peer,
        server_local,
        client_wr,
        server_wr,
        pending: VecDeque::new(),
        out: VecDeque::new(),
        plan: None,
        transfer: None,
        finished: None,
        stash: None,
        logged_in: false,
        epsv_all: false,
        seen_command: false,
        next_transfer: 0,
        data_tx,
        closing: false,
    };
    let end = session
        .drive(&mut client_rd, &mut server_rd, &mut data_rx, shutdown)
        .await;
    match &end {
        SessionEnd::ClientClosed | SessionEnd::Quit | SessionEnd::ServerClosed => {
            tracing::info!(reason = %end, "session closed")
        }
        _ => tracing::warn!(reason = %end, "session closed"),
    }
    // Dropping the transfer handle cancels a transfer still running.
    session.transfer = None;
    let _ = timeout(Duration::from_secs(2), session.client_wr.shutdown()).await;
    let _ = timeout(Duration::from_secs(2), session.server_wr.shutdown()).await;
}

async fn connect_upstream(
    ctx: &SessionContext,
) -> Result<(BoxedStream, SocketAddr, SocketAddr), String> {
    let Route::Fixed { upstreams } = &ctx.listener.route;
    let Some(upstream) = upstreams.first() else {
        return Err("no upstream configured".into());
    };
    let limit = ctx.config.timeouts.connect;
    let target = format!("{}:{}", upstream.host, upstream.port);
    let addrs: Vec<SocketAddr> = timeout(limit, tokio::net::lookup_host(target.as_str()))
        .await
        .map_err(|_| format!("resolving {upstream} timed out"))?
        .map_err(|e| format!("cannot resolve {upstream}: {e}"))?
        .collect();
    let mut last = format!("{upstream} has no address");
    for addr in addrs {
        match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().map_err(|e| e.to_string())?;
                return Ok((Box::new(stream), addr, local));
            }
            Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
            Err(_) => last = format!("connecting to {addr} timed out"),
        }
    }
    Err(last)
}

async fn write_reply(
    w: &mut WriteHalf<BoxedStream>,
    reply: &Reply,
    limit: Duration,
) -> Result<(), SessionEnd> {
    let mut buf = BytesMut::new();
    reply.encode(&mut buf);
    timeout(limit, w.write_all(&buf))
        .await
        .map_err(|_| {
            SessionEnd::ClientProtocol("client does not read its control connection".into())
        })?
        .map_err(|source| SessionEnd::Io {
            side: "client",
            source,
        })
}

impl Session {
    async fn drive(
        &mut self,
        client: &mut ClientReader,
        server: &mut ServerReader,
        data: &mut mpsc::Receiver<DataEvent>,
        shutdown: CancellationToken,
    ) -> SessionEnd {
        if let Err(end) = self.relay_banner(server, shutdown.clone()).await {
            return end;
        }
        let idle = self.ctx.config.timeouts.idle;
        let mut idle_deadline = Instant::now() + idle;
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            if self.closing && self.out.is_empty() {
                return SessionEnd::Quit;
            }
            if let Some(input) = self.take_stash() {
                if let Err(end) = self.on_input(input).await {
                    return end;
                }
                continue;
            }
            let read_client = self.can_read_client();
            let quiet = self.pending.is_empty() && self.transfer.is_none() && self.out.is_empty();
            let step = tokio::select! {
                frame = client.next(), if read_client => {
                    idle_deadline = Instant::now() + idle;
                    match frame {
                        None => Err(SessionEnd::ClientClosed),
                        Some(Err(e)) => Err(SessionEnd::Io { side: "client", source: e }),
                        Some(Ok(frame)) => self.on_client_frame(frame).await,
                    }
                }
                frame = server.next() => {
                    idle_deadline = Instant::now() + idle;
                    match frame {
                        None => Err(self.server_gone().await),
                        Some(Err(e)) => Err(SessionEnd::Io { side: "server", source: e }),
                        Some(Ok(frame)) => self.on_server_frame(frame).await,
                    }
                }
                Some(event) = data.recv() => {
                    idle_deadline = Instant::now() + idle;
                    self.on_data_event(event);
                    Ok(())
                }
                _ = sleep_until(idle_deadline), if self.transfer.is_none() => {
                    let _ = self.send_now(Reply::new(421, "Timeout: no activity, closing control connection.")).await;
                    Err(SessionEnd::Idle)
                }
                _ = shutdown.cancelled(), if quiet => {
                    let _ = self.send_now(Reply::new(421, "Service shutting down, closing control connection.")).await;
                    Err(SessionEnd::Shutdown)
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Relays the server's greeting (120s, then 220) or ends the session with its refusal.
    async fn relay_banner(
        &mut self,
        server: &mut ServerReader,
        shutdown: CancellationToken,
    ) -> Result<(), SessionEnd> {
        let deadline = Instant::now() + self.ctx.config.timeouts.banner;
        loop {
            let frame = tokio::select! {
                f = timeout(deadline.saturating_duration_since(Instant::now()), server.next()) => f,
                _ = shutdown.cancelled() => return Err(SessionEnd::Shutdown),
            };
            let reply = match frame {
                Err(_) => {
                    self.send_now(Reply::new(
                        421,
                        "Service not available: no greeting from the FTP server.",
                    ))
                    .await?;
                    return Err(SessionEnd::Upstream("no banner in time".into()));
                }
                Ok(None) => {
                    self.send_now(Reply::new(
                        421,
                        "Service not available: the FTP server closed the connection.",
                    ))
                    .await?;
                    return Err(SessionEnd::Upstream("closed before its banner".into()));
                }
                Ok(Some(Err(e))) => {
                    return Err(SessionEnd::Io {
                        side: "server",
                        source: e,
                    })
                }
                Ok(Some(Ok(frame))) => match self.assemble(frame).await? {
                    Some(r) => r,
                    None => continue,
                },
            };
            let code = reply.code;
            self.send_now(reply).await?;
            match code {
                120 => continue,
                220 => return Ok(()),
                _ => {
                    return Err(SessionEnd::Upstream(format!(
                        "server refused the session with {code}"
                    )))
                }
            }
        }
    }

    fn can_read_client(&self) -> bool {
        if self.closing || self.stash.is_some() {
            return false;
        }
        let idle = self.pending.is_empty()
            && self.out.is_empty()
            && self.transfer.is_none()
            && self.finished.is_none();
        // During a transfer the client may ABOR; anything else goes to the stash.
        idle || (self.transfer.is_some() && self.pending.len() < MAX_PENDING)
    }

    fn take_stash(&mut self) -> Option<ClientInput> {
        let idle = self.pending.is_empty() && self.out.is_empty() && self.transfer.is_none();
        if idle {
            self.stash.take()
        } else {
            None
        }
    }

    async fn on_client_frame(&mut self, frame: Frame) -> Result<(), SessionEnd> {
        let input = match frame {
            Frame::Line(line) => {
                let first = !self.seen_command;
                self.seen_command = true;
                if first && crate::proto::command::looks_like_http(&line) {
                    self.send_now(Reply::new(421, "This is an FTP proxy, not an HTTP proxy."))
                        .await?;
                    return Err(SessionEnd::ClientProtocol(
                        "HTTP request on the control port".into(),
                    ));
                }
                match CommandLine::parse(line) {
                    Ok(cmd) => ClientInput::Command(cmd),
                    Err(e) => {
                        tracing::debug!(error = %e, "unparseable command");
                        ClientInput::Refused(Reply::new(500, "Syntax error, command unrecognized."))
                    }
                }
            }
            Frame::Rejected(e) => {
                tracing::info!(error = %e, "client line rejected");
                ClientInput::Refused(Reply::new(500, &format!("Command line rejected: {e}.")))
            }
        };
        match input {
            // A transfer is running: only ABOR acts now; anything else waits its turn so
            // that replies stay in command order.
            ClientInput::Command(cmd) if self.transfer.is_some() && cmd.verb == Verb::Abor => {
                self.on_input(ClientInput::Command(cmd)).await
            }
            input if self.transfer.is_some() => {
                self.stash = Some(input);
                Ok(())
            }
            input => self.on_input(input).await,
        }
    }

    async fn on_input(&mut self, input: ClientInput) -> Result<(), SessionEnd> {
        match input {
            ClientInput::Command(cmd) => self.on_command(cmd).await,
            ClientInput::Refused(reply) => self.send_now(reply).await,
        }
    }

    async fn on_server_frame(&mut self, frame: Frame) -> Result<(), SessionEnd> {
        if let Some(reply) = self.assemble(frame).await? {
            self.on_reply(reply).await?;
        }
        Ok(())
    }

    async fn assemble(&mut self, frame: Frame) -> Result<Option<Reply>, SessionEnd> {
        let outcome = match frame {
            Frame::Line(line) => self.assembler.push(line).map_err(|e| e.to_string()),
            Frame::Rejected(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(r) => Ok(r),
            Err(reason) => {
                self.out.clear();
                self.send_now(Reply::new(
                    421,
                    "Service not available: invalid reply from the FTP server.",
                ))
                .await?;
                Err(SessionEnd::ServerProtocol(reason))
            }
        }
    }

    fn on_data_event(&mut self, event: DataEvent) {
        match &self.transfer {
            Some(t) if t.id == event.id => {
                self.transfer = None;
                self.finished = Some(event);
                self.release_held();
            }
            _ => tracing::debug!(data.id = event.id, "event from a superseded transfer"),
        }
    }

    /// Turns a held transfer reply into a ready one once the transfer has reported. A
    /// success reply from the server becomes 425/426 if the data relay failed: no client
    /// ever sees 226 for a truncated file.
    fn release_held(&mut self) {
        let Some(pos) = self
            .out
            .iter()
            .position(|o| matches!(o, Outgoing::AfterTransfer(_)))
        else {
            return;
        };
        let Some(event) = self.finished.take() else {
            return;
        };
        if let Some(Outgoing::AfterTransfer(reply)) = self.out.remove(pos) {
            let reply = match &event.result {
                Err(e) if reply.class() == 2 || reply.is_preliminary() => {
                    if e.is_setup() {
                        Reply::new(425, &format!("Can't open data connection: {e}."))
                    } else {
                        Reply::new(426, &format!("Connection closed; transfer aborted: {e}."))
                    }
                }
                _ => reply,
            };
            tracing::info!(bytes = event.bytes, code = reply.code, "transfer finished");
            self.out.insert(pos, Outgoing::Ready(reply));
        }
    }

    /// Sends every reply at the head of the queue that is ready.
    async fn flush(&mut self) -> Result<(), SessionEnd> {
        while let Some(Outgoing::Ready(_)) = self.out.front() {
            if let Some(Outgoing::Ready(reply)) = self.out.pop_front() {
                self.write_client(&reply).await?;
            }
        }
        Ok(())
    }

    /// Queues a reply to the client behind anything already queued, then flushes.
    async fn send_now(&mut self, reply: Reply) -> Result<(), SessionEnd> {
        self.out.push_back(Outgoing::Ready(reply));
        self.flush().await
    }

    async fn write_client(&mut self, reply: &Reply) -> Result<(), SessionEnd> {
        write_reply(
            &mut self.client_wr,
            reply,
            self.ctx.config.timeouts.data_stall,
        )
        .await
    }

    async fn write_server(&mut self, line: &[u8]) -> Result<(), SessionEnd> {
        let mut buf = BytesMut::with_capacity(line.len() + 2);
        encode_line(line, &mut buf);
        timeout(
            self.ctx.config.timeouts.data_stall,
            self.server_wr.write_all(&buf),
        )
        .await
        .map_err(|_| {
            SessionEnd::ServerProtocol("server does not read its control connection".into())
        })?
        .map_err(|source| SessionEnd::Io {
            side: "server",
            source,
        })
    }

    async fn server_gone(&mut self) -> SessionEnd {
        if self.closing
            || self
                .pending
                .iter()
                .any(|p| matches!(p.what, Pending::Relay(Verb::Quit)))
        {
            return SessionEnd::Quit;
        }
        let _ = self.flush().await;
        let _ = self
            .write_client(&Reply::new(
                421,
                "Service not available, the FTP server closed the connection.",
            ))
            .await;
        SessionEnd::ServerClosed
    }
}
