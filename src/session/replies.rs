//! Server replies: paired strictly with the oldest outstanding command. Replies to
//! ftpgate's own PASV/EPSV/PORT/EPRT are consumed here and never reach the client.

use super::policy::{feature_hidden, server_passive_target};
use super::{ClientPlan, Outgoing, Pending, PendingEntry, Session, SessionEnd, MAX_PRELIMINARY};
use crate::data::{self, ClientLeg, DataListener, ServerLeg, TransferSpec};
use crate::proto::command::{CommandLine, Verb};
use crate::proto::hostport::{canonical_ip, parse_227, parse_229};
use crate::proto::reply::Reply;
use std::net::SocketAddr;
use std::sync::Arc;

impl Session {
    pub(super) async fn on_reply(&mut self, reply: Reply) -> Result<(), SessionEnd> {
        tracing::debug!(code = reply.code, lines = reply.lines.len(), "server reply");
        let Some(front) = self.pending.front_mut() else {
            return self.unsolicited(reply).await;
        };
        if reply.is_preliminary() {
            front.preliminary += 1;
            if front.preliminary > MAX_PRELIMINARY {
                self.out.clear();
                self.send_now(Reply::new(
                    421,
                    "Service not available: too many preliminary replies from the FTP server.",
                ))
                .await?;
                return Err(SessionEnd::ServerProtocol("too many 1xx replies".into()));
            }
            match &front.what {
                Pending::Relay(_) => self.out.push_back(Outgoing::Ready(reply)),
                Pending::Transfer => {
                    if let Some(t) = self.transfer.as_mut() {
                        t.start();
                    }
                    self.out.push_back(Outgoing::Ready(reply));
                }
                // A 1xx to our own PASV/PORT means nothing to the client.
                Pending::ServerSetup { .. } | Pending::Swallow => {}
            }
            return Ok(());
        }
        let Some(PendingEntry { what, .. }) = self.pending.pop_front() else {
            return Ok(());
        };
        match what {
            Pending::Relay(verb) => self.final_reply(verb, reply),
            Pending::Swallow => {
                tracing::debug!(
                    code = reply.code,
                    "server reply to a command already answered"
                );
                if !self
                    .pending
                    .iter()
                    .any(|p| matches!(p.what, Pending::Transfer | Pending::Swallow))
                {
                    self.final_deadline = None;
                }
            }
            Pending::Transfer => {
                self.final_deadline = None;
                match self.transfer.as_mut() {
                    Some(t) if reply.class() == 2 => t.start(),
                    Some(t) => t.cancel(),
                    None => {}
                }
                self.out.push_back(Outgoing::AfterTransfer(reply));
                self.release_held();
            }
            Pending::ServerSetup { listener, then } => {
                let leg = self.server_leg(&reply, listener);
                if let Err(reason) = &leg {
                    tracing::warn!(code = reply.code, %reason, "server data setup failed");
                }
                match (then, leg) {
                    (Some(then), Ok(server)) => {
                        let (cmd, plan) = *then;
                        self.begin_transfer(cmd, plan, server).await?
                    }
                    (Some(_), Err(reason)) => self.out.push_back(Outgoing::Ready(Reply::new(
                        425,
                        &format!("Can't open data connection: {reason}."),
                    ))),
                    (None, leg) => self.server_prep = Some(leg),
                }
            }
        }
        Ok(())
    }

    fn final_reply(&mut self, verb: Verb, reply: Reply) {
        match verb {
            Verb::User | Verb::Pass | Verb::Acct if reply.code == 230 => self.logged_in = true,
            Verb::Rein if reply.class() == 2 => {
                self.logged_in = false;
                self.epsv_all = false;
                // The new login gets its own timeout; the session's first deadline may
                // long be past.
                self.login_deadline = tokio::time::Instant::now() + self.ctx.config.timeouts.login;
            }
            Verb::Quit => self.closing = true,
            _ => {}
        }
        let reply = if matches!(reply.code, 227..=229) {
            // Only ftpgate's own passive replies may reach the client (SECURITY.md 3):
            // a server's address text never crosses the proxy, whatever it answered.
            tracing::warn!(
                code = reply.code,
                "passive-mode reply to another command withheld"
            );
            Reply::new(
                502,
                &format!(
                    "Unexpected reply {} from the FTP server withheld by the proxy.",
                    reply.code
                ),
            )
        } else if verb == Verb::Feat && reply.lines.len() > 2 {
            filter_features(reply)
        } else {
            reply
        };
        self.out.push_back(Outgoing::Ready(reply));
    }

    async fn unsolicited(&mut self, reply: Reply) -> Result<(), SessionEnd> {
        if reply.code == 421 {
            self.send_now(reply).await?;
            return Err(SessionEnd::ServerClosed);
        }
        tracing::info!(
            code = reply.code,
            "unsolicited reply from the server dropped"
        );
        Ok(())
    }

    /// The server leg that the server's reply to our PASV/EPSV (no listener) or PORT/EPRT
    /// (our listener) allows, checked against `data.server_pasv_address`.
    fn server_leg(
        &self,
        reply: &Reply,
        listener: Option<DataListener>,
    ) -> Result<ServerLeg, String> {
        if let Some(listener) = listener {
            return if reply.class() == 2 {
                Ok(ServerLeg::Accept {
                    listener,
                    expect: self.server_peer.ip(),
                })
            } else {
                Err(format!(
                    "the FTP server refused active mode ({})",
                    reply.code
                ))
            };
        }
        let announced = match reply.code {
            227 => parse_227(reply.text())
                .map(SocketAddr::V4)
                .map_err(|e| e.to_string()),
            229 => parse_229(reply.text())
                .map(|port| SocketAddr::new(self.server_peer.ip(), port))
                .map_err(|e| e.to_string()),
            code => Err(format!("the FTP server refused passive mode ({code})")),
        }?;
        let own = [self.client_local.ip(), self.server_local.ip()];
        let target = server_passive_target(
            self.ctx.config.data.server_pasv_address,
            announced,
            self.server_peer.ip(),
            &own,
        )
        .map_err(|e| format!("server passive address refused: {e}"))?;
        Ok(ServerLeg::Connect {
            target,
            source: canonical_ip(self.server_local.ip()),
        })
    }

    /// Both sides are settled: start the data task, then send the transfer command.
    pub(super) async fn begin_transfer(
        &mut self,
        cmd: CommandLine,
        plan: ClientPlan,
        server: ServerLeg,
    ) -> Result<(), SessionEnd> {
        let Some(direction) = cmd.verb.direction() else {
            return Ok(());
        };
        let client = match plan {
            ClientPlan::Passive(listener) => ClientLeg::Accept {
                listener,
                expect: self.client_peer.ip(),
            },
            ClientPlan::Active(target) => ClientLeg::Connect {
                target,
                source: self.client_local.ip(),
                source_port: self.ctx.config.data.server_source_port_20.then_some(20),
                transparent: self.ctx.router.config.tproxy,
            },
        };
        self.next_transfer += 1;
        let t = &self.ctx.config.timeouts;
        let spec = TransferSpec {
            id: self.next_transfer,
            direction,
            client,
            server,
            accept_timeout: t.data_accept,
            connect_timeout: t.connect,
            stall_timeout: t.data_stall,
            buffer_size: self.ctx.config.data.buffer_size,
            throttle: self.throttle.clone(),
        };
        self.finished = None;
        self.transfer = Some(data::spawn(
            spec,
            self.data_tx.clone(),
            Arc::clone(&self.ctx.metrics),
        ));
        self.forward(&cmd, Pending::Transfer).await
    }
}

/// Drops the feature lines of commands ftpgate refuses, keeping first and last lines.
fn filter_features(reply: Reply) -> Reply {
    let last = reply.lines.len() - 1;
    let lines = reply
        .lines
        .into_iter()
        .enumerate()
        .filter(|(i, line)| *i == 0 || *i == last || !feature_hidden(line))
        .map(|(_, line)| line)
        .collect();
    Reply {
        code: reply.code,
        lines,
    }
}
