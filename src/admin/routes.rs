//! The admin endpoint's routes as a function from request parts to a response: no socket,
//! so every status is unit-tested without a server.

use super::Readiness;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use prometheus_client::registry::Registry;

pub(super) type Body = Full<Bytes>;

const TEXT: &str = "text/plain; charset=utf-8";

/// The response to `method path`. `has_body`: the request announced a body, which no
/// route takes; it is refused rather than read, so a client cannot make the endpoint
/// buffer anything.
pub(super) fn respond(
    method: &Method,
    path: &str,
    has_body: bool,
    registry: &Registry,
    ready: &dyn Readiness,
) -> Response<Body> {
    let route = match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if has_body {
        // hyper would otherwise have to drain the unread body before the next request;
        // closing is simpler and costs a well-behaved scraper nothing.
        let mut r = text(StatusCode::PAYLOAD_TOO_LARGE, "no request body accepted\n");
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    match route {
        Route::Metrics => metrics(registry),
        Route::Health => text(StatusCode::OK, "ok\n"),
        Route::Ready => match ready.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
    }
}

enum Route {
    Metrics,
    Health,
    Ready,
}

fn metrics(registry: &Registry) -> Response<Body> {
    match crate::metrics::text::encode(registry) {
        Ok(body) => {
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::text::CONTENT_TYPE),
            );
            r
        }
        Err(e) => {
            tracing::debug!(error = %e, "admin: encoding metrics failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n")
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    // Health and metrics answers are only true now; no proxy in between may reuse one.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Fixed(Result<(), crate::admin::NotReady>);
    impl Readiness for Fixed {
        fn ready(&self) -> Result<(), crate::admin::NotReady> {
            self.0.clone()
        }
    }

    fn status(method: Method, path: &str, has_body: bool) -> StatusCode {
        respond(
            &method,
            path,
            has_body,
            &Registry::default(),
            &Fixed(Ok(())),
        )
        .status()
    }

    fn body(r: Response<Body>) -> String {
        let bytes = futures_util::FutureExt::now_or_never(r.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn statuses() {
        assert_eq!(status(Method::GET, "/healthz", false), StatusCode::OK);
        assert_eq!(status(Method::HEAD, "/readyz", false), StatusCode::OK);
        assert_eq!(status(Method::GET, "/metrics", false), StatusCode::OK);
        assert_eq!(status(Method::GET, "/", false), StatusCode::NOT_FOUND);
        assert_eq!(status(Method::POST, "/nope", true), StatusCode::NOT_FOUND);
        assert_eq!(
            status(Method::POST, "/metrics", false),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(Method::GET, "/healthz", true),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn method_not_allowed_names_the_allowed_ones() {
        let r = respond(
            &Method::DELETE,
            "/readyz",
            false,
            &Registry::default(),
            &Fixed(Ok(())),
        );
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }

    #[test]
    fn not_ready_is_503_with_the_reason() {
        let r = respond(
            &Method::GET,
            "/readyz",
            false,
            &Registry::default(),
            &Fixed(Err(crate::admin::NotReady::Draining)),
        );
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "draining\n");
    }

    #[test]
    fn metrics_is_the_classic_text_format() {
        let m = crate::metrics::Metrics::default();
        m.families.transfers.set(2);
        let r = respond(
            &Method::GET,
            "/metrics",
            false,
            &m.registry(),
            &Fixed(Ok(())),
        );
        assert_eq!(
            r.headers()[CONTENT_TYPE],
            crate::metrics::text::CONTENT_TYPE
        );
        assert!(body(r).contains("ftpgate_transfers 2\n"));
    }
}
