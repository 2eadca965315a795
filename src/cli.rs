//! Command line (clap derive).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ftpgate",
    version,
    about = "A firewall- and NAT-aware FTP proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "config/ftpgate.yaml")]
        config: PathBuf,
    },
    /// A trial with nothing else installed: an embedded FTP server (anonymous, sample
    /// files in a temporary directory) behind ftpgate, with the shipped configuration.
    Demo {
        /// Where ftpgate listens for the demo's clients.
        #[arg(long, default_value = "127.0.0.1:2121")]
        bind: std::net::SocketAddr,
    },
    /// Validate a configuration file and print the effective configuration.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "config/ftpgate.yaml")]
        config: PathBuf,
    },
}
