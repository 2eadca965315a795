//! The forward-proxy login (`route.kind: user_at_host`): ftpgate greets the client
//! itself, waits for `USER user@host[:port]`, resolves the host once, checks every
//! resolved address against `acl.servers` (so a name cannot be re-pointed after the
//! check), connects, and replays the login with the bare user name. The server's own
//! greeting is logged, not relayed: the client has been greeted already. FTPS clients
//! secure the control connection here, before `USER` (`AUTH`, `PBSZ`, `PROT` are
//! answered as the session core answers them, by `security.rs`).

use super::context::SessionContext;
use super::driver::{secure_client, write_reply, SessionTls};
use super::error::{ClientFault, SessionEnd};
use super::security::{self, ClientSecurity};
use crate::config::ClientTlsMode;
use crate::error::Side;
use crate::proto::command::{CommandLine, Verb};
use crate::proto::line::{Frame, LineError};
use crate::proto::reply::Reply;
use crate::route::{parse_user_at_host, resolve_allowed, upstream, ServerLegConn, Target};
use crate::stream::BoxedStream;
use crate::wire::Leg;
use futures_util::StreamExt;
use tokio::io::WriteHalf;
use tokio::time::{timeout_at, Instant};

/// Most USER attempts before the session is closed.
const MAX_ATTEMPTS: u32 = 5;

pub(super) async fn login(
    ctx: &SessionContext,
    client: &mut Leg,
    tls: &SessionTls,
    sec: &mut ClientSecurity,
    deadline: Instant,
    (client_peer, client_local): (std::net::SocketAddr, std::net::SocketAddr),
) -> Result<(ServerLegConn, Vec<u8>), SessionEnd> {
    let limit = ctx.config.timeouts.data_stall;
    let say = async |w: &mut WriteHalf<BoxedStream>, code: u16, text: &str| {
        write_reply(w, &Reply::new(code, text), limit).await
    };
    let required = ctx
        .listener
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == ClientTlsMode::Required);
    say(
        &mut client.writer,
        220,
        "ftpgate ready: log in as user@host or user@host:port.",
    )
    .await?;
    let mut attempts = 0;
    loop {
        let client_wr = &mut client.writer;
        let frame = match timeout_at(deadline, client.reader.next()).await {
            Err(_) => {
                say(client_wr, 421, "Login timeout, closing control connection.").await?;
                return Err(ClientFault::LoginTimeout.into());
            }
            Ok(None) => return Err(SessionEnd::ClientClosed),
            Ok(Some(Err(e))) => {
                return Err(SessionEnd::Io {
                    side: Side::Client,
                    source: e,
                })
            }
            Ok(Some(Ok(f))) => f,
        };
        let line = match frame {
            Frame::Line(l) => l,
            Frame::Rejected(LineError::TlsRecord) => {
                tracing::warn!("TLS handshake on a plaintext control connection (an implicit FTPS client on a port without tls.mode: implicit?)");
                return Err(ClientFault::TlsOnPlain.into());
            }
            Frame::Rejected(LineError::ProxyHeader) => {
                tracing::warn!(
                    "PROXY protocol header from a peer not in proxy_protocol.trusted: closed"
                );
                return Err(ClientFault::UntrustedProxyHeader.into());
            }
            Frame::Rejected(e) => {
                say(client_wr, 500, &format!("Command line rejected: {e}.")).await?;
                continue;
            }
        };
        if crate::proto::command::looks_like_http(&line) {
            say(client_wr, 421, "This is an FTP proxy, not an HTTP proxy.").await?;
            return Err(ClientFault::Http.into());
        }
        let Ok(cmd) = CommandLine::parse(line) else {
            say(client_wr, 500, "Syntax error, command unrecognized.").await?;
            continue;
        };
        if required && !sec.tls {
            if let Some(reply) = security::before_auth(&cmd) {
                write_reply(client_wr, &reply, limit).await?;
                continue;
            }
        }
        match cmd.verb {
            Verb::Auth => {
                if !client.reader.read_buffer().is_empty() {
                    say(
                        client_wr,
                        421,
                        "Commands pipelined after AUTH, closing control connection.",
                    )
                    .await?;
                    return Err(ClientFault::PipelinedAfterAuth.into());
                }
                if let Err(reply) = security::auth(tls.acceptor.is_some(), sec, &cmd) {
                    write_reply(client_wr, &reply, limit).await?;
                    continue;
                }
                write_reply(client_wr, &security::auth_accepted(), limit).await?;
                secure_client(tls, client)
                    .await
                    .map_err(|error| SessionEnd::Tls {
                        side: Side::Client,
                        error,
                    })?;
                *sec = ClientSecurity::secured();
                continue;
            }
            Verb::Pbsz => {
                let reply = security::pbsz(sec, &cmd);
                write_reply(client_wr, &reply, limit).await?;
                continue;
            }
            Verb::Prot => {
                let reply = match security::prot(sec, &cmd) {
                    Ok(private) => {
                        sec.private = private;
                        security::prot_set(private)
                    }
                    Err(reply) => reply,
                };
                write_reply(client_wr, &reply, limit).await?;
                continue;
            }
            Verb::Ccc => {
                write_reply(client_wr, &security::ccc(), limit).await?;
                continue;
            }
            Verb::User => {}
            Verb::Quit => {
                say(client_wr, 221, "Goodbye.").await?;
                return Err(SessionEnd::Quit);
            }
            Verb::Feat => {
                let feat = security::own_features(tls.acceptor.is_some());
                write_reply(client_wr, &feat, limit).await?;
                continue;
            }
            Verb::Other if cmd.verb_str().eq_ignore_ascii_case(b"NOOP") => {
                say(client_wr, 200, "NOOP ok.").await?;
                continue;
            }
            Verb::Pass => {
                say(client_wr, 503, "Log in with USER user@host first.").await?;
                continue;
            }
            _ => {
                say(client_wr, 530, "Please log in with USER user@host first.").await?;
                continue;
            }
        }
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            say(client_wr, 421, "Too many login attempts.").await?;
            return Err(ClientFault::TooManyLogins.into());
        }
        let dest = match parse_user_at_host(&cmd.arg) {
            Ok(d) => d,
            Err(e) => {
                say(client_wr, 530, &format!("Login refused: {e}.")).await?;
                continue;
            }
        };
        let resolved = resolve_allowed(
            &ctx.router.resolver,
            &dest.host,
            dest.port,
            ctx.config.timeouts.connect,
            &ctx.listener.acl.servers,
            &ctx.own_addrs,
        )
        .await;
        let targets: Vec<Target> = match resolved {
            Ok(addrs) => addrs.into_iter().map(Target::Addr).collect(),
            Err(reason) => {
                tracing::warn!(server.host = %dest.host, server.port = dest.port, %reason, side = %reason.side(), "destination refused");
                // The host is the client's own (validated) text; the reason stays in the log.
                let text = format!("Login refused: {}: {}.", dest.host, reason.client_text());
                say(client_wr, 530, &text).await?;
                continue;
            }
        };
        let implicit = super::implicit_server(ctx, tls, sec, Some(&dest.host));
        match upstream::open(
            &ctx.router,
            &ctx.dial_params(client_peer, client_local),
            &targets,
            implicit,
        )
        .await
        {
            Ok(mut conn) => {
                conn.host = dest.host.clone();
                for r in &conn.banner {
                    tracing::debug!(code = r.code, text = %String::from_utf8_lossy(r.text()), "server greeting");
                }
                return Ok((conn, dest.user));
            }
            Err(reason) => {
                say(
                    client_wr,
                    421,
                    &format!("Service not available: cannot reach {}.", dest.host),
                )
                .await?;
                return Err(SessionEnd::Upstream(reason));
            }
        }
    }
}
