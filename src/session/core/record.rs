//! What the core reports about each transfer when it ends: the facts the transfer log,
//! the `transfer` log event and the transfer metrics are made of. Taken by the driver
//! with [`Core::take_records`], beside the actions, so the core stays free of I/O.

use super::{Core, Ports};
use crate::metrics::families::{TransferDirection, TransferResult};
use crate::proto::command::{CommandLine, Direction, Verb};
use crate::proto::reply::Reply;
use std::time::Instant;

/// One finished transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// The transfer command as the client spelled it, upper-cased (`RETR`, `LIST`, ...).
    pub command: String,
    /// Its argument as sent (a path, possibly relative, or empty for a bare `LIST`).
    pub path: Vec<u8>,
    pub direction: TransferDirection,
    /// Payload bytes relayed on the data connection.
    pub bytes: u64,
    pub started: Instant,
    pub ended: Instant,
    /// The name of the last `USER` sent to the server, if any.
    pub user: Option<Vec<u8>>,
    /// `TYPE A` was in force (the server accepted it).
    pub ascii: bool,
    pub result: TransferResult,
    /// The final reply the client got.
    pub code: u16,
    /// The server accepted the transfer command (a 1xx or 2xx came): the transfer log
    /// has a line only for these, as FTP servers write theirs.
    pub accepted: bool,
}

impl TransferRecord {
    /// An anonymous login (`anonymous` or `ftp`, any case), for xferlog's access mode.
    pub fn anonymous(&self) -> bool {
        self.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(b"anonymous") || u.eq_ignore_ascii_case(b"ftp"))
    }
}

/// The transfer in flight, until its outcome is known.
#[derive(Debug)]
pub(super) struct InFlight {
    id: u64,
    command: String,
    path: Vec<u8>,
    direction: TransferDirection,
    started: Instant,
    ascii: bool,
    user: Option<Vec<u8>>,
    accepted: bool,
    /// The client's ABOR cancelled it (whichever of the replies and the data task's
    /// report comes first).
    aborted: bool,
}

impl<P: Ports> Core<P> {
    /// A transfer command goes out with data task `id`.
    pub(super) fn record_start(&mut self, id: u64, cmd: &CommandLine, direction: Direction) {
        let direction = match (cmd.verb, direction) {
            (Verb::List | Verb::Nlst | Verb::Mlsd, _) => TransferDirection::listing,
            (_, Direction::Download) => TransferDirection::download,
            (_, Direction::Upload) => TransferDirection::upload,
        };
        self.in_flight = Some(InFlight {
            id,
            command: String::from_utf8_lossy(cmd.verb_str()).to_ascii_uppercase(),
            path: cmd.arg.to_vec(),
            direction,
            started: self.now,
            ascii: self.ascii,
            user: self.user.clone(),
            accepted: false,
            aborted: false,
        });
    }

    /// The client's ABOR is cancelling the transfer in flight.
    pub(super) fn record_aborted(&mut self) {
        if let Some(t) = self.in_flight.as_mut() {
            t.aborted = true;
        }
    }

    /// The server answered the transfer command with a 1xx or 2xx.
    pub(super) fn record_accepted(&mut self) {
        if let Some(t) = self.in_flight.as_mut() {
            t.accepted = true;
        }
    }

    /// Transfer `id` ended with `bytes` moved; the client is told `reply`.
    pub(super) fn record_end(&mut self, id: u64, bytes: u64, ok: bool, reply: &Reply) {
        let Some(t) = self.in_flight.take_if(|t| t.id == id) else {
            return;
        };
        let aborted = t.aborted
            || self
                .pending
                .iter()
                .any(|p| matches!(p.what, super::Pending::Relay(Verb::Abor)));
        let result = match (ok && reply.class() == 2, aborted) {
            (true, _) => TransferResult::ok,
            (false, true) => TransferResult::aborted,
            (false, false) => TransferResult::failed,
        };
        self.records.push(TransferRecord {
            command: t.command,
            path: t.path,
            direction: t.direction,
            bytes,
            started: t.started,
            ended: self.now,
            user: t.user,
            ascii: t.ascii,
            result,
            code: reply.code,
            accepted: t.accepted,
        });
    }

    /// The transfers that ended since the last call.
    pub fn take_records(&mut self) -> Vec<TransferRecord> {
        std::mem::take(&mut self.records)
    }
}
