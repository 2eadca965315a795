use anyhow::Context;
use clap::Parser;
use ftpgate::cli::{Cli, Command};
use ftpgate::metrics::Metrics;
use ftpgate::server::Control;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};
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
        Command::Demo { bind } => demo(bind),
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
            match run(cfg, config) {
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

/// `ftpgate demo`: the embedded server, then `run` on the adapted shipped configuration.
fn demo(bind: std::net::SocketAddr) -> ExitCode {
    let demo = match ftpgate::demo::Demo::start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ftpgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = match demo.write_config(bind) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ftpgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match ftpgate::config::load(&path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ftpgate: demo configuration: {e}");
            return ExitCode::from(2);
        }
    };
    ftpgate::telemetry::init(&cfg.log);
    eprintln!("{}", demo.instructions(bind));
    let code = match run(cfg, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftpgate: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Dropping the demo removes its directory.
    let dir = demo.dir().to_path_buf();
    drop(demo);
    eprintln!("ftpgate demo: stopped; {} removed", dir.display());
    code
}

fn run(cfg: ftpgate::config::Config, path: PathBuf) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let admin = cfg.admin.as_ref().map(|a| a.bind);
        // Flush what a killed ftpgate left in its nftables table before any transfer.
        let kernel = cfg.data.path == ftpgate::config::DataPath::Kernel && ftpgate::kernel::init();
        let bound = ftpgate::server::bind(Arc::new(cfg), Arc::clone(&metrics)).await?;
        let control = bound.control();
        // The admin endpoint outlives the drain (its /readyz says 503 then) and ends with
        // the process.
        let admin_stop = CancellationToken::new();
        if let Some(addr) = admin {
            let listener = ftpgate::admin::bind(addr)?;
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!(admin.addr = %local, "admin endpoint listening");
            tokio::spawn(ftpgate::admin::serve(
                listener,
                Arc::new(metrics.registry()),
                Arc::new(control.clone()),
                admin_stop.clone(),
            ));
        }
        let signals = Signals::new().context("cannot install the signal handlers")?;
        tokio::spawn(signals.handle(control.clone(), path));
        tokio::spawn(report_status(control.clone()));
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "ftpgate started");
        let ready = control.clone();
        bound
            .serve_with(CancellationToken::new(), move || {
                ftpgate::notify::ready(&ready.status_line())
            })
            .await;
        admin_stop.cancel();
        if kernel {
            // The drain has ended every transfer; no mapping is left to serve.
            ftpgate::kernel::shutdown();
        }
        tracing::info!("ftpgate stopped");
        Ok(())
    })
}

/// The signals an operator sends. Installed before serving, so none of them can take
/// the default action (ending the process with every session in it) once ftpgate runs.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// SIGHUP reloads; the first SIGTERM/SIGINT drains, the next one cuts.
    async fn handle(mut self, control: Control, path: PathBuf) {
        loop {
            let name = tokio::select! {
                _ = self.hup.recv() => {
                    reload(&control, &path).await;
                    continue;
                }
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            };
            if control.is_draining() {
                tracing::warn!(
                    signal = name,
                    "second stop signal: cutting every session now"
                );
                control.cut();
            } else {
                tracing::info!(signal = name, "stop signal: draining");
                ftpgate::notify::stopping(&control.status_line());
                control.drain();
            }
        }
    }
}

async fn reload(control: &Control, path: &Path) {
    if control.is_draining() {
        tracing::warn!("SIGHUP while draining: ignored");
        return;
    }
    ftpgate::notify::reloading();
    // Whatever becomes of the reload: logrotate sent this to have the log reopened.
    control.reopen_logs();
    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
    match control.reload_from(path).await {
        Ok(r) => tracing::info!(
            added = ?r.added,
            removed = ?r.removed,
            kept = ?r.kept,
            "configuration reloaded: new sessions use it, running sessions keep theirs"
        ),
        Err(e) => tracing::error!("reload failed, the running configuration stays: {e}"),
    }
    ftpgate::notify::ready(&control.status_line());
}

/// Keeps systemd's `STATUS=` current while a service manager listens.
async fn report_status(control: Control) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        ftpgate::notify::status(&control.status_line());
    }
}
