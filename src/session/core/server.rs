//! Server lines: assembled into replies and paired strictly with the oldest outstanding
//! command (SECURITY.md 6). Replies to ftpgate's own PASV/EPSV/PORT/EPRT are consumed here
//! and never reach the client.

use super::{
    Action, Core, Outgoing, Pending, PendingEntry, Phase, Ports, ServerLeg, SetupError,
    MAX_PRELIMINARY,
};
use crate::proto::command::Verb;
use crate::proto::hostport::{canonical_ip, parse_227, parse_229};
use crate::proto::line::Frame;
use crate::proto::reply::Reply;
use crate::session::error::{ServerFault, SessionEnd};
use crate::session::policy::{feature_hidden, server_passive_target};
use std::net::SocketAddr;

impl<P: Ports> Core<P> {
    pub(super) fn on_server_frame(&mut self, frame: Frame) {
        let outcome = match frame {
            Frame::Line(line) => self.assembler.push(line).map_err(ServerFault::Reply),
            Frame::Rejected(e) => Err(ServerFault::Line(e)),
        };
        match outcome {
            Ok(Some(reply)) => self.on_reply(reply),
            Ok(None) => {}
            Err(fault) => self.server_broken(
                "Service not available: invalid reply from the FTP server.",
                fault,
            ),
        }
    }

    /// The server broke the protocol: replies still queued are dropped, the client gets a
    /// 421, and the session ends.
    fn server_broken(&mut self, text: &str, fault: ServerFault) {
        self.out.clear();
        self.send(Reply::new(421, text));
        self.close(fault.into());
    }

    fn on_reply(&mut self, reply: Reply) {
        tracing::debug!(code = reply.code, lines = reply.lines.len(), "server reply");
        let Some(front) = self.pending.front_mut() else {
            return self.unsolicited(reply);
        };
        if reply.is_preliminary() {
            front.preliminary += 1;
            if front.preliminary > MAX_PRELIMINARY {
                return self.server_broken(
                    "Service not available: too many preliminary replies from the FTP server.",
                    ServerFault::TooManyPreliminary,
                );
            }
            match &front.what {
                Pending::Relay(_) => self.out.push_back(Outgoing::Ready(reply)),
                Pending::Transfer => {
                    if let Some(id) = self.running_id() {
                        self.actions.push_back(Action::GoTransfer(id));
                    }
                    self.record_accepted();
                    self.out.push_back(Outgoing::Ready(reply));
                }
                // A 1xx to our own PASV/PORT means nothing to the client.
                Pending::ServerSetup { .. } | Pending::Swallow | Pending::Secure(_) => {}
            }
            return;
        }
        let Some(PendingEntry { what, .. }) = self.pending.pop_front() else {
            return;
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
            Pending::Transfer => self.transfer_reply(reply),
            Pending::Secure(step) => self.on_secure_reply(step, reply),
            Pending::ServerSetup { listener, then } => {
                let leg = self.server_leg(&reply, listener);
                if let Err(e) = &leg {
                    tracing::warn!(code = reply.code, reason = %e, "server data setup failed");
                    if matches!(
                        e,
                        SetupError::PassiveTarget(_) | SetupError::BadPassiveReply(_)
                    ) {
                        self.refusals
                            .push(crate::metrics::families::Refusal::pasv_address);
                    }
                }
                match (then, leg) {
                    (Some(then), Ok(server)) => {
                        let (cmd, plan) = *then;
                        self.begin_transfer(cmd, plan, server)
                    }
                    (Some(_), Err(e)) => self
                        .out
                        .push_back(Outgoing::Ready(super::cannot_open(e.client_text()))),
                    (None, leg) => {
                        self.server_prep = Some(leg);
                        self.release_passive();
                    }
                }
            }
        }
    }

    /// The final reply to a transfer command: held until the data task has reported.
    fn transfer_reply(&mut self, reply: Reply) {
        self.final_deadline = None;
        if reply.class() == 2 {
            self.record_accepted();
        }
        let outcome = match &mut self.phase {
            Phase::Transfer { outcome, .. } => outcome.take(),
            _ => None,
        };
        match (outcome, self.running_id()) {
            (Some(event), _) => {
                self.out.push_back(Outgoing::AfterTransfer(reply));
                self.release_held(event);
            }
            (None, Some(id)) => {
                self.actions.push_back(if reply.class() == 2 {
                    Action::GoTransfer(id)
                } else {
                    Action::CancelTransfer(id)
                });
                self.out.push_back(Outgoing::AfterTransfer(reply));
            }
            // Not reached: a transfer reply is due only in the transfer phase, and a failed
            // transfer's is swallowed. Relayed rather than held, so no reply is ever stuck.
            (None, None) => self.out.push_back(Outgoing::Ready(reply)),
        }
    }

    fn final_reply(&mut self, verb: Verb, reply: Reply) {
        match verb {
            // 232: logged in by the TLS client certificate (RFC 2228), as libunftp and
            // others answer USER under mutual TLS.
            Verb::User | Verb::Pass | Verb::Acct if matches!(reply.code, 230 | 232) => {
                if matches!(self.phase, Phase::Login { .. }) {
                    self.phase = Phase::Ready;
                }
            }
            Verb::Rein if reply.class() == 2 => {
                // The new login gets its own timeout; the session's first deadline may
                // long be past.
                self.phase = Phase::Login {
                    deadline: self.now + self.config.timeouts.login,
                    user_sent: false,
                };
                self.epsv_all = false;
                self.ascii = false;
            }
            Verb::Quit => self.phase = Phase::Closing,
            Verb::Type => {
                if let Some(ascii) = self.type_sent.take().filter(|_| reply.class() == 2) {
                    self.ascii = ascii;
                }
            }
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
        } else if verb == Verb::Feat && reply.class() == 2 {
            filter_features(reply, self.listener.tls.is_some())
        } else {
            reply
        };
        self.out.push_back(Outgoing::Ready(reply));
    }

    fn unsolicited(&mut self, reply: Reply) {
        if reply.code == 421 {
            self.send(reply);
            return self.close(SessionEnd::ServerClosed);
        }
        tracing::info!(
            code = reply.code,
            "unsolicited reply from the server dropped"
        );
    }

    /// The server leg that the server's reply to our PASV/EPSV (no listener) or PORT/EPRT
    /// (our listener) allows, checked against `data.server_pasv_address`.
    fn server_leg(
        &self,
        reply: &Reply,
        listener: Option<P::Listener>,
    ) -> Result<ServerLeg<P::Listener>, SetupError> {
        if let Some(listener) = listener {
            return if reply.class() == 2 {
                Ok(ServerLeg::Accept {
                    listener,
                    expect: self.addrs.server_peer.ip(),
                })
            } else {
                Err(SetupError::ActiveRefused(reply.code))
            };
        }
        let announced = match reply.code {
            227 => parse_227(reply.text())
                .map(SocketAddr::V4)
                .map_err(SetupError::BadPassiveReply),
            229 => parse_229(reply.text())
                .map(|port| SocketAddr::new(self.addrs.server_peer.ip(), port))
                .map_err(SetupError::BadPassiveReply),
            code => Err(SetupError::PassiveRefused(code)),
        }?;
        let own = [self.addrs.client_local.ip(), self.addrs.server_local.ip()];
        let target = server_passive_target(
            self.config.data.server_pasv_address,
            announced,
            self.addrs.server_peer.ip(),
            &own,
        )
        .map_err(SetupError::PassiveTarget)?;
        Ok(ServerLeg::Connect {
            target,
            source: canonical_ip(self.addrs.server_local.ip()),
        })
    }
}

/// Drops the feature lines of commands ftpgate refuses or answers itself (the server's
/// AUTH, PBSZ, PROT are about the server leg), keeping first and last lines, and adds
/// ftpgate's own AUTH TLS, PBSZ and PROT where the listener has TLS.
fn filter_features(reply: Reply, tls: bool) -> Reply {
    let code = reply.code;
    let mut lines: Vec<bytes::Bytes> = if reply.lines.len() > 2 {
        let last = reply.lines.len() - 1;
        reply
            .lines
            .into_iter()
            .enumerate()
            .filter(|(i, line)| *i == 0 || *i == last || !feature_hidden(line))
            .map(|(_, line)| line)
            .collect()
    } else if tls {
        // A server without features: ftpgate still has its own.
        vec![
            bytes::Bytes::from(format!("{code}-Features:")),
            bytes::Bytes::from(format!("{code} End")),
        ]
    } else {
        return reply;
    };
    if tls {
        let at = lines.len() - 1;
        for (k, f) in crate::session::security::FEATURES.iter().enumerate() {
            lines.insert(at + k, bytes::Bytes::from_static(f.as_bytes()));
        }
    }
    Reply { code, lines }
}
