//! The transfer log (`log.xferlog`): one line per finished file transfer in the xferlog
//! format ([`format`]), written by one task so that a session never waits on the disk.
//!
//! Sessions hand lines to a bounded queue; when it is full the line is dropped and
//! `ftpgate_xferlog_dropped_total` counts it, so a slow or full disk never stalls a
//! transfer. [`XferLog::reopen`] (SIGHUP) makes the writer close and reopen the path, so
//! logrotate's rename-then-signal works; `copytruncate` works without it (O_APPEND).

pub mod format;

use crate::metrics::Metrics;
use crate::session::core::TransferRecord;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};

/// Lines waiting for the writer; beyond this they are dropped and counted.
const QUEUE: usize = 4096;
/// The writer flushes after at most this many lines (and whenever the queue is empty).
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
#[error("log.xferlog: cannot open {path}: {source}")]
pub struct OpenError {
    path: PathBuf,
    source: std::io::Error,
}

/// The handle sessions write through (cheap to clone).
#[derive(Debug, Clone)]
pub struct XferLog {
    lines: mpsc::Sender<String>,
    reopen: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl XferLog {
    /// Opens `path` (append, create with mode 0640) and starts the writer task. Call it
    /// inside the runtime. Fails, naming the key, if the file cannot be opened.
    pub async fn open(path: &Path, metrics: Arc<Metrics>) -> Result<XferLog, OpenError> {
        let file = open(path).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let reopen = Arc::new(Notify::new());
        tokio::spawn(writer(path.to_path_buf(), file, rx, Arc::clone(&reopen)));
        Ok(XferLog {
            lines: tx,
            reopen,
            metrics,
        })
    }

    /// Queues the line for `record` (none for a listing, or for a transfer the server
    /// refused before any data), never waiting.
    pub fn record(&self, record: &TransferRecord, client: IpAddr) {
        if !record.accepted {
            return;
        }
        let Some(mut line) = format::line(record, client, &format::now()) else {
            return;
        };
        line.push('\n');
        if self.lines.try_send(line).is_err() {
            self.metrics.families.xferlog_dropped.inc();
        }
    }

    /// Closes and reopens the file at its path (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.notify_one();
    }
}

async fn open(path: &Path) -> Result<tokio::fs::File, OpenError> {
    tokio::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .await
        .map_err(|source| OpenError {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes queued lines; ends when every handle is gone. An I/O error is logged once per
/// run of failures; the lines of a failing write are lost, never retried forever.
async fn writer(
    path: PathBuf,
    file: tokio::fs::File,
    mut lines: mpsc::Receiver<String>,
    reopen: Arc<Notify>,
) {
    let mut out = tokio::io::BufWriter::new(file);
    let mut failing = false;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let mut batch = vec![line];
                while batch.len() < BATCH {
                    match lines.try_recv() {
                        Ok(l) => batch.push(l),
                        Err(_) => break,
                    }
                }
                let mut result = Ok(());
                for l in &batch {
                    result = result.and(out.write_all(l.as_bytes()).await);
                }
                let result = result.and(out.flush().await);
                match (result, failing) {
                    (Err(e), false) => {
                        tracing::error!(path = %path.display(), error = %e, "cannot write the transfer log");
                        failing = true;
                    }
                    (Ok(()), true) => {
                        tracing::info!(path = %path.display(), "transfer log writes again");
                        failing = false;
                    }
                    _ => {}
                }
            }
            _ = reopen.notified() => {
                let _ = out.flush().await;
                match open(&path).await {
                    Ok(f) => {
                        out = tokio::io::BufWriter::new(f);
                        tracing::info!(path = %path.display(), "transfer log reopened");
                    }
                    Err(e) => tracing::error!("{e}; writing on to the old file"),
                }
            }
        }
    }
    let _ = out.flush().await;
}
