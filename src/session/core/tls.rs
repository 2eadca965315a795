//! FTPS in the session core: ftpgate's own `AUTH TLS`, `PBSZ 0` and `PROT` towards the
//! server (RFC 4217), the client's `AUTH`/`PBSZ`/`PROT` (answered by ftpgate, never
//! relayed), and the order of things around the two handshakes, which the driver runs.
//!
//! The server leg is secured before anything of the client's reaches it: with
//! `route.tls.mode: explicit` the greeting is held until the server's `AUTH TLS`, handshake
//! and `PBSZ`/`PROT` are done, so a server that refuses TLS costs the client a 421, never
//! its credentials. With `match_client`, the client's own `AUTH` triggers the same
//! sequence first, and the client hears 234 only once the server leg is TLS.

use super::{Action, Core, Pending, Ports, Start};
use crate::config::{ClientDataTls, ClientTlsMode, ServerDataTls, ServerTlsMode};
use crate::error::Side;
use crate::proto::command::CommandLine;
use crate::proto::reply::Reply;
use crate::session::error::SessionEnd;
use crate::session::security;
use crate::tls::{SecurityCommand, TlsError};
use bytes::Bytes;

/// One of ftpgate's own security commands to the server.
#[derive(Debug)]
pub enum SecureStep {
    Auth,
    Pbsz,
    /// `PROT P` (`private`) or `PROT C`; `for_client`: the client's own `PROT` waits
    /// for this (data protection `match_client`) and hears the outcome.
    Prot {
        private: bool,
        for_client: bool,
    },
}

/// The server leg's FTPS state.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ServerSecurity {
    pub tls: bool,
    /// The server accepted `PROT P`.
    pub private: bool,
}

/// What waits for the server leg to be secured.
#[derive(Debug)]
pub(super) enum AfterSecure {
    /// The session's start (greeting or forward-proxy `USER`).
    Start(Start),
    /// The client's `AUTH`: answer 234 and secure the client leg.
    ClientAuth,
}

impl<P: Ports> Core<P> {
    /// The route asks for explicit TLS towards the server and the leg is not TLS yet.
    pub(super) fn server_needs_auth(&self) -> bool {
        let Some(tls) = &self.listener.route.tls else {
            return false;
        };
        !self.server_tls.tls
            && match tls.mode {
                ServerTlsMode::Explicit => true,
                ServerTlsMode::Implicit => false,
                ServerTlsMode::MatchClient => self.client_tls.tls,
            }
    }

    fn client_mode(&self) -> Option<ClientTlsMode> {
        self.listener.tls.as_ref().map(|t| t.mode)
    }

    /// A `required` listener whose client has not secured its control connection yet.
    pub(super) fn awaiting_required_auth(&self) -> bool {
        self.client_mode() == Some(ClientTlsMode::Required) && !self.client_tls.tls
    }

    /// A `data: required` listener whose client has not sent `PROT P`.
    pub(super) fn data_protection_missing(&self) -> bool {
        self.listener
            .tls
            .as_ref()
            .is_some_and(|t| t.data == ClientDataTls::Required)
            && !self.client_tls.private
    }

    /// Whether the next transfer's data connections are TLS: (client, server).
    pub(super) fn data_tls(&self) -> (bool, bool) {
        (
            self.client_tls.tls && self.client_tls.private,
            self.server_tls.tls && self.server_tls.private,
        )
    }

    /// Sends `AUTH TLS` to the server; `then` runs once the leg is secured.
    pub(super) fn secure_server(&mut self, then: AfterSecure) {
        self.after_secure = Some(then);
        self.forward_raw(
            Bytes::from_static(b"AUTH TLS"),
            Pending::Secure(SecureStep::Auth),
        );
    }

    /// The client's `AUTH`.
    pub(super) fn client_auth(&mut self, cmd: &CommandLine) {
        if let Err(reply) = security::auth(self.listener.tls.is_some(), &self.client_tls, cmd) {
            return self.send(reply);
        }
        let server_follows = self
            .listener
            .route
            .tls
            .as_ref()
            .is_some_and(|t| t.mode == ServerTlsMode::MatchClient);
        if server_follows && !self.server_tls.tls {
            return self.secure_server(AfterSecure::ClientAuth);
        }
        self.answer_auth();
    }

    fn answer_auth(&mut self) {
        // Every earlier reply is out (AUTH is handled only when the session is quiet),
        // so the 234 is the last plaintext the client reads.
        self.send(security::auth_accepted());
        self.actions.push_back(Action::SecureClient);
        self.handshaking = true;
    }

    pub(super) fn on_client_secured(&mut self, result: Result<(), TlsError>) {
        self.handshaking = false;
        match result {
            Ok(()) => {
                tracing::info!("client control connection is TLS");
                self.client_tls = security::ClientSecurity {
                    tls: true,
                    ..Default::default()
                };
            }
            Err(error) => {
                tracing::warn!(%error, "client TLS handshake failed");
                self.close(SessionEnd::Tls {
                    side: Side::Client,
                    error,
                });
            }
        }
    }

    /// The client's `PROT`. With `route.tls.data: match_client` on a TLS server leg, the
    /// server's protection follows first, and the client hears the outcome.
    pub(super) fn client_prot(&mut self, cmd: &CommandLine) {
        let private = match security::prot(&self.client_tls, cmd) {
            Ok(p) => p,
            Err(reply) => return self.send(reply),
        };
        let follows = self
            .listener
            .route
            .tls
            .as_ref()
            .is_some_and(|t| t.data == ServerDataTls::MatchClient);
        if follows && self.server_tls.tls && self.server_tls.private != private {
            return self.send_prot(private, true);
        }
        self.client_tls.private = private;
        self.send(security::prot_set(private));
    }

    fn send_prot(&mut self, private: bool, for_client: bool) {
        let line: &'static [u8] = if private { b"PROT P" } else { b"PROT C" };
        self.forward_raw(
            Bytes::from_static(line),
            Pending::Secure(SecureStep::Prot {
                private,
                for_client,
            }),
        );
    }

    pub(super) fn on_server_secured(&mut self, result: Result<(), TlsError>) {
        self.handshaking = false;
        match result {
            Ok(()) => {
                tracing::info!("server control connection is TLS");
                self.server_tls.tls = true;
                self.send_pbsz();
            }
            Err(f) => self.fail_server_tls(f),
        }
    }

    /// `PBSZ 0` to a server whose leg is TLS; `PROT` follows (`on_secure_reply`).
    pub(super) fn send_pbsz(&mut self) {
        self.forward_raw(
            Bytes::from_static(b"PBSZ 0"),
            Pending::Secure(SecureStep::Pbsz),
        );
    }

    /// The server's final reply to one of ftpgate's security commands.
    pub(super) fn on_secure_reply(&mut self, step: SecureStep, reply: Reply) {
        let ok = reply.class() == 2;
        match step {
            SecureStep::Auth if reply.code == 234 => {
                self.actions.push_back(Action::SecureServer);
                self.handshaking = true;
            }
            SecureStep::Auth => self.fail_server_tls(TlsError::Refused {
                command: SecurityCommand::Auth,
                code: reply.code,
            }),
            SecureStep::Pbsz if ok => {
                let private = match self.listener.route.tls.as_ref().map(|t| t.data) {
                    Some(ServerDataTls::Private) => true,
                    Some(ServerDataTls::MatchClient) => self.client_tls.private,
                    Some(ServerDataTls::Clear) | None => false,
                };
                if private {
                    self.send_prot(true, false);
                } else {
                    // PROT C is the default after AUTH (RFC 4217 section 9).
                    self.secured();
                }
            }
            SecureStep::Pbsz => self.fail_server_tls(TlsError::Refused {
                command: SecurityCommand::Pbsz,
                code: reply.code,
            }),
            SecureStep::Prot {
                private,
                for_client: true,
            } => {
                if ok {
                    self.server_tls.private = private;
                    self.client_tls.private = private;
                    self.send(security::prot_set(private));
                } else {
                    tracing::warn!(code = reply.code, private, "the FTP server refused PROT");
                    self.send(Reply::new(
                        534,
                        "Request denied: the FTP server refused that protection level.",
                    ));
                }
            }
            SecureStep::Prot { private, .. } if ok => {
                self.server_tls.private = private;
                self.secured();
            }
            SecureStep::Prot { .. } => self.fail_server_tls(TlsError::Refused {
                command: SecurityCommand::ProtP,
                code: reply.code,
            }),
        }
    }

    /// The server leg is TLS with its data protection set: carry on.
    fn secured(&mut self) {
        match self.after_secure.take() {
            Some(AfterSecure::Start(start)) => self.begin(start),
            Some(AfterSecure::ClientAuth) => self.answer_auth(),
            None => {}
        }
    }

    /// Fail closed: the client gets 421 and nothing of its own reached the server.
    fn fail_server_tls(&mut self, error: TlsError) {
        tracing::warn!(%error, "cannot secure the server connection");
        self.out.clear();
        self.after_secure = None;
        self.send(Reply::new(
            421,
            &format!("Service not available: {}.", error.server_text()),
        ));
        self.close(SessionEnd::Tls {
            side: Side::Server,
            error,
        });
    }
}
