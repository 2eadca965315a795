//! The control session's decisions, without I/O (the sans-IO pattern of quinn-proto's
//! `Connection`): [`Core::handle`] takes one [`Input`] (a client line, a server line, a data
//! task's report, the clock, a shutdown) with `now`, and queues [`Action`]s (a reply to the
//! client, a line to the server, start/go/cancel a transfer, close) that the driver drains
//! with [`Core::poll_action`] and performs in order. [`Core::next_deadline`] is when the
//! driver must call again with [`Input::Tick`]. No socket, task or clock lives here, so
//! every rule below has a table test (`tests.rs`) with a fake clock and fake ports.
//!
//! The one capability the core uses directly is [`Ports`]: binding a data listener is
//! synchronous and local, and the core holds the listener it gets as an opaque value that
//! it moves into a transfer or drops (dropping it returns the port to the pool), so a
//! port can never leak on any path.
//!
//! Where the session is, is one [`Phase`]: login (before the server's 230, and again after
//! a new `USER` or `REIN`), ready, a transfer in flight, closing. Besides the phase the core
//! keeps the queues that the protocol itself has (RFC 959): commands sent to the server
//! whose final reply is due (`pending`), replies to the client in order (`out`), client
//! commands waiting their turn while a transfer runs (`stash`), and the data setup the
//! client asked for (PASV/EPSV/PORT/EPRT) with the server side prepared for it.
//!
//! Flow control is lockstep: a new client command is read only once every earlier one is
//! answered, except while a transfer runs: then the client is read on, ABOR stops the
//! transfer at once, and every command (ABOR included, when others wait before it) waits
//! in the stash, answered in order afterwards.

mod client;
mod record;
mod server;
#[cfg(test)]
mod tests;
mod tls;

use super::error::{ClientFault, ServerFault, SessionEnd};
use super::security::ClientSecurity;
use crate::config::{Config, ListenerConfig};
use crate::data::{ClientLeg, DataError, DataEvent, PortError, ServerLeg};
use crate::metrics::families::Refusal;
use crate::proto::command::{CommandLine, Direction, Verb};
use crate::proto::line::Frame;
use crate::proto::reply::{Reply, ReplyAssembler};
use bytes::Bytes;
pub use record::TransferRecord;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Most 1xx replies accepted for one command before the server is deemed broken.
const MAX_PRELIMINARY: u32 = 16;

/// The four ends of the two control connections.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub client_peer: SocketAddr,
    pub client_local: SocketAddr,
    pub server_peer: SocketAddr,
    pub server_local: SocketAddr,
}

/// Which pool a data listener comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// `data.passive_ports`: the client connects to it (PASV/EPSV).
    Passive,
    /// `data.server_active_ports`: the server connects to it (ftpgate's PORT/EPRT).
    Active,
}

/// A bound data listener as the core sees it: an address, and a port that is released
/// when the value is dropped.
pub trait Listening: std::fmt::Debug {
    fn addr(&self) -> SocketAddr;
    /// `data.path: kernel`: install the mapping of this passive port's client
    /// connection to `p` for as long as the listener lives.
    fn premap(&mut self, p: Premap);
}

impl Listening for crate::data::DataListener {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn premap(&mut self, p: Premap) {
        self.premap = crate::kernel::premap(p.peer, self.addr, p.target, p.source);
    }
}

/// Binds data listeners for the core.
pub trait Ports {
    type Listener: Listening;
    fn listen(&mut self, pool: Pool, ip: IpAddr) -> Result<Self::Listener, PortError>;
}

/// Where TLS stands on the two control connections when the core starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Secured {
    pub client: ClientSecurity,
    /// The server leg is TLS already (implicit).
    pub server: bool,
}

/// How the session starts once the server leg is open.
#[derive(Debug)]
pub enum Start {
    /// Relay the server's greeting (any 120s, then the 220).
    Banner(Vec<Reply>),
    /// Forward proxy: ftpgate greeted the client itself; replay its `USER` to the server.
    ForwardUser(Vec<u8>),
}

/// Something that happened, for [`Core::handle`].
#[derive(Debug)]
pub enum Input {
    /// A line from the client; `more_buffered`: more client bytes were already read behind
    /// it (pipelined), which matters after AUTH.
    Client { frame: Frame, more_buffered: bool },
    /// The client closed its control connection.
    ClientClosed,
    /// A line from the server.
    Server(Frame),
    /// The server closed its control connection.
    ServerClosed,
    /// A data task ended.
    Data(DataEvent),
    /// The clock reached [`Core::next_deadline`] (or any time: early ticks are harmless).
    Tick,
    /// The process is shutting down: close once nothing is in flight.
    Shutdown,
    /// The client's TLS handshake after [`Action::SecureClient`] ended; `Err` has why.
    ClientSecured(Result<(), crate::tls::TlsError>),
    /// The server's TLS handshake after [`Action::SecureServer`] ended.
    ServerSecured(Result<(), crate::tls::TlsError>),
}

/// Both legs of a transfer, decided and checked; the driver opens them.
#[derive(Debug)]
pub struct TransferPlan<L> {
    pub id: u64,
    pub direction: Direction,
    pub client: ClientLeg<L>,
    pub server: ServerLeg<L>,
    /// The client's data connection is TLS (it sent `PROT P`).
    pub client_tls: bool,
    /// The server's data connection is TLS (ftpgate sent it `PROT P`).
    pub server_tls: bool,
}

/// The passive client's expected data connection and where it goes on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Premap {
    pub peer: std::net::IpAddr,
    pub target: SocketAddr,
    pub source: std::net::IpAddr,
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Action<L> {
    /// Write this reply to the client.
    ToClient(Reply),
    /// Write this line (without CRLF) to the server.
    ToServer(Bytes),
    /// Start a data task.
    StartTransfer(TransferPlan<L>),
    /// The server accepted the transfer command: an active-mode client may be contacted.
    GoTransfer(u64),
    /// Stop the transfer; its task still reports a `DataEvent`.
    CancelTransfer(u64),
    /// End the session after performing every earlier action.
    Close(SessionEnd),
    /// The client was told 234: run the TLS handshake on its control connection (closing
    /// the session if it had sent anything more in plaintext), then report
    /// [`Input::ClientSecured`].
    SecureClient,
    /// The server said 234: the same on the server's control connection, then
    /// [`Input::ServerSecured`].
    SecureServer,
}

/// Where the session is.
#[derive(Debug)]
enum Phase {
    /// Not logged in: before the server's 230, and again after `REIN` or a new `USER`.
    /// Data commands get 530. `user_sent`: a `USER` went out in this phase.
    Login { deadline: Instant, user_sent: bool },
    /// Logged in, no transfer in flight.
    Ready,
    /// A transfer command went to the server and its data task was started. `outcome` is
    /// `None` while the task runs, then the task's report until the final reply pairs it.
    Transfer { id: u64, outcome: Option<DataEvent> },
    /// The server answered QUIT: queued replies go out, then the session ends.
    Closing,
    /// Close was queued; nothing else happens.
    Closed,
}

/// How the client asked for its next data connection.
#[derive(Debug)]
enum ClientPlan<L> {
    /// PASV/EPSV: the client will connect to this listener.
    Passive(L),
    /// PORT/EPRT: ftpgate will connect to this (already checked) address.
    Active(SocketAddr),
}

/// Why the server side of a transfer could not be set up. The client hears only
/// [`SetupError::client_text`]; the log has the detail.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the FTP server refused active mode ({0})")]
    ActiveRefused(u16),
    #[error("the FTP server refused passive mode ({0})")]
    PassiveRefused(u16),
    #[error("invalid passive reply from the FTP server: {0}")]
    BadPassiveReply(crate::proto::hostport::AddrError),
    #[error("server passive address refused: {0}")]
    PassiveTarget(super::policy::TargetError),
    #[error("no port for the server's data connection: {0}")]
    NoPort(PortError),
}

impl SetupError {
    pub fn client_text(&self) -> &'static str {
        match self {
            SetupError::ActiveRefused(_) => "the FTP server refused active mode",
            SetupError::PassiveRefused(_) => "the FTP server refused passive mode",
            SetupError::BadPassiveReply(_) | SetupError::PassiveTarget(_) => {
                "the FTP server's passive reply was refused"
            }
            SetupError::NoPort(_) => "no free port for the FTP server's data connection",
        }
    }
}

/// A command sent to the server whose final reply is still due.
#[derive(Debug)]
enum Pending<L> {
    /// A client command; the final reply is relayed (after `Verb`-specific bookkeeping).
    Relay(Verb),
    /// ftpgate's own PASV/EPSV (no listener) or PORT/EPRT (with the listener it named)
    /// towards the server. With `then`, the transfer command to send once it is
    /// accepted; without, the result is kept as the prepared server leg.
    ServerSetup {
        listener: Option<L>,
        then: Option<Box<(CommandLine, ClientPlan<L>)>>,
    },
    /// A transfer command (RETR, STOR, LIST, ...) relayed to the server.
    Transfer,
    /// A command whose reply the client already has from ftpgate (a transfer that failed
    /// on our side, or our ABOR after it): the server's replies to it are dropped.
    Swallow,
    /// ftpgate's own `AUTH TLS`, `PBSZ 0` or `PROT` towards the server.
    Secure(tls::SecureStep),
}

#[derive(Debug)]
struct PendingEntry<L> {
    what: Pending<L>,
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
    /// `data.path: kernel`: a passive client's 227/229, held until the server's data
    /// address is known and the kernel mapping can be installed before the client
    /// (which may connect at once) learns the port.
    Passive(Reply),
    /// A transfer's final reply: held until the transfer task has reported.
    AfterTransfer(Reply),
}

/// The session's state machine. See the module docs.
#[derive(Debug)]
pub struct Core<P: Ports> {
    config: Arc<Config>,
    listener: Arc<ListenerConfig>,
    addrs: Addrs,
    ports: P,
    phase: Phase,
    assembler: ReplyAssembler,
    pending: VecDeque<PendingEntry<P::Listener>>,
    out: VecDeque<Outgoing>,
    stash: VecDeque<ClientInput>,
    plan: Option<ClientPlan<P::Listener>>,
    /// The server side of the next transfer, set up while the client still connects
    /// (ftpgate asks the server as soon as the client sends PASV/EPSV/PORT/EPRT).
    server_prep: Option<Result<ServerLeg<P::Listener>, SetupError>>,
    /// RFC 2428 `EPSV ALL`: PASV, PORT and EPRT are refused until REIN.
    epsv_all: bool,
    /// The first client line was seen (an HTTP request line there closes the session).
    first_line_seen: bool,
    /// More client bytes were buffered behind the command being handled.
    client_buffered: bool,
    next_transfer: u64,
    now: Instant,
    idle_deadline: Instant,
    /// When an unused data setup is let go: a passive listener (with the plan) after
    /// `data_accept`, and the prepared server leg with it (a PORT plan itself stays).
    plan_expires: Option<Instant>,
    /// Set when a transfer has ended and its final reply is still due.
    final_deadline: Option<Instant>,
    shutdown: bool,
    actions: VecDeque<Action<P::Listener>>,
    client_tls: ClientSecurity,
    server_tls: tls::ServerSecurity,
    /// What to do once the server leg is secured (its `AUTH TLS` is in flight).
    after_secure: Option<tls::AfterSecure>,
    /// A Secure action was queued and its handshake's outcome is not in yet.
    handshaking: bool,
    /// Refusals since the driver last asked ([`Core::take_refusals`]): counted, not acted on.
    refusals: Vec<Refusal>,
    /// The running transfer's facts, and the finished ones not yet taken.
    in_flight: Option<record::InFlight>,
    records: Vec<TransferRecord>,
    /// The last `USER` name sent, and whether `TYPE A` is in force (for the records).
    user: Option<Vec<u8>>,
    ascii: bool,
    /// A `TYPE` is in flight: `Some(ascii)` until the server's answer.
    type_sent: Option<bool>,
}

impl<P: Ports> Core<P> {
    /// A session whose server leg is open. `login_deadline` counts from the client's
    /// connect, not from now. `secured` is where TLS stands on the two legs already
    /// (implicit TLS, or the forward-proxy login's `AUTH`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        listener: Arc<ListenerConfig>,
        addrs: Addrs,
        ports: P,
        start: Start,
        secured: Secured,
        login_deadline: Instant,
        now: Instant,
    ) -> Core<P> {
        let limits = &config.limits;
        let mut core = Core {
            assembler: ReplyAssembler::new(limits.max_reply_lines, limits.max_reply_bytes),
            idle_deadline: now + config.timeouts.idle,
            config,
            listener,
            addrs,
            ports,
            phase: Phase::Login {
                deadline: login_deadline,
                user_sent: false,
            },
            pending: VecDeque::new(),
            out: VecDeque::new(),
            stash: VecDeque::new(),
            plan: None,
            server_prep: None,
            epsv_all: false,
            first_line_seen: false,
            client_buffered: false,
            next_transfer: 0,
            now,
            plan_expires: None,
            final_deadline: None,
            shutdown: false,
            actions: VecDeque::new(),
            refusals: Vec::new(),
            in_flight: None,
            records: Vec::new(),
            user: None,
            ascii: false,
            type_sent: None,
            client_tls: secured.client,
            server_tls: tls::ServerSecurity {
                tls: secured.server,
                private: false,
            },
            after_secure: None,
            handshaking: false,
        };
        if let Start::ForwardUser(_) = start {
            // The client was greeted (and spoke) before the server leg opened.
            core.first_line_seen = true;
        }
        if core.server_needs_auth() {
            core.secure_server(tls::AfterSecure::Start(start));
        } else if core.server_tls.tls {
            // Implicit TLS: the handshake came before the greeting; PBSZ and PROT still
            // come before anything of the client's.
            core.after_secure = Some(tls::AfterSecure::Start(start));
            core.send_pbsz();
        } else {
            core.begin(start);
        }
        core.settle();
        core
    }

    /// Relays the greeting, or replays the forward proxy's `USER`.
    fn begin(&mut self, start: Start) {
        match start {
            Start::Banner(replies) => {
                for reply in replies {
                    self.send(reply);
                }
            }
            Start::ForwardUser(user) => {
                let deadline = match self.phase {
                    Phase::Login { deadline, .. } => deadline,
                    _ => self.now + self.config.timeouts.login,
                };
                self.phase = Phase::Login {
                    deadline,
                    user_sent: true,
                };
                self.user = Some(user.clone());
                let mut line = b"USER ".to_vec();
                line.extend_from_slice(&user);
                self.forward_raw(Bytes::from(line), Pending::Relay(Verb::User));
            }
        }
    }

    /// Feeds one input; then drain [`Core::poll_action`].
    pub fn handle(&mut self, input: Input, now: Instant) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.now = now;
        match input {
            Input::Client {
                frame,
                more_buffered,
            } => {
                self.idle_deadline = now + self.config.timeouts.idle;
                self.client_buffered = more_buffered;
                self.on_client_frame(frame);
            }
            Input::ClientClosed => self.close(SessionEnd::ClientClosed),
            Input::Server(frame) => {
                self.on_server_frame(frame);
                // A line of a multi-line reply still open is not activity: a server
                // trickling an endless reply must not hold the session past `idle`.
                if !self.assembler.in_progress() {
                    self.idle_deadline = now + self.config.timeouts.idle;
                }
            }
            Input::ServerClosed => self.server_gone(),
            Input::Data(event) => {
                self.idle_deadline = now + self.config.timeouts.idle;
                self.on_data_event(event);
            }
            Input::Tick => self.on_tick(),
            Input::Shutdown => self.shutdown = true,
            Input::ClientSecured(result) => {
                self.idle_deadline = now + self.config.timeouts.idle;
                self.on_client_secured(result);
            }
            Input::ServerSecured(result) => self.on_server_secured(result),
        }
        self.settle();
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action<P::Listener>> {
        self.actions.pop_front()
    }

    /// The session's four control-connection endpoints.
    pub fn addrs(&self) -> &Addrs {
        &self.addrs
    }

    /// What the core refused since the last call, for `ftpgate_refusals_total`.
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    /// When the driver must feed [`Input::Tick`]; `None` once closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        let idle = (!self.transfer_running()).then_some(self.idle_deadline);
        let login = match self.phase {
            Phase::Login { deadline, .. } => Some(deadline),
            _ => None,
        };
        [idle, login, self.plan_expires, self.final_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the driver should read the next client line now.
    pub fn wants_client(&self) -> bool {
        let max = self.config.limits.max_queued_commands;
        if matches!(self.phase, Phase::Closing | Phase::Closed)
            || self.stash.len() >= max
            || self.pending.len() >= max
        {
            return false;
        }
        if self.transfer_running() {
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

    /// Logged in (the server's 230 came and no `USER`/`REIN` since).
    pub fn logged_in(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Transfer { .. })
    }

    fn transfer_running(&self) -> bool {
        matches!(self.phase, Phase::Transfer { outcome: None, .. })
    }

    fn running_id(&self) -> Option<u64> {
        match self.phase {
            Phase::Transfer { id, outcome: None } => Some(id),
            _ => None,
        }
    }

    /// Nothing in flight: no command awaiting the server, no transfer, no reply queued,
    /// no leg being secured (nothing may overtake a handshake on either leg).
    fn is_quiet(&self) -> bool {
        self.pending.is_empty()
            && !self.transfer_running()
            && self.out.is_empty()
            && !self.handshaking
            && self.after_secure.is_none()
    }

    /// Waiting only for replies the client will never see: it may quit meanwhile.
    fn orphaned(&self) -> bool {
        !self.pending.is_empty()
            && self
                .pending
                .iter()
                .all(|p| matches!(p.what, Pending::Swallow))
            && !self.transfer_running()
            && self.out.is_empty()
    }

    /// After every input: send what is ready, end a finished QUIT, run stashed commands
    /// once nothing is in flight, and honour a shutdown when quiet.
    fn settle(&mut self) {
        loop {
            if matches!(self.phase, Phase::Closed) {
                return;
            }
            self.flush();
            if matches!(self.phase, Phase::Closing) && self.out.is_empty() {
                self.close(SessionEnd::Quit);
                return;
            }
            if !self.is_quiet() {
                break;
            }
            match self.stash.pop_front() {
                Some(input) => self.on_input(input),
                None => break,
            }
        }
        if self.shutdown && self.is_quiet() {
            self.send(Reply::new(
                421,
                "Service shutting down, closing control connection.",
            ));
            self.close(SessionEnd::Shutdown);
        }
    }

    fn on_tick(&mut self) {
        let now = self.now;
        if self.final_deadline.is_some_and(|d| d <= now) {
            self.out.clear();
            self.send(Reply::new(
                421,
                "No final reply from the FTP server after the transfer.",
            ));
            self.close(ServerFault::FinalReplyTimeout.into());
            return;
        }
        if matches!(self.phase, Phase::Login { deadline, .. } if deadline <= now) {
            self.send(Reply::new(
                421,
                "Login timeout, closing control connection.",
            ));
            self.close(ClientFault::LoginTimeout.into());
            return;
        }
        if !self.transfer_running() && self.idle_deadline <= now {
            self.send(Reply::new(
                421,
                "Timeout: no activity, closing control connection.",
            ));
            self.close(SessionEnd::Idle);
            return;
        }
        if self.plan_expires.is_some_and(|d| d <= now) {
            tracing::debug!("unused data setup released after data_accept");
            if matches!(self.plan, Some(ClientPlan::Passive(_))) {
                self.plan = None;
            }
            // A later transfer sets up the server side afresh.
            self.server_prep = None;
            self.plan_expires = None;
        }
    }

    fn on_data_event(&mut self, event: DataEvent) {
        match self.running_id() {
            Some(id) if id == event.id => {}
            _ => {
                tracing::debug!(data.id = event.id, "event from a superseded transfer");
                return;
            }
        }
        let awaiting = self
            .pending
            .iter()
            .position(|p| matches!(p.what, Pending::Transfer));
        let Some(pos) = awaiting else {
            // The server's final reply came first and is held: release it.
            self.release_held(event);
            return;
        };
        self.final_deadline = Some(self.now + self.config.timeouts.final_reply);
        let Err(e) = &event.result else {
            self.phase = Phase::Transfer {
                id: event.id,
                outcome: Some(event),
            };
            return;
        };
        // The transfer failed on our side: the client learns it now, not when (or if) the
        // server gets round to its own reply, which is dropped when it comes. An ABOR
        // makes a server that still waits for its data connection give up.
        let reply = failure_reply(e);
        tracing::debug!(bytes = event.bytes, code = reply.code, error = %e, "transfer failed");
        self.record_end(event.id, event.bytes, false, &reply);
        self.phase = Phase::Ready;
        self.out.push_back(Outgoing::Ready(reply));
        if let Some(p) = self.pending.get_mut(pos) {
            p.what = Pending::Swallow;
        }
        let client_aborted = self
            .pending
            .iter()
            .any(|p| matches!(p.what, Pending::Relay(Verb::Abor)));
        if !client_aborted {
            self.forward_raw(Bytes::from_static(b"ABOR"), Pending::Swallow);
        }
    }

    /// Whether ftpgate's own PASV/EPSV for a prepared server leg still awaits its reply.
    fn awaiting_server_setup(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p.what, Pending::ServerSetup { then: None, .. }))
    }

    /// Sends the held passive reply, after having the listener map the client's data
    /// connection when the server's prepared leg allows it.
    fn release_passive(&mut self) {
        let Some(pos) = self
            .out
            .iter()
            .position(|o| matches!(o, Outgoing::Passive(_)))
        else {
            return;
        };
        let peer = self.addrs.client_peer.ip();
        if let (
            Some(ClientPlan::Passive(listener)),
            Some(Ok(ServerLeg::Connect { target, source })),
        ) = (self.plan.as_mut(), &self.server_prep)
        {
            listener.premap(Premap {
                peer,
                target: *target,
                source: *source,
            });
        }
        if let Some(Outgoing::Passive(reply)) = self.out.remove(pos) {
            self.out.insert(pos, Outgoing::Ready(reply));
        }
        self.flush();
    }

    /// Turns the held transfer reply into a ready one with the transfer's outcome, and
    /// ends the transfer phase. A success reply from the server becomes 425/426 if the
    /// data relay failed: no client ever sees 226 for a truncated file.
    fn release_held(&mut self, event: DataEvent) {
        self.phase = Phase::Ready;
        let Some(pos) = self
            .out
            .iter()
            .position(|o| matches!(o, Outgoing::AfterTransfer(_)))
        else {
            return;
        };
        if let Some(Outgoing::AfterTransfer(reply)) = self.out.remove(pos) {
            let reply = match &event.result {
                // A data connection that never came up: whatever the server made of it, the
                // client learns the real reason. A failed relay never shows as success.
                Err(e) if e.is_setup() || reply.class() == 2 => failure_reply(e),
                _ => reply,
            };
            if let Err(e) = &event.result {
                tracing::debug!(bytes = event.bytes, code = reply.code, error = %e, "transfer failed");
            }
            self.record_end(event.id, event.bytes, event.result.is_ok(), &reply);
            self.out.insert(pos, Outgoing::Ready(reply));
        }
    }

    fn server_gone(&mut self) {
        if matches!(self.phase, Phase::Closing)
            || self
                .pending
                .iter()
                .any(|p| matches!(p.what, Pending::Relay(Verb::Quit)))
        {
            self.close(SessionEnd::Quit);
            return;
        }
        self.flush();
        // Written even past a held reply: the session is over.
        self.actions.push_back(Action::ToClient(Reply::new(
            421,
            "Service not available, the FTP server closed the connection.",
        )));
        self.close(SessionEnd::ServerClosed);
    }

    /// Queues a reply behind anything already queued and sends what is ready.
    fn send(&mut self, reply: Reply) {
        self.out.push_back(Outgoing::Ready(reply));
        self.flush();
    }

    /// Sends every reply at the head of the queue that is ready.
    fn flush(&mut self) {
        while let Some(Outgoing::Ready(_)) = self.out.front() {
            if let Some(Outgoing::Ready(reply)) = self.out.pop_front() {
                self.actions.push_back(Action::ToClient(reply));
            }
        }
    }

    /// Queues the end of the session; nothing happens after it.
    fn close(&mut self, end: SessionEnd) {
        if let Some(id) = self.running_id() {
            self.actions.push_back(Action::CancelTransfer(id));
        }
        self.phase = Phase::Closed;
        self.plan = None;
        self.server_prep = None;
        self.actions.push_back(Action::Close(end));
    }

    /// Sends a line to the server and records what its reply is for.
    fn forward_raw(&mut self, line: Bytes, what: Pending<P::Listener>) {
        self.actions.push_back(Action::ToServer(line));
        self.pending.push_back(PendingEntry {
            what,
            preliminary: 0,
        });
    }
}

/// 425 with a reason a user can act on (a `client_text()`, never log detail).
fn cannot_open(why: &str) -> Reply {
    Reply::new(425, &format!("Can't open data connection: {why}."))
}

/// What the client is told when a transfer failed on ftpgate's side: what went wrong, in
/// words a user can act on, never an address or an OS error (the log has those).
fn failure_reply(e: &DataError) -> Reply {
    if e.is_setup() {
        cannot_open(e.client_text())
    } else {
        Reply::new(
            426,
            &format!("Connection closed; transfer aborted: {}.", e.client_text()),
        )
    }
}
