//! Client commands: the data-channel commands ftpgate answers itself, the transfer
//! commands it sets up data connections for, and everything else relayed verbatim.

use super::policy::{advertised_ip, check_client_target};
use super::{ClientPlan, Pending, PendingEntry, Session, SessionEnd};
use crate::config::ServerMode;
use crate::proto::command::{CommandLine, Verb};
use crate::proto::hostport::{
    canonical_ip, format_227, format_229, format_eprt_arg, format_port_arg, parse_eprt_arg,
    parse_epsv_arg, parse_port_arg, AddrError, EpsvArg,
};
use crate::proto::reply::Reply;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

impl Session {
    pub(super) async fn on_command(&mut self, cmd: CommandLine) -> Result<(), SessionEnd> {
        if cmd.verb == Verb::Pass {
            tracing::debug!("client: PASS ****");
        } else {
            tracing::debug!(line = %String::from_utf8_lossy(&cmd.line), "client command");
        }
        let denied = &self.ctx.listener.acl.commands_deny;
        if !denied.is_empty() {
            let verb = String::from_utf8_lossy(cmd.verb_str()).to_ascii_uppercase();
            if denied.contains(&verb) {
                tracing::warn!(command = %verb, "command denied by acl.commands");
                return self
                    .send_now(Reply::new(534, &format!("{verb} is denied by policy.")))
                    .await;
            }
        }
        if !self.logged_in && needs_login(cmd.verb) {
            return self
                .send_now(Reply::new(530, "Please login with USER and PASS."))
                .await;
        }
        match cmd.verb {
            Verb::Pasv => self.client_passive(false).await,
            Verb::Epsv => match parse_epsv_arg(&cmd.arg) {
                Ok(EpsvArg::All) => {
                    self.epsv_all = true;
                    self.send_now(Reply::new(200, "EPSV ALL ok.")).await
                }
                Ok(EpsvArg::Any) => self.client_passive(true).await,
                Ok(EpsvArg::Family(af)) if af == self.client_family() => {
                    self.client_passive(true).await
                }
                Ok(EpsvArg::Family(_)) | Err(AddrError::UnsupportedFamily(_)) => {
                    self.refuse_family().await
                }
                Err(_) => {
                    self.send_now(Reply::new(501, "Syntax error in EPSV argument."))
                        .await
                }
            },
            Verb::Port | Verb::Eprt => self.client_active(&cmd).await,
            Verb::Lprt | Verb::Lpsv | Verb::Spsv => {
                self.send_now(Reply::new(
                    502,
                    "Command not implemented; use EPRT or EPSV.",
                ))
                .await
            }
            // STARTTLS-style injection (CVE-2011-1575, CVE-2021-22947): commands pipelined
            // behind AUTH were written before any TLS, so the session cannot be trusted.
            Verb::Auth if self.client_buffered => {
                self.send_now(Reply::new(
                    421,
                    "Commands pipelined after AUTH, closing control connection.",
                ))
                .await?;
                Err(SessionEnd::ClientProtocol(
                    "bytes pipelined after AUTH".into(),
                ))
            }
            Verb::Auth | Verb::Pbsz | Verb::Prot | Verb::Ccc => {
                self.send_now(Reply::new(
                    502,
                    "Security extensions are not available through this proxy.",
                ))
                .await
            }
            Verb::Mode if !cmd.arg.eq_ignore_ascii_case(b"S") => {
                self.send_now(Reply::new(
                    504,
                    "Only MODE S is supported through this proxy.",
                ))
                .await
            }
            v if v.is_transfer() => self.client_transfer(cmd).await,
            Verb::Abor => {
                if let Some(t) = &self.transfer {
                    t.cancel();
                }
                self.forward(&cmd, Pending::Relay(Verb::Abor)).await
            }
            Verb::Rein => {
                self.plan = None;
                self.server_prep = None;
                self.forward(&cmd, Pending::Relay(Verb::Rein)).await
            }
            verb => self.forward(&cmd, Pending::Relay(verb)).await,
        }
    }

    fn client_family(&self) -> u8 {
        family(self.client_peer.ip())
    }

    async fn refuse_family(&mut self) -> Result<(), SessionEnd> {
        let text = format!(
            "Network protocol not supported, use ({}).",
            self.client_family()
        );
        self.send_now(Reply::new(522, &text)).await
    }

    pub(super) async fn forward(
        &mut self,
        cmd: &CommandLine,
        what: Pending,
    ) -> Result<(), SessionEnd> {
        if !keeps_server_prep(cmd) {
            // The server may have dropped the data connection we prepared; the next
            // transfer sets up a fresh one.
            self.server_prep = None;
        }
        self.forward_raw(&cmd.line, what).await
    }
    pub(super) async fn forward_raw(
        &mut self,
        line: &[u8],
        what: Pending,
    ) -> Result<(), SessionEnd> {
        self.write_server(line).await?;
        self.pending.push_back(PendingEntry {
            what,
            preliminary: 0,
        });
        Ok(())
    }

    /// PASV/EPSV from the client: listen on a data port and answer with our address.
    async fn client_passive(&mut self, extended: bool) -> Result<(), SessionEnd> {
        if self.epsv_all && !extended {
            return self
                .send_now(Reply::new(501, "PASV not allowed after EPSV ALL."))
                .await;
        }
        // Drop any earlier listener first so a client looping on PASV holds one port.
        self.plan = None;
        self.server_prep = None;
        let local = canonical_ip(self.client_local.ip());
        let rules = if self.ctx.listener.advertise.is_empty() {
            &self.ctx.config.data.advertise
        } else {
            &self.ctx.listener.advertise
        };
        let advertised = advertised_ip(rules, self.client_peer.ip(), local);
        let v4 = match advertised {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        };
        if !extended && v4.is_none() {
            return self
                .send_now(Reply::new(
                    425,
                    "PASV cannot carry an IPv6 address; use EPSV.",
                ))
                .await;
        }
        let listener = match self
            .ctx
            .passive_pool
            .listen(local, self.ctx.router.config.tproxy)
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "passive listener unavailable");
                return self
                    .send_now(Reply::new(
                        425,
                        "Can't open passive data connection: no free port.",
                    ))
                    .await;
            }
        };
        let port = listener.addr.port();
        let reply = match v4 {
            Some(v4) if !extended => format_227(SocketAddrV4::new(v4, port)),
            _ => format_229(port),
        };
        tracing::debug!(data.listen = %listener.addr, "client passive");
        self.plan = Some(ClientPlan::Passive(listener));
        // A passive port is held for `data_accept`, not until the session's idle end.
        self.plan_expires =
            Some(tokio::time::Instant::now() + self.ctx.config.timeouts.data_accept);
        let code = if extended { 229 } else { 227 };
        self.send_now(Reply {
            code,
            lines: vec![bytes::Bytes::from(reply)],
        })
        .await?;
        self.prepare_server().await
    }

    /// PORT/EPRT from the client: check the target before anything is sent to it.
    async fn client_active(&mut self, cmd: &CommandLine) -> Result<(), SessionEnd> {
        let name = if cmd.verb == Verb::Port {
            "PORT"
        } else {
            "EPRT"
        };
        if self.epsv_all {
            return self
                .send_now(Reply::new(
                    501,
                    &format!("{name} not allowed after EPSV ALL."),
                ))
                .await;
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
            Err(AddrError::UnsupportedFamily(_)) => return self.refuse_family().await,
            Err(e) => {
                tracing::info!(error = %e, "{name} refused");
                return self
                    .send_now(Reply::new(
                        501,
                        &format!("Syntax error in {name} argument."),
                    ))
                    .await;
            }
        };
        if cmd.verb == Verb::Eprt && family(target.ip()) != self.client_family() {
            return self.refuse_family().await;
        }
        match check_client_target(target, self.client_peer.ip()) {
            Ok(target) => {
                self.plan = Some(ClientPlan::Active(target));
                self.plan_expires =
                    Some(tokio::time::Instant::now() + self.ctx.config.timeouts.data_accept);
                self.send_now(Reply::new(200, &format!("{name} command successful.")))
                    .await?;
                self.prepare_server().await
            }
            Err(e) => {
                tracing::warn!(data.target = %target, reason = %e, "{name} refused");
                self.send_now(Reply::new(501, &format!("{name} refused: {e}.")))
                    .await
            }
        }
    }

    /// A transfer command: use the server leg prepared at PASV/PORT time, or set one up
    /// now per `server_mode`, then send the command.
    async fn client_transfer(&mut self, cmd: CommandLine) -> Result<(), SessionEnd> {
        let Some(plan) = self.plan.take() else {
            return self
                .send_now(Reply::new(425, "Use PORT or PASV first."))
                .await;
        };
        self.plan_expires = None;
        match self.server_prep.take() {
            Some(Ok(server)) => self.begin_transfer(cmd, plan, server).await,
            Some(Err(reason)) => {
                // Release the client's data port before the client can act on the reply.
                drop(plan);
                let text = format!("Can't open data connection: {reason}.");
                self.send_now(Reply::new(425, &text)).await
            }
            None => {
                let passive = self.server_passive(&plan);
                self.send_server_setup(passive, Some(Box::new((cmd, plan))))
                    .await
            }
        }
    }

    fn server_passive(&self, plan: &ClientPlan) -> bool {
        match self.ctx.config.data.server_mode {
            ServerMode::Passive => true,
            ServerMode::Active => false,
            ServerMode::Client => matches!(plan, ClientPlan::Passive(_)),
        }
    }

    /// Asks the server for the next transfer's data connection while the client is still
    /// connecting to us, so the transfer command goes out without a round trip first.
    async fn prepare_server(&mut self) -> Result<(), SessionEnd> {
        self.server_prep = None;
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        if !self.logged_in {
            return Ok(());
        }
        let passive = self.server_passive(plan);
        self.send_server_setup(passive, None).await
    }

    /// Sends ftpgate's own PASV/EPSV or PORT/EPRT to the server (EPSV/EPRT on IPv6).
    async fn send_server_setup(
        &mut self,
        passive: bool,
        then: Option<Box<(CommandLine, ClientPlan)>>,
    ) -> Result<(), SessionEnd> {
        if passive {
            let v4 = canonical_ip(self.server_peer.ip()).is_ipv4();
            let line: &[u8] = if v4 { b"PASV" } else { b"EPSV" };
            return self
                .forward_raw(
                    line,
                    Pending::ServerSetup {
                        listener: None,
                        then,
                    },
                )
                .await;
        }
        let local = canonical_ip(self.server_local.ip());
        let listener = match self.ctx.active_pool.listen(local, false) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "server-side active listener unavailable");
                let reason = "no free port for the server's data connection".to_string();
                if then.is_none() {
                    self.server_prep = Some(Err(reason));
                    return Ok(());
                }
                return self
                    .send_now(Reply::new(
                        425,
                        &format!("Can't open data connection: {reason}."),
                    ))
                    .await;
            }
        };
        let line = match SocketAddr::new(local, listener.addr.port()) {
            SocketAddr::V4(v4) => format!("PORT {}", format_port_arg(v4)),
            v6 => format!("EPRT {}", format_eprt_arg(v6)),
        };
        let what = Pending::ServerSetup {
            listener: Some(listener),
            then,
        };
        self.forward_raw(line.as_bytes(), what).await
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
