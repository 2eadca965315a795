//! Data connections: the port pool, establishing the two legs with peer checks and
//! deadlines, and the byte-exact relay between them. A transfer runs as its own task and
//! reports back to its control session with one [`DataEvent`].

mod conn;
mod error;
mod legs;
mod pipe_budget;
mod ports;
mod rate;
mod relay;
mod splice;
mod transfer;

pub use conn::DataTls;
pub use error::{DataError, Side};
pub use legs::{ClientLeg, ServerLeg};
pub use ports::{DataListener, PoolKind, PortError, PortPool};
pub use rate::{RateLimit, Throttle};
pub use transfer::{spawn, DataEvent, TransferHandle, TransferSpec};
