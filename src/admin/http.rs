//! The accept loop and what bounds each connection. hyper does the HTTP/1.1 parsing; this
//! file only decides how many connections, for how long, and how big their headers may be.

use super::routes::{self, Body};
use super::Readiness;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// hyper's smallest read buffer (it refuses a smaller `max_buf_size`); it also caps a
/// request line plus headers, since no body is ever read.
const READ_BUFFER: usize = 8192;
/// A Prometheus scrape sends a handful of headers.
const MAX_HEADERS: usize = 32;
/// After the deadline or shutdown, an in-flight response gets this long to finish.
const FINISH_GRACE: Duration = Duration::from_secs(1);
/// After an accept error (out of file descriptors, typically), wait before the next
/// accept so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How much of ftpgate one admin client can hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections served at once; more are closed at accept, without a byte read.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// Lifetime of a connection from accept, keep-alive included.
    pub connection_deadline: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            // Prometheus keeps one connection; a few more for a curl or a second scraper.
            max_connections: 8,
            header_timeout: Duration::from_secs(5),
            // Above Prometheus' default scrape timeout (10 s), below its interval.
            connection_deadline: Duration::from_secs(10),
        }
    }
}

/// Serves the admin routes on `listener` with the default [`Bounds`] until `shutdown`
/// is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready: Arc<dyn Readiness>,
    shutdown: CancellationToken,
) {
    serve_with(listener, registry, ready, shutdown, Bounds::default()).await
}

/// [`serve`] with explicit bounds. Returns once `shutdown` is cancelled and every
/// connection has ended (each within [`FINISH_GRACE`]).
pub async fn serve_with(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready: Arc<dyn Readiness>,
    shutdown: CancellationToken,
    bounds: Bounds,
) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(admin.addr = %addr, "admin listening on http://{addr}"),
        Err(e) => tracing::debug!(error = %e, "admin: listener has no local address"),
    }
    // Semaphore::new panics above MAX_PERMITS; no real bound is anywhere near it.
    let permits = Arc::new(Semaphore::new(
        bounds.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "admin: accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // Closing at once, rather than queueing, keeps idle connections from stacking up
        // behind the cap; the kernel backlog already queues connections not yet accepted.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(client.addr = %peer, "admin: connection limit reached, closed");
            continue;
        };
        let conn = Connection {
            registry: Arc::clone(&registry),
            ready: Arc::clone(&ready),
            shutdown: shutdown.clone(),
            bounds,
        };
        tasks.spawn(async move {
            conn.run(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    tracing::debug!("admin endpoint stopped");
}

struct Connection {
    registry: Arc<Registry>,
    ready: Arc<dyn Readiness>,
    shutdown: CancellationToken,
    bounds: Bounds,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        // `sleep` rather than `now + deadline`: it saturates instead of overflowing.
        let deadline = tokio::time::sleep(self.bounds.connection_deadline);
        let registry = self.registry;
        let ready = self.ready;
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let response = answer(&req, &registry, ready.as_ref());
            async move { Ok::<Response<Body>, Infallible>(response) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.bounds.header_timeout)
            .max_buf_size(READ_BUFFER)
            .max_headers(MAX_HEADERS)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = deadline => finish(conn, "deadline").await,
            _ = self.shutdown.cancelled() => finish(conn, "shutdown").await,
        };
        if let Err(e) = result {
            // Timeouts, garbage and resets from the client: its problem, not ours.
            tracing::debug!(error = %e, "admin: connection ended with an error");
        }
    }
}

/// Lets an in-flight response complete (and closes an idle keep-alive connection at
/// once), then gives up on the connection.
async fn finish<C>(mut conn: std::pin::Pin<&mut C>, why: &str) -> hyper::Result<()>
where
    C: std::future::Future<Output = hyper::Result<()>> + GracefulConnection,
{
    conn.as_mut().shut_down();
    match tokio::time::timeout(FINISH_GRACE, conn).await {
        Ok(r) => r,
        Err(_) => {
            tracing::debug!(reason = why, "admin: connection cut");
            Ok(())
        }
    }
}

/// hyper's connection type is long; this names the one method `finish` needs.
trait GracefulConnection {
    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

fn answer(req: &Request<Incoming>, registry: &Registry, ready: &dyn Readiness) -> Response<Body> {
    // No route takes a body: one announced (Content-Length > 0 or chunked) is refused.
    let has_body = !req.body().is_end_stream();
    routes::respond(req.method(), req.uri().path(), has_body, registry, ready)
}
