//! What `/readyz` asks. The proxy decides what "ready" means (listeners bound, an upstream
//! healthy, not draining); the endpoint only reports it.

/// Why ftpgate does not take sessions now; `/readyz` answers 503 with it as the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Listeners are bound but their accept loops do not run yet.
    #[error("starting")]
    Starting,
    /// SIGTERM/SIGINT: the drain is under way.
    #[error("draining")]
    Draining,
    /// A fixed route has no upstream that passed its health checks.
    #[error("listener `{listener}`: no healthy upstream")]
    NoHealthyUpstream { listener: String },
}

/// Answers `/readyz`. Called once per request, on the admin task, so it must be cheap and
/// must not block: read an atomic or an `ArcSwap`, never a lock held across I/O.
pub trait Readiness: Send + Sync + 'static {
    /// Ok when ready; Err(why) -> 503 with the reason as body.
    fn ready(&self) -> Result<(), NotReady>;
}
