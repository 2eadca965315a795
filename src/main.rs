use anyhow::Context;
use clap::Parser;
use ftpgate::cli::{Cli, Command};
use ftpgate::metrics::Metrics;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match ftpgate::config::load(&config) {
            Ok(cfg) => match serde_yaml::to_string(&cfg) {
                Ok(text) => {
                    for w in &cfg.warnings {
                        eprintln!("ftpgate: warning: {w}");
                    }
                    println!("# effective configuration of {}\n{text}", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ftpgate: cannot print the configuration: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("ftpgate: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match ftpgate::config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("ftpgate: {e}");
                    return ExitCode::from(2);
                }
            };
            ftpgate::telemetry::init(&cfg.log);
            // Validation runs before logging exists: its warnings are emitted now.
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("ftpgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(cfg: ftpgate::config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let bound = ftpgate::server::bind(Arc::new(cfg), metrics).await?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        #[cfg(unix)]
        ignore_hangup();
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "ftpgate started");
        bound.serve(shutdown).await;
        tracing::info!("ftpgate stopped");
        Ok(())
    })
}

/// SIGHUP's default action would end the process with every session in it; it is what
/// operators and logrotate send. Until configuration reload exists it is logged and
/// otherwise ignored.
#[cfg(unix)]
fn ignore_hangup() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::warn!("SIGHUP received: configuration reload is not supported yet; running on, sessions untouched");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
