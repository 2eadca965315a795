//! Client lines: framing refusals, the data-channel commands ftpgate answers itself, the
//! arguments it validates before the server sees them, the transfer commands it sets up
//! data connections for, and everything else relayed verbatim.

use super::{
    ClientInput, ClientPlan, Core, Outgoing, Pending, Phase, Pool, Ports, ServerLeg, SetupError,
    TransferPlan,
};
use crate::config::{HostCommand, ServerMode};
use crate::data::ClientLeg;
use crate::metrics::families::Refusal;
use crate::proto::args::Mode;
use crate::proto::args::{parse_host, parse_mode, parse_rest, parse_stru, parse_type, HostArg};
use crate::proto::command::{CommandLine, Verb};
use crate::proto::hostport::{
    canonical_ip, format_227, format_229, format_eprt_arg, format_port_arg, parse_eprt_arg,
    parse_epsv_arg, parse_port_arg, AddrError, EpsvArg,
};
use crate::proto::line::{Frame, LineError};
use crate::proto::reply::Reply;
use crate::session::error::ClientFault;
use crate::session::policy::{advertised_ip, check_client_target};
use crate::session::security;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

impl<P: Ports> Core<P> {
    pub(super) fn on_client_frame(&mut self, frame: Frame) {
        let input = match frame {
            Frame::Line(line) => {
                let first = !self.first_line_seen;
                self.first_line_seen = true;
                if first && crate::proto::command::looks_like_http(&line) {
                    self.send(Reply::new(421, "This is an FTP proxy, not an HTTP proxy."));
                    self.close(ClientFault::Http.into());
                    return;
                }
                match CommandLine::parse(line) {
                    Ok(cmd) => ClientInput::Command(cmd),
                    Err(e) => {
                        tracing::debug!(error = %e, "unparseable command");
                        self.refusals.push(Refusal::command);
                        ClientInput::Refused(Reply::new(500, "Syntax error, command unrecognized."))
                    }
                }
            }
            Frame::Rejected(LineError::TlsRecord) => {
                tracing::warn!(
                    "TLS handshake on a plaintext control connection (an implicit FTPS client on a port without tls.mode: implicit?)"
                );
                return self.close(ClientFault::TlsOnPlain.into());
            }
            Frame::Rejected(LineError::ProxyHeader) => {
                tracing::warn!(
                    "PROXY protocol header from a peer not in proxy_protocol.trusted: closed"
                );
                return self.close(ClientFault::UntrustedProxyHeader.into());
            }
            Frame::Rejected(e) => {
                tracing::info!(error = %e, "client line rejected");
                self.refusals.push(Refusal::command);
                ClientInput::Refused(Reply::new(500, &format!("Command line rejected: {e}.")))
            }
        };
        match input {
            // A transfer is running: only ABOR acts now; anything else waits its turn so
            // that replies stay in command order.
            ClientInput::Command(cmd) if self.transfer_running() && cmd.verb == Verb::Abor => {
                if self.stash.is_empty() {
                    return self.on_input(ClientInput::Command(cmd));
                }
                // Stop the data now; the ABOR itself is answered after the commands the
                // client sent before it.
                if let Some(id) = self.running_id() {
                    self.actions.push_back(super::Action::CancelTransfer(id));
                    self.record_aborted();
                }
                self.stash.push_back(ClientInput::Command(cmd));
            }
            ClientInput::Command(cmd) if self.orphaned() && cmd.verb == Verb::Quit => {
                self.send(Reply::new(221, "Goodbye."));
                self.close(crate::session::SessionEnd::Quit);
            }
            // Waiting for the server (a reply, or its leg being secured): the line waits its
            // turn. The driver reads the client only when the core wants it, so this is a
            // second line of defence: nothing overtakes what is in flight.
            input if self.transfer_running() || self.orphaned() || !self.is_quiet() => {
                self.stash.push_back(input)
            }
            input => self.on_input(input),
        }
    }

    pub(super) fn on_input(&mut self, input: ClientInput) {
        match input {
            ClientInput::Command(cmd) => self.on_command(cmd),
            ClientInput::Refused(reply) => self.send(reply),
        }
    }

    fn on_command(&mut self, cmd: CommandLine) {
        if cmd.verb == Verb::Pass {
            tracing::debug!("client: PASS ****");
        } else {
            tracing::debug!(line = %String::from_utf8_lossy(&cmd.line), "client command");
        }
        let denied = &self.listener.acl.commands_deny;
        if !denied.is_empty() {
            let verb = String::from_utf8_lossy(cmd.verb_str()).to_ascii_uppercase();
            if denied.contains(&verb) {
                tracing::warn!(command = %verb, "command denied by acl.commands");
                self.refusals.push(Refusal::command);
                return self.send(Reply::new(534, &format!("{verb} is denied by policy.")));
            }
        }
        if self.awaiting_required_auth() {
            if let Some(reply) = security::before_auth(&cmd) {
                tracing::info!(command = %String::from_utf8_lossy(cmd.verb_str()), "refused before AUTH on a tls.mode: required listener");
                self.refusals.push(Refusal::tls_policy);
                return self.send(reply);
            }
            // Answered here: nothing reaches the server before TLS.
            match cmd.verb {
                Verb::Feat => return self.send(security::own_features(true)),
                Verb::Quit => {
                    self.send(Reply::new(221, "Goodbye."));
                    return self.close(crate::session::SessionEnd::Quit);
                }
                Verb::Other => return self.send(Reply::new(200, "NOOP ok.")),
                _ => {}
            }
        }
        if !self.logged_in() && needs_login(cmd.verb) {
            return self.send(Reply::new(530, "Please login with USER and PASS."));
        }
        if self.data_protection_missing() && is_data_command(cmd.verb) {
            self.refusals.push(Refusal::tls_policy);
            return self.send(security::data_refused());
        }
        match cmd.verb {
            Verb::Pasv => self.client_passive(false),
            Verb::Epsv => match parse_epsv_arg(&cmd.arg) {
                Ok(EpsvArg::All) => {
                    self.epsv_all = true;
                    self.send(Reply::new(200, "EPSV ALL ok."))
                }
                Ok(EpsvArg::Any) => self.client_passive(true),
                Ok(EpsvArg::Family(af)) if af == self.client_family() => self.client_passive(true),
                Ok(EpsvArg::Family(_)) | Err(AddrError::UnsupportedFamily(_)) => {
                    self.refuse_family()
                }
                Err(_) => self.send(Reply::new(501, "Syntax error in EPSV argument.")),
            },
            Verb::Port | Verb::Eprt => self.client_active(&cmd),
            Verb::Lprt | Verb::Lpsv | Verb::Spsv => self.send(Reply::new(
                502,
                "Command not implemented; use EPRT or EPSV.",
            )),
            // STARTTLS-style injection (CVE-2011-1575, CVE-2021-22947): commands pipelined
            // behind AUTH were written before any TLS, so the session cannot be trusted.
            Verb::Auth if self.client_buffered => {
                self.send(Reply::new(
                    421,
                    "Commands pipelined after AUTH, closing control connection.",
                ));
                self.close(ClientFault::PipelinedAfterAuth.into());
            }
            Verb::Auth => self.client_auth(&cmd),
            Verb::Pbsz => {
                let reply = security::pbsz(&mut self.client_tls, &cmd);
                self.send(reply)
            }
            Verb::Prot => self.client_prot(&cmd),
            Verb::Ccc => self.send(security::ccc()),
            // RFC 4217 makes REIN drop TLS, which would leave the rest of the session in
            // plaintext on one leg and TLS on the other: the session ends instead.
            Verb::Rein if self.client_tls.tls || self.server_tls.tls => {
                self.send(Reply::new(
                    421,
                    "REIN is not available on a TLS session; closing control connection.",
                ));
                self.close(ClientFault::ReinAfterTls.into())
            }
            Verb::Rest if parse_rest(&cmd.arg).is_err() => self.send(Reply::new(
                501,
                "Syntax error in REST argument: a byte offset in decimal digits.",
            )),
            Verb::Type => match parse_type(&cmd.arg) {
                Ok(t) => {
                    self.type_sent = Some(matches!(t, crate::proto::args::TransferType::Ascii(_)));
                    self.forward(&cmd, Pending::Relay(Verb::Type))
                }
                Err(_) => self.send(Reply::new(501, "Syntax error in TYPE argument.")),
            },
            Verb::Stru if parse_stru(&cmd.arg).is_err() => {
                self.send(Reply::new(501, "Syntax error in STRU argument."))
            }
            Verb::Mode => match parse_mode(&cmd.arg) {
                Ok(Mode::Stream) => self.forward(&cmd, Pending::Relay(Verb::Mode)),
                Ok(_) => self.send(Reply::new(
                    504,
                    "Only MODE S is supported through this proxy.",
                )),
                Err(_) => self.send(Reply::new(501, "Syntax error in MODE argument.")),
            },
            Verb::Host => self.client_host(&cmd),
            v if v.is_transfer() => self.client_transfer(cmd),
            Verb::Abor => {
                if let Some(id) = self.running_id() {
                    self.actions.push_back(super::Action::CancelTransfer(id));
                    self.record_aborted();
                }
                self.forward(&cmd, Pending::Relay(Verb::Abor))
            }
            Verb::Rein => {
                self.plan = None;
                self.server_prep = None;
                self.forward(&cmd, Pending::Relay(Verb::Rein))
            }
            Verb::User => {
                // Login state follows the server: a new USER means "not logged in" until
                // the server's next 230, whatever came before.
                let deadline = match self.phase {
                    Phase::Login { deadline, .. } => deadline,
                    _ => self.now + self.config.timeouts.login,
                };
                self.phase = Phase::Login {
                    deadline,
                    user_sent: true,
                };
                self.plan = None;
                self.server_prep = None;
                self.user = Some(cmd.arg.to_vec());
                self.forward(&cmd, Pending::Relay(Verb::User))
            }
            verb => self.forward(&cmd, Pending::Relay(verb)),
        }
    }

    /// RFC 7151 HOST: a virtual host name goes to the server; a bare IP address (the
    /// address the client connected to, typically ftpgate's own) means nothing to the
    /// server behind ftpgate and is answered here, per `route.host_command`.
    fn client_host(&mut self, cmd: &CommandLine) {
        let arg = match parse_host(&cmd.arg) {
            Ok(a) => a,
            Err(_) => return self.send(Reply::new(501, "Syntax error in HOST argument.")),
        };
        let answer_here = match self.listener.route.host_command {
            HostCommand::Forward => false,
            HostCommand::Names => matches!(arg, HostArg::Ip(_)),
            HostCommand::Answer => true,
        };
        if !answer_here {
            return self.forward(cmd, Pending::Relay(Verb::Host));
        }
        match self.phase {
            Phase::Login {
                user_sent: false, ..
            } => self.send(Reply::new(220, "Host accepted.")),
            _ => self.send(Reply::new(503, "HOST must come before USER.")),
        }
    }

    fn client_family(&self) -> u8 {
        family(self.addrs.client_peer.ip())
    }

    fn refuse_family(&mut self) {
        let text = format!(
            "Network protocol not supported, use ({}).",
            self.client_family()
        );
        self.send(Reply::new(522, &text))
    }

    /// Relays a client command verbatim.
    pub(super) fn forward(&mut self, cmd: &CommandLine, what: Pending<P::Listener>) {
        if !keeps_server_prep(cmd) {
            // The server may have dropped the data connection we prepared; the next
            // transfer sets up a fresh one.
            self.server_prep = None;
        }
        self.forward_raw(cmd.line.clone(), what)
    }

    /// PASV/EPSV from the client: listen on a data port and answer with our address.
    fn client_passive(&mut self, extended: bool) {
        if self.epsv_all && !extended {
            return self.send(Reply::new(501, "PASV not allowed after EPSV ALL."));
        }
        // Drop any earlier listener first so a client looping on PASV holds one port.
        self.plan = None;
        self.server_prep = None;
        let local = canonical_ip(self.addrs.client_local.ip());
        let rules = if self.listener.advertise.is_empty() {
            &self.config.data.advertise
        } else {
            &self.listener.advertise
        };
        let advertised = advertised_ip(rules, self.addrs.client_peer.ip(), local);
        let v4 = match advertised {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        };
        if !extended && v4.is_none() {
            return self.send(Reply::new(
                425,
                "PASV cannot carry an IPv6 address; use EPSV.",
            ));
        }
        let listener = match self.ports.listen(Pool::Passive, local) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "passive listener unavailable");
                return self.send(Reply::new(
                    425,
                    "Can't open passive data connection: no free port.",
                ));
            }
        };
        let port = super::Listening::addr(&listener).port();
        let text = match v4 {
            Some(v4) if !extended => format_227(SocketAddrV4::new(v4, port)),
            _ => format_229(port),
        };
        tracing::debug!(data.listen = %super::Listening::addr(&listener), "client passive");
        self.plan = Some(ClientPlan::Passive(listener));
        // A passive port is held for `data_accept`, not until the session's idle end.
        self.plan_expires = Some(self.now + self.config.timeouts.data_accept);
        let code = if extended { 229 } else { 227 };
        let reply = Reply {
            code,
            lines: vec![Bytes::from(text)],
        };
        // Held only where the kernel can carry the transfer as things stand: plain data,
        // no rate limit (the transfer decides again when it starts).
        let limits = &self.config.limits;
        let premap = self.config.data.path == crate::config::DataPath::Kernel
            && limits.rate_per_session.is_none()
            && limits.rate_total.is_none()
            && self.logged_in()
            && self.plan.as_ref().is_some_and(|p| self.server_passive(p))
            && self.data_tls() == (false, false);
        if !premap {
            self.send(reply);
            return self.prepare_server();
        }
        self.out.push_back(Outgoing::Passive(reply));
        self.prepare_server();
        if self.server_prep.is_some() || !self.awaiting_server_setup() {
            self.release_passive();
        }
    }

    /// PORT/EPRT from the client: check the target before anything is sent to it.
    fn client_active(&mut self, cmd: &CommandLine) {
        let name = if cmd.verb == Verb::Port {
            "PORT"
        } else {
            "EPRT"
        };
        if self.epsv_all {
            return self.send(Reply::new(
                501,
                &format!("{name} not allowed after EPSV ALL."),
            ));
        }
        self.plan = None;
        self.server_prep = None;
        let parsed: Result<SocketAddr, AddrError> = if cmd.verb == Verb::Port {
            parse_port_arg(&cmd.arg).map(SocketAddr::V4)
        } else {
            parse_eprt_arg(&cmd.arg)
        };
        let target = match parsed {
            Ok(t) => t,
            Err(AddrError::UnsupportedFamily(_)) => return self.refuse_family(),
            Err(e) => {
                tracing::info!(error = %e, "{name} refused");
                return self.send(Reply::new(
                    501,
                    &format!("Syntax error in {name} argument."),
                ));
            }
        };
        // An address family the session cannot use (RFC 2428 section 2): PORT is IPv4 by
        // definition, so an IPv6 client gets 522 for it too.
        if family(target.ip()) != self.client_family() {
            return self.refuse_family();
        }
        match check_client_target(target, self.addrs.client_peer.ip()) {
            Ok(target) => {
                self.plan = Some(ClientPlan::Active(target));
                self.plan_expires = Some(self.now + self.config.timeouts.data_accept);
                self.send(Reply::new(200, &format!("{name} command successful.")));
                self.prepare_server()
            }
            Err(e) => {
                tracing::warn!(data.target = %target, reason = %e, "{name} refused");
                self.refusals.push(Refusal::bounce);
                self.send(Reply::new(501, &format!("{name} refused: {e}.")))
            }
        }
    }

    /// A transfer command: use the server leg prepared at PASV/PORT time, or set one up
    /// now per `server_mode`, then send the command.
    fn client_transfer(&mut self, cmd: CommandLine) {
        let Some(plan) = self.plan.take() else {
            return self.send(Reply::new(425, "Use PORT or PASV first."));
        };
        self.plan_expires = None;
        match self.server_prep.take() {
            Some(Ok(server)) => self.begin_transfer(cmd, plan, server),
            Some(Err(e)) => {
                // Release the client's data port before the client can act on the reply.
                drop(plan);
                self.send(super::cannot_open(e.client_text()))
            }
            None => {
                let passive = self.server_passive(&plan);
                self.send_server_setup(passive, Some(Box::new((cmd, plan))))
            }
        }
    }

    fn server_passive(&self, plan: &ClientPlan<P::Listener>) -> bool {
        match self.config.data.server_mode {
            ServerMode::Passive => true,
            ServerMode::Active => false,
            ServerMode::Client => matches!(plan, ClientPlan::Passive(_)),
        }
    }

    /// Asks the server for the next transfer's data connection while the client is still
    /// connecting to us, so the transfer command goes out without a round trip first.
    fn prepare_server(&mut self) {
        self.server_prep = None;
        let Some(plan) = &self.plan else {
            return;
        };
        if !self.logged_in() {
            return;
        }
        let passive = self.server_passive(plan);
        self.send_server_setup(passive, None)
    }

    /// Sends ftpgate's own PASV/EPSV or PORT/EPRT to the server (EPSV/EPRT on IPv6).
    pub(super) fn send_server_setup(
        &mut self,
        passive: bool,
        then: Option<Box<(CommandLine, ClientPlan<P::Listener>)>>,
    ) {
        if passive {
            let v4 = canonical_ip(self.addrs.server_peer.ip()).is_ipv4();
            let line: &'static [u8] = if v4 { b"PASV" } else { b"EPSV" };
            return self.forward_raw(
                Bytes::from_static(line),
                Pending::ServerSetup {
                    listener: None,
                    then,
                },
            );
        }
        let local = canonical_ip(self.addrs.server_local.ip());
        let listener = match self.ports.listen(Pool::Active, local) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "server-side active listener unavailable");
                let e = SetupError::NoPort(e);
                if then.is_none() {
                    self.server_prep = Some(Err(e));
                    return;
                }
                return self.send(super::cannot_open(e.client_text()));
            }
        };
        let port = super::Listening::addr(&listener).port();
        let line = match SocketAddr::new(local, port) {
            SocketAddr::V4(v4) => format!("PORT {}", format_port_arg(v4)),
            v6 => format!("EPRT {}", format_eprt_arg(v6)),
        };
        let what = Pending::ServerSetup {
            listener: Some(listener),
            then,
        };
        self.forward_raw(Bytes::from(line), what)
    }

    /// Both sides are settled: start the data task, then send the transfer command.
    pub(super) fn begin_transfer(
        &mut self,
        cmd: CommandLine,
        plan: ClientPlan<P::Listener>,
        server: ServerLeg<P::Listener>,
    ) {
        let Some(direction) = cmd.verb.direction() else {
            return;
        };
        let client = match plan {
            ClientPlan::Passive(listener) => ClientLeg::Accept {
                listener,
                expect: self.addrs.client_peer.ip(),
            },
            ClientPlan::Active(target) => ClientLeg::Connect {
                target,
                source: self.addrs.client_local.ip(),
                source_port: self.config.data.server_source_port_20.then_some(20),
                transparent: self.listener.route.tproxy,
            },
        };
        self.next_transfer += 1;
        let id = self.next_transfer;
        let (client_tls, server_tls) = self.data_tls();
        self.actions
            .push_back(super::Action::StartTransfer(TransferPlan {
                id,
                direction,
                client,
                server,
                client_tls,
                server_tls,
            }));
        self.phase = Phase::Transfer { id, outcome: None };
        self.record_start(id, &cmd, direction);
        self.forward(&cmd, Pending::Transfer)
    }
}

/// What clients send between PASV/PORT and the transfer that leaves a server's pending
/// data connection alone.
fn keeps_server_prep(cmd: &CommandLine) -> bool {
    const SAFE: [&[u8]; 9] = [
        b"SIZE", b"MDTM", b"NOOP", b"OPTS", b"SYST", b"PWD", b"XPWD", b"ALLO", b"HELP",
    ];
    matches!(
        cmd.verb,
        Verb::Type | Verb::Mode | Verb::Stru | Verb::Rest | Verb::Feat
    ) || SAFE.iter().any(|v| cmd.verb_str().eq_ignore_ascii_case(v))
}

fn family(ip: IpAddr) -> u8 {
    if canonical_ip(ip).is_ipv4() {
        1
    } else {
        2
    }
}

/// Commands that set up or use a data connection (`data: required` wants PROT P first).
fn is_data_command(verb: Verb) -> bool {
    matches!(verb, Verb::Port | Verb::Pasv | Verb::Eprt | Verb::Epsv) || verb.is_transfer()
}

/// Commands that open or use a data connection are refused before login.
fn needs_login(verb: Verb) -> bool {
    matches!(
        verb,
        Verb::Port
            | Verb::Pasv
            | Verb::Eprt
            | Verb::Epsv
            | Verb::Lprt
            | Verb::Lpsv
            | Verb::Spsv
            | Verb::Rest
    ) || verb.is_transfer()
}
