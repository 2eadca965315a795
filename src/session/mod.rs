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
//! answered, except while a transfer runs: then the client is read on, ABOR stops the
//! transfer at once, and every command (ABOR included, when others wait before it) waits
//! in a stash of at most `limits.max_queued_commands`, answered in order afterwards.

mod commands;
mod forward;
pub mod policy;
mod replies;

use crate::config::{Config, ListenerConfig, RouteKind};
use crate::data::{DataEvent, DataListener, PortPool, RateLimit, Throttle, TransferHandle};
use crate::metrics::Metrics;
use crate::proto::command::{CommandLine, Verb};
use crate::proto::line::{encode_line, Frame, LineCodec};
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::route::Router;
use crate::stream::BoxedStream;
use bytes::BytesMut;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::net::IpAddr;
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

/// What every session of a listener shares.
#[derive(Debug)]
pub struct SessionContext {
    pub config: Arc<Config>,
    pub listener: ListenerConfig,
    pub passive_pool: Arc<PortPool>,
    pub active_pool: Arc<PortPool>,
    pub metrics: Arc<Metrics>,
    pub router: Arc<Router>,
    /// ftpgate's own addresses: never a destination unless policy names them.
    pub own_addrs: Arc<Vec<IpAddr>>,
    /// `limits.rate_total`, shared by every transfer of every listener.
    pub rate_total: Option<Arc<RateLimit>>,
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
    Upstream(crate::route::UpstreamError),
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
    /// ftpgate's own PASV/EPSV (no listener) or PORT/EPRT (with the listener it named)
    /// towards the server. With `then`, the transfer command to send once it is
    /// accepted; without, the result is kept as the prepared server leg.
    ServerSetup {
        listener: Option<DataListener>,
        then: Option<Box<(CommandLine, ClientPlan)>>,
    },
    /// A transfer command (RETR, STOR, LIST, ...) relayed to the server.
    Transfer,
    /// A command whose reply the client already has from ftpgate (a transfer that failed
    /// on our side, or our ABOR after it): the server's replies to it are dropped.
    Swallow,
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

pub(crate) type ClientReader = FramedRead<ReadHalf<BoxedStream>, LineCodec>;
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
    stash: VecDeque<ClientInput>,
    logged_in: bool,
    epsv_all: bool,
    seen_command: bool,
    next_transfer: u64,
    data_tx: mpsc::Sender<DataEvent>,
    closing: bool,
    login_deadline: Instant,
    /// The server side of the next transfer, set up while the client still connects
    /// (ftpgate asks the server as soon as the client sends PASV/EPSV/PORT/EPRT).
    server_prep: Option<Result<crate::data::ServerLeg, String>>,
    /// When an unused data setup is let go: a passive listener (with the plan) after
    /// `data_accept`, and the prepared server leg with it (a PORT plan itself stays).
    plan_expires: Option<Instant>,
    /// Bytes from the client were already buffered behind the current command.
    client_buffered: bool,
    /// The bandwidth buckets this session's transfers pay into.
    throttle: Throttle,
    /// Set when a transfer has ended and its final reply is still due.
    final_deadline: Option<Instant>,
}

/// Runs one session to its end. Never panics on input; every exit path closes both legs.
pub async fn run(ctx: Arc<SessionContext>, client: TcpStream, shutdown: CancellationToken) {
    let (Ok(client_peer), Ok(client_local)) = (client.peer_addr(), client.local_addr()) else {
        return;
    };
    let login_deadline = Instant::now() + ctx.config.timeouts.login;
    let destination = match ctx.router.config.kind {
        RouteKind::Transparent => Some(crate::route::original_destination(
            &client,
            ctx.router.config.tproxy,
        )),
        _ => None,
    };
    let client: BoxedStream = Box::new(crate::stream::UrgentSafe(client));
    let (client_rd, mut client_wr) = tokio::io::split(client);
    let mut client_rd = FramedRead::new(client_rd, LineCodec::new(ctx.config.limits.max_line));

    let opened = tokio::select! {
        r = open_server(&ctx, client_peer, client_local, destination, &mut client_rd, &mut client_wr, login_deadline) => r,
        _ = shutdown.cancelled() => Err(SessionEnd::Shutdown),
    };
    let (conn, forward_user) = match opened {
        Ok(x) => x,
        Err(end) => {
            log_end(&end);
            let _ = timeout(Duration::from_secs(2), client_wr.shutdown()).await;
            return;
        }
    };
    tracing::info!(server.addr = %conn.peer, "connected upstream");
    let crate::route::ServerLegConn {
        reader: mut server_rd,
        writer: server_wr,
        peer: server_peer,
        local: server_local,
        banner,
        _lease,
    } = conn;
    let (data_tx, mut data_rx) = mpsc::channel(4);
    let limits = &ctx.config.limits;
    let mut session = Session {
        assembler: ReplyAssembler::new(limits.max_reply_lines, limits.max_reply_bytes),
        ctx: Arc::clone(&ctx),
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
        stash: VecDeque::new(),
        logged_in: false,
        epsv_all: false,
        seen_command: forward_user.is_some(),
        next_transfer: 0,
        data_tx,
        closing: false,
        login_deadline,
        client_buffered: false,
        plan_expires: None,
        server_prep: None,
        throttle: Throttle::new(
            limits
                .rate_per_session
                .map(RateLimit::new)
                .into_iter()
                .chain(ctx.rate_total.clone()),
        ),
        final_deadline: None,
    };
    let started = match forward_user {
        // Forward proxy: the client was greeted by ftpgate; replay its login.
        Some(user) => {
            let mut line = b"USER ".to_vec();
            line.extend_from_slice(&user);
            session.forward_raw(&line, Pending::Relay(Verb::User)).await
        }
        None => {
            let mut r = Ok(());
            for reply in banner {
                r = session.send_now(reply).await;
                if r.is_err() {
                    break;
                }
            }
            r
        }
    };
    let end = match started {
        Err(end) => end,
        Ok(()) => {
            session
                .drive(&mut client_rd, &mut server_rd, &mut data_rx, shutdown)
                .await
        }
    };
    log_end(&end);
    // Dropping the transfer handle cancels a transfer still running.
    session.transfer = None;
    let _ = timeout(Duration::from_secs(2), session.client_wr.shutdown()).await;
    let _ = timeout(Duration::from_secs(2), session.server_wr.shutdown()).await;
}

fn log_end(end: &SessionEnd) {
    match end {
        SessionEnd::ClientClosed | SessionEnd::Quit | SessionEnd::ServerClosed => {
            tracing::info!(reason = %end, "session closed")
        }
        _ => tracing::warn!(reason = %end, "session closed"),
    }
}

/// Finds and opens the server leg for this session's route. On failure the client has
/// already been told why (421/530).
async fn open_server(
    ctx: &SessionContext,
    client_peer: SocketAddr,
    client_local: SocketAddr,
    destination: Option<std::io::Result<SocketAddr>>,
    client_rd: &mut ClientReader,
    client_wr: &mut WriteHalf<BoxedStream>,
    login_deadline: Instant,
) -> Result<(crate::route::ServerLegConn, Option<Vec<u8>>), SessionEnd> {
    let targets = match (ctx.router.config.kind, destination) {
        (RouteKind::UserAtHost, _) => {
            let (conn, user) = forward::login(ctx, client_rd, client_wr, login_deadline).await?;
            return Ok((conn, Some(user)));
        }
        (RouteKind::Fixed, _) => ctx
            .router
            .candidates(client_peer.ip())
            .into_iter()
            .map(crate::route::Target::Upstream)
            .collect::<Vec<_>>(),
        (RouteKind::Transparent, Some(Ok(dest)))
            if dest != client_local || ctx.router.config.tproxy =>
        {
            // Under TPROXY our local address IS the destination: not "our own" here.
            let own: Vec<IpAddr> = ctx
                .own_addrs
                .iter()
                .copied()
                .filter(|ip| *ip != dest.ip())
                .collect();
            if let Err(reason) =
                crate::policy::server_allowed(&ctx.listener.acl.servers, dest, &own)
            {
                let host = dest.ip().to_string();
                let e = crate::route::UpstreamError::DestinationRefused { host, reason };
                return Err(refuse(ctx, client_wr, e).await);
            }
            vec![crate::route::Target::Addr(dest)]
        }
        (RouteKind::Transparent, _) => {
            let e = crate::route::UpstreamError::NotIntercepted;
            return Err(refuse(ctx, client_wr, e).await);
        }
    };
    match crate::route::upstream::open(&ctx.router, &forward::dial_params(ctx), &targets).await {
        Ok(conn) => Ok((conn, None)),
        Err(reason) => Err(refuse(ctx, client_wr, reason).await),
    }
}

async fn refuse(
    ctx: &SessionContext,
    w: &mut WriteHalf<BoxedStream>,
    reason: crate::route::UpstreamError,
) -> SessionEnd {
    tracing::warn!(%reason, side = %reason.side(), "session refused");
    let reply = Reply::new(
        421,
        &format!("Service not available: {}.", reason.client_text()),
    );
    let _ = write_reply(w, &reply, ctx.config.timeouts.data_stall).await;
    SessionEnd::Upstream(reason)
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
            // A complete server line already buffered is handled before the next client
            // command is read: an unsolicited reply that came with (or before) the last
            // one must not be paired with a command sent after it (SECURITY.md 6).
            let read_client = self.can_read_client() && !server.read_buffer().contains(&b'\n');
            let quiet = self.is_quiet();
            let step = tokio::select! {
                frame = client.next(), if read_client => {
                    idle_deadline = Instant::now() + idle;
                    match frame {
                        None => Err(SessionEnd::ClientClosed),
                        Some(Err(e)) => Err(SessionEnd::Io { side: "client", source: e }),
                        Some(Ok(frame)) => {
                            self.client_buffered = !client.read_buffer().is_empty();
                            self.on_client_frame(frame).await
                        }
                    }
                }
                frame = server.next() => {
                    // A line of a multi-line reply still open is not activity: a server
                    // trickling an endless reply must not hold the session past `idle`.
                    let step = match frame {
                        None => Err(self.server_gone().await),
                        Some(Err(e)) => Err(SessionEnd::Io { side: "server", source: e }),
                        Some(Ok(frame)) => self.on_server_frame(frame).await,
                    };
                    if !self.assembler.in_progress() {
                        idle_deadline = Instant::now() + idle;
                    }
                    step
                }
                Some(event) = data.recv() => {
                    idle_deadline = Instant::now() + idle;
                    self.on_data_event(event).await
                }
                _ = sleep_until(idle_deadline), if self.transfer.is_none() => {
                    let _ = self.send_now(Reply::new(421, "Timeout: no activity, closing control connection.")).await;
                    Err(SessionEnd::Idle)
                }
                _ = sleep_until(self.plan_expires.unwrap_or(idle_deadline)), if self.plan_expires.is_some() => {
                    tracing::debug!("unused data setup released after data_accept");
                    if matches!(self.plan, Some(ClientPlan::Passive(_))) {
                        self.plan = None;
                    }
                    // A later transfer sets up the server side afresh.
                    self.server_prep = None;
                    self.plan_expires = None;
                    Ok(())
                }
                _ = sleep_until(self.login_deadline), if !self.logged_in => {
                    let _ = self.send_now(Reply::new(421, "Login timeout, closing control connection.")).await;
                    Err(SessionEnd::ClientProtocol("no login in time".into()))
                }
                _ = sleep_until(self.final_deadline.unwrap_or(idle_deadline)), if self.final_deadline.is_some() => {
                    self.out.clear();
                    let _ = self.send_now(Reply::new(421, "No final reply from the FTP server after the transfer.")).await;
                    Err(SessionEnd::ServerProtocol("final reply timeout".into()))
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

    fn can_read_client(&self) -> bool {
        let max = self.ctx.config.limits.max_queued_commands;
        if self.closing || self.stash.len() >= max || self.pending.len() >= max {
            return false;
        }
        if self.transfer.is_some() {
            // The client may ABOR; anything else is stashed.
            return true;
        }
        if !self.stash.is_empty() {
            return false;
        }
        // (No transfer here.) After a failed one the client may QUIT while the server
        // catches up.
        self.is_quiet() || self.orphaned()
    }

    fn take_stash(&mut self) -> Option<ClientInput> {
        if self.is_quiet() {
            self.stash.pop_front()
        } else {
            None
        }
    }

    /// Nothing in flight: no command awaiting the server, no transfer, no reply queued.
    fn is_quiet(&self) -> bool {
        self.pending.is_empty() && self.transfer.is_none() && self.out.is_empty()
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
                if self.stash.is_empty() {
                    return self.on_input(ClientInput::Command(cmd)).await;
                }
                // Stop the data now; the ABOR itself is answered after the commands the
                // client sent before it.
                if let Some(t) = &self.transfer {
                    t.cancel();
                }
                self.stash.push_back(ClientInput::Command(cmd));
                Ok(())
            }
            ClientInput::Command(cmd) if self.orphaned() && cmd.verb == Verb::Quit => {
                self.send_now(Reply::new(221, "Goodbye.")).await?;
                Err(SessionEnd::Quit)
            }
            input if self.transfer.is_some() || self.orphaned() => {
                self.stash.push_back(input);
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

    async fn on_data_event(&mut self, event: DataEvent) -> Result<(), SessionEnd> {
        match &self.transfer {
            Some(t) if t.id == event.id => self.transfer = None,
            _ => {
                tracing::debug!(data.id = event.id, "event from a superseded transfer");
                return Ok(());
            }
        }
        let awaiting = self
            .pending
            .iter()
            .position(|p| matches!(p.what, Pending::Transfer));
        let Some(pos) = awaiting else {
            // The server's final reply came first and is held: release it.
            self.finished = Some(event);
            self.release_held();
            return Ok(());
        };
        self.final_deadline = Some(Instant::now() + self.ctx.config.timeouts.final_reply);
        let Err(e) = &event.result else {
            self.finished = Some(event);
            return Ok(());
        };
        // The transfer failed on our side: the client learns it now, not when (or if) the
        // server gets round to its own reply, which is dropped when it comes. An ABOR
        // makes a server that still waits for its data connection give up.
        let reply = failure_reply(e);
        tracing::info!(bytes = event.bytes, code = reply.code, error = %e, "transfer failed");
        self.out.push_back(Outgoing::Ready(reply));
        if let Some(p) = self.pending.get_mut(pos) {
            p.what = Pending::Swallow;
        }
        let client_aborted = self
            .pending
            .iter()
            .any(|p| matches!(p.what, Pending::Relay(Verb::Abor)));
        if !client_aborted {
            self.forward_raw(b"ABOR", Pending::Swallow).await?;
        }
        Ok(())
    }

    /// Waiting only for replies the client will never see: it may quit meanwhile.
    fn orphaned(&self) -> bool {
        !self.pending.is_empty()
            && self
                .pending
                .iter()
                .all(|p| matches!(p.what, Pending::Swallow))
            && self.transfer.is_none()
            && self.out.is_empty()
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
                // A data connection that never came up: whatever the server made of it, the
                // client learns the real reason. A failed relay never shows as success.
                Err(e) if e.is_setup() || reply.class() == 2 => failure_reply(e),
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

/// What the client is told when a transfer failed on ftpgate's side.
fn failure_reply(e: &crate::data::DataError) -> Reply {
    if e.is_setup() {
        Reply::new(425, &format!("Can't open data connection: {e}."))
    } else {
        Reply::new(426, &format!("Connection closed; transfer aborted: {e}."))
    }
}
