//! What `/readyz` asks. The proxy decides what "ready" means (listeners bound, an upstream
//! healthy, not draining); the endpoint only reports it.

/// Answers `/readyz`. Called once per request, on the admin task, so it must be cheap and
/// must not block: read an atomic or an `ArcSwap`, never a lock held across I/O.
pub trait Readiness: Send + Sync + 'static {
    /// Ok when ready; Err(reason) -> 503 with the reason as body.
    fn ready(&self) -> Result<(), String>;
}
