//! `tickflow registry` and `tickflow broker`: long-running local services.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::codec::registry::SchemaRegistry;
use crate::config::AppConfig;

/// Flags of `tickflow registry`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8081)]
    pub port: u16,
    /// Directory holding the registry's state [default: <state.dir>/registry].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the schema registry until interrupted.
pub async fn registry(args: RegistryArgs, app: AppConfig) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| app.state.dir.join("registry"));
    let registry = Arc::new(SchemaRegistry::open(&dir)?);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    println!(
        "schema registry listening on http://{} (state in {})",
        listener.local_addr()?,
        dir.display()
    );
    tokio::select! {
        r = registry.serve(listener) => r.context("serving the registry")?,
        _ = shutdown_signal() => {}
    }
    Ok(())
}

/// Flags of `tickflow broker`.
#[cfg(feature = "embedded-broker")]
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 9092)]
    pub port: u16,
    /// Directory for the broker's SQLite storage (created if missing).
    #[arg(long, default_value = "./state/broker")]
    pub data_dir: PathBuf,
    /// Keep everything in memory instead (lost on exit; offsets are unreliable across record
    /// batches in Tansu 0.6's memory engine, so do not use it for anything that resumes).
    #[arg(long)]
    pub memory: bool,
    /// Address (`host:port`) the broker tells clients to connect to, when they reach it
    /// through a proxy such as a TLS terminator [default: the listening address].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Require SASL/SCRAM (SHA-256 or SHA-512) as this user, as MSK's SCRAM listener does
    /// (put stunnel in front for SASL_SSL). Needs `--scram-password-file`; not with `--memory`.
    #[arg(long, requires = "scram_password_file", conflicts_with = "memory")]
    pub scram_user: Option<String>,
    /// File holding the SCRAM user's password (one line).
    #[arg(long, requires = "scram_user")]
    pub scram_password_file: Option<PathBuf>,
}

/// Runs the embedded broker until interrupted.
#[cfg(feature = "embedded-broker")]
pub async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    // Read before the working directory moves to the data directory.
    let scram = match (&args.scram_user, &args.scram_password_file) {
        (Some(name), Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading --scram-password-file {}", file.display()))?;
            let password = text.trim_end_matches(['\r', '\n']).to_string();
            Some(crate::broker::ScramUser {
                name: name.clone(),
                password,
            })
        }
        _ => None,
    };
    let storage = if args.memory {
        "memory://tansu/".to_string()
    } else {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        // Tansu resolves SQLite paths against the working directory.
        std::env::set_current_dir(&args.data_dir)
            .with_context(|| format!("entering {}", args.data_dir.display()))?;
        "sqlite://tansu.db".to_string()
    };
    let advertised = args.advertise.as_deref();
    let broker =
        crate::broker::EmbeddedBroker::start_with(&storage, args.port, advertised, scram.as_ref())
            .await?;
    let auth = match &scram {
        Some(user) => format!(", SASL/SCRAM as {}", user.name),
        None => String::new(),
    };
    println!(
        "kafka broker listening on {} (storage {storage}{auth})",
        broker.bootstrap()
    );
    tokio::select! {
        _ = broker.wait() => anyhow::bail!("the broker stopped"),
        _ = shutdown_signal() => {}
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
