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
        .await
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
                self.send_now(Reply::new(200, &format!("{name} command successful.")))
                    .await
            }
            Err(e) => {
                tracing::warn!(data.target = %target, reason = %e, "{name} refused");
                self.send_now(Reply::new(501, &format!("{name} refused: {e}.")))
                    .await
            }
        }
    }

    /// A transfer command: set up the server side per `server_mode`, then send it.
    async fn client_transfer(&mut self, cmd: CommandLine) -> Result<(), SessionEnd> {
        let Some(plan) = self.plan.take() else {
            return self
                .send_now(Reply::new(425, "Use PORT or PASV first."))
                .await;
        };
        let server_passive = match self.ctx.config.data.server_mode {
            ServerMode::Passive => true,
            ServerMode::Active => false,
            ServerMode::Client => matches!(plan, ClientPlan::Passive(_)),
        };
        let server_v4 = canonical_ip(self.server_peer.ip()).is_ipv4();
        if server_passive {
            let line: &[u8] = if server_v4 { b"PASV" } else { b"EPSV" };
            self.write_server(line).await?;
            self.pending.push_back(PendingEntry {
                what: Pending::ServerPasv { cmd, plan },
                preliminary: 0,
            });
            return Ok(());
        }
        let local = canonical_ip(self.server_local.ip());
        let listener = match self.ctx.active_pool.listen(local, false) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "server-side active listener unavailable");
                return self
                    .send_now(Reply::new(425, "Can't open data connection: no free port."))
                    .await;
            }
        };
        let line = match SocketAddr::new(local, listener.addr.port()) {
            SocketAddr::V4(v4) => format!("PORT {}", format_port_arg(v4)),
            v6 => format!("EPRT {}", format_eprt_arg(v6)),
        };
        self.write_server(line.as_bytes()).await?;
        self.pending.push_back(PendingEntry {
            what: Pending::ServerPort {
                cmd,
                plan,
                listener,
            },
            preliminary: 0,
        });
        Ok(())
    }
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
