//! The `tollgate` command line.
//!
//! ```text
//! tollgate --config config.yaml --port 4000 [--host 0.0.0.0]
//! tollgate --model openai/gpt-4o            # no config file
//! tollgate                                  # the built-in demo (mock provider)
//! tollgate --config config.yaml --check     # validate and exit
//! tollgate migrate --config config.yaml      # migrate the database and exit
//! ```
//!
//! LiteLLM's spellings (`--num_workers`, `--detailed_debug`) are accepted, so
//! switching from `litellm --config …` is a change of the command name.

use super::Gateway;
use super::config::{self, ConfigError, LitellmParams, ModelEntry, ProxyConfig};
use super::server::{self, ServerConfig};
use crate::observe::LogSink;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The `tollgate` proxy.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An OpenAI-compatible LLM gateway (LiteLLM proxy config compatible)"
)]
pub struct Cli {
    /// LiteLLM-style config file.
    #[arg(long, short = 'c', env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Port to listen on (0 picks a free port).
    #[arg(long, short = 'p', env = "PORT", default_value_t = 4000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Serve these LiteLLM model strings without a config file (repeatable).
    #[arg(long, short = 'm')]
    pub model: Vec<String>,
    /// Worker threads (default: one per core).
    #[arg(long, alias = "num_workers")]
    pub num_workers: Option<usize>,
    /// Debug logging.
    #[arg(long, alias = "detailed_debug", alias = "debug")]
    pub detailed_debug: bool,
    /// JSON log lines (also `JSON_LOGS=true` or `litellm_settings.json_logs`).
    #[arg(long, alias = "json_logs")]
    pub json_logs: bool,
    /// Seconds in-flight requests may run after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30.0)]
    pub graceful_timeout: f64,
    /// Seconds a client may take to send a request's headers (slow-loris
    /// defence; the connection is closed after that).
    #[arg(long, env = "TOLLGATE_HEADER_READ_TIMEOUT", default_value_t = 30.0)]
    pub header_read_timeout: f64,
    /// Seconds a client may take to send a request's body (408 after that).
    #[arg(long, env = "TOLLGATE_BODY_READ_TIMEOUT", default_value_t = 60.0)]
    pub body_read_timeout: f64,
    /// Speak HTTP/2 to every upstream without negotiating it (h2c on plain
    /// HTTP): concurrent calls to one host share a connection. Only when
    /// every upstream accepts HTTP/2 (TLS upstreams negotiate it anyway).
    #[arg(long, env = "TOLLGATE_UPSTREAM_HTTP2")]
    pub upstream_http2: bool,
    /// Seconds a spare upstream connection is kept for a host that opens
    /// connections again and again (cut streams, bursts past the pool), so
    /// the next such request skips the TCP and TLS handshakes; 0 keeps none.
    #[arg(long, env = "TOLLGATE_UPSTREAM_SPARE", default_value_t = 2.0)]
    pub upstream_spare: f64,
    /// Check the config and exit.
    #[arg(long)]
    pub check: bool,
    /// A price file (LiteLLM's JSON format) merged over the bundled price table.
    #[arg(long, env = "TOLLGATE_PRICE_FILE")]
    pub price_file: Option<PathBuf>,
    /// Run without a database: no virtual keys, no spend logs.
    #[arg(long, env = "TOLLGATE_NO_DATABASE")]
    pub no_database: bool,
    /// A subcommand instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply the database migrations (of `general_settings.database_url`,
    /// `DATABASE_URL`, or the SQLite file next to the config) and exit.
    Migrate {
        /// LiteLLM-style config file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

/// Whether the config alone makes requests count tokens.
fn counts_tokens(config: &ProxyConfig) -> bool {
    let set = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k)
            .is_some_and(|v| !v.is_null() && v != &serde_json::Value::Bool(false))
    };
    ["max_budget", "max_end_user_budget"]
        .iter()
        .any(|k| set(&config.litellm_settings.other, k))
        || set(&config.router_settings.other, "enable_pre_call_checks")
        || set(&config.litellm_settings.other, "enable_pre_call_checks")
        || config
            .model_list
            .iter()
            .any(|m| m.litellm_params.tpm.is_some())
}

/// A timeout option in seconds: at least 1 ms, at most an hour (NaN is the minimum).
fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_nan() {
        0.001
    } else {
        s.clamp(0.001, 3600.0)
    })
}

/// The demo served when no config and no model are given.
fn demo_config() -> ProxyConfig {
    let entry = |name: &str| ModelEntry {
        model_name: name.to_owned(),
        litellm_params: LitellmParams {
            model: format!("mock/{name}"),
            api_key: None,
            api_base: None,
            base_url: None,
            organization: None,
            project: None,
            timeout: None,
            stream_timeout: None,
            rpm: None,
            tpm: None,
            weight: None,
            order: None,
            mock_response: None,
            extra_headers: None,
            headers: None,
            custom_llm_provider: None,
            other: Default::default(),
        },
        model_info: Default::default(),
    };
    ProxyConfig {
        model_list: vec![entry("demo"), entry("demo-embedding")],
        ..ProxyConfig::default()
    }
}

fn models_config(models: &[String]) -> ProxyConfig {
    let mut config = demo_config();
    config.model_list = models
        .iter()
        .map(|m| {
            let mut e = demo_config().model_list.remove(0);
            e.model_name.clone_from(m);
            e.litellm_params.model.clone_from(m);
            e
        })
        .collect();
    // Let clients use the bare name too: `openai/gpt-4o` answers as `gpt-4o`.
    for m in models {
        if let Some((_, bare)) = m.split_once('/')
            && !models.iter().any(|x| x == bare)
        {
            config.router_settings.model_group_alias.insert(
                bare.to_owned(),
                config::AliasTarget::Detailed {
                    model: m.clone(),
                    hidden: true,
                },
            );
        }
    }
    config
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Logs go to stderr through a writer thread: a request never waits for a
/// `write` (a full queue of 8,192 lines drops new lines rather than stall
/// requests; the queue is allocated up front, so it is kept small). Colours
/// only on a terminal. Keep the guard until exit: dropping
/// it writes what is queued.
#[must_use = "dropping the guard stops the log writer"]
fn init_logging(debug: bool, json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = if debug { "debug" } else { "info" };
    let filter = std::env::var("TOLLGATE_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(8_192)
        .thread_name("tollgate-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    guard
}

/// Loads the configuration the command line asks for.
pub fn load(cli: &Cli) -> Result<(ProxyConfig, Vec<String>), ConfigError> {
    if let Some(path) = &cli.config {
        let loaded = config::load(path, &env_lookup)?;
        Ok((loaded.config, loaded.warnings))
    } else if !cli.model.is_empty() {
        Ok((models_config(&cli.model), Vec::new()))
    } else {
        Ok((
            demo_config(),
            vec!["no --config or --model given: serving the built-in demo models `demo` and `demo-embedding` (mock provider, no network)".to_owned()],
        ))
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Migrate { config }) = &cli.command {
        return migrate(&cli, config.as_deref());
    }
    let (config, warnings) = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: config error: {e}");
            return ExitCode::from(2);
        }
    };
    let json = cli.json_logs
        || config.litellm_settings.json_logs.unwrap_or(false)
        || std::env::var("JSON_LOGS").is_ok_and(|v| v == "true" || v == "True" || v == "1");
    let _log_writer = init_logging(
        cli.detailed_debug || config.litellm_settings.set_verbose.unwrap_or(false),
        json,
    );
    let rt = match runtime(&cli) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let control = if cli.check || cli.no_database {
        None
    } else {
        match rt.block_on(start_control(&config, cli.config.as_deref())) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("tollgate: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let options = super::GatewayOptions {
        price_file: cli.price_file.clone(),
        control: control.clone(),
        body_timeout: Some(seconds(cli.body_read_timeout)),
        upstream_http2: cli.upstream_http2,
        upstream_spare: Some(if cli.upstream_spare > 0.0 {
            seconds(cli.upstream_spare)
        } else {
            Duration::ZERO
        }),
    };
    // Redis clients and background tasks need the runtime.
    let _entered = rt.enter();
    // A token vocabulary takes ~150 ms and tens of MiB to load: do it before
    // the first request needs it, and only when requests will be counted
    // (budgets and rate limits of keys, the gateway or end users; pre-call
    // checks). Otherwise it loads on first use.
    if control.is_some() || counts_tokens(&config) {
        std::thread::spawn(crate::tokens::warm_up);
    }
    let gateway = match Gateway::with_options(&config, &env_lookup, Arc::new(LogSink), &options) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tollgate: config error: {e}");
            return ExitCode::from(2);
        }
    };
    for w in warnings.iter().chain(&gateway.warnings) {
        tracing::warn!("{w}");
    }
    if cli.check {
        if let Err(e) = super::control::check_settings(&config, cli.config.as_deref(), &env_lookup)
        {
            eprintln!("tollgate: config error: {e}");
            return ExitCode::from(2);
        }
        println!(
            "config OK: {} deployment(s), {} model name(s)",
            config.model_list.len(),
            gateway.router.models().len()
        );
        return ExitCode::SUCCESS;
    }
    if !gateway.has_master_key {
        tracing::warn!(
            "NO MASTER KEY: general_settings.master_key is not set, so anyone who can reach this port can use every model on your keys"
        );
    }

    rt.block_on(async move {
        let addr = format!("{}:{}", cli.host, cli.port);
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tollgate: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let local: SocketAddr = listener
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], cli.port).into());
        // Replicas sharing Redis share router cooldowns too.
        let _cooldowns = gateway.limits.redis.clone().map(|conn| {
            crate::limits::SharedCooldowns::new(conn)
                .attach(&gateway.router, Duration::from_secs(1))
        });
        let _health = gateway
            .health_check_interval
            .map(|every| crate::router::health::spawn_checks(gateway.router.clone(), every));
        let _upkeep = gateway
            .metrics
            .as_ref()
            .map(super::observability::spawn_upkeep);
        let callbacks = gateway.callbacks.map(|r| r.spawn());
        let models: Vec<String> = gateway.router.models().into_iter().map(|m| m.id).collect();
        tracing::info!(models = ?models, "serving {} model name(s)", models.len());
        println!("tollgate listening on http://{local}");
        let server_config = ServerConfig {
            grace: Duration::from_secs_f64(cli.graceful_timeout.clamp(0.0, 3600.0)),
            header_read_timeout: seconds(cli.header_read_timeout),
            ..ServerConfig::default()
        };
        let limits = gateway.limits.clone();
        let grace = server_config.grace;
        // On a worker, not on this `block_on` thread: an accepted
        // connection's task then starts on the worker that accepted it,
        // instead of the main thread waking one (two thread wake-ups less
        // per new connection).
        let served = tokio::spawn(server::serve(
            listener,
            gateway.service,
            server_config,
            server::shutdown_signal(),
        ));
        // A panicked server loop still flushes what it can below, then
        // exits with a failure so that a supervisor restarts the proxy.
        let code = match served.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "the server loop ended abnormally");
                ExitCode::FAILURE
            }
        };
        // Settlements still queued for Redis: record them before exiting.
        if tokio::time::timeout(Duration::from_secs(10), limits.flush())
            .await
            .is_err()
        {
            tracing::error!("some budget settlements could not be recorded before exit");
        }
        if let Some(workers) = callbacks {
            // Deliver what the callbacks still hold (bounded by the grace period).
            workers.shutdown(grace.min(Duration::from_secs(10))).await;
        }
        if let Some(c) = &control {
            c.shutdown(grace.max(Duration::from_secs(5))).await;
        }
        code
    })
}

fn runtime(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.num_workers.filter(|n| *n > 0) {
        rt.worker_threads(n);
    }
    rt.build()
}

/// Opens (and migrates) the database and starts the control plane.
async fn start_control(
    config: &ProxyConfig,
    path: Option<&std::path::Path>,
) -> Result<super::control::ControlPlane, String> {
    let options = super::control::store_options(config, path, &env_lookup)
        .map_err(|e| format!("config error: {e}"))?;
    let store = crate::store::Store::open(&options)
        .await
        .map_err(|e| e.message().to_owned())?;
    tracing::info!(database = %store.describe(), "virtual keys and spend logs in {}", store.describe());
    super::control::ControlPlane::start(config, store).map_err(|e| format!("config error: {e}"))
}

/// `tollgate migrate`.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn migrate(cli: &Cli, path: Option<&std::path::Path>) -> ExitCode {
    let path = path.or(cli.config.as_deref());
    let config = match path {
        Some(p) => match config::load(p, &env_lookup) {
            Ok(l) => l.config,
            Err(e) => {
                eprintln!("tollgate: config error: {e}");
                return ExitCode::from(2);
            }
        },
        None => demo_config(),
    };
    let _log_writer = init_logging(cli.detailed_debug, cli.json_logs);
    let mut options = match super::control::store_options(&config, path, &env_lookup) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tollgate: config error: {e}");
            return ExitCode::from(2);
        }
    };
    options.migrate = true;
    let rt = match runtime(cli) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match crate::store::Store::open(&options).await {
            Ok(store) => {
                println!("migrated {}", store.describe());
                store.close().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate: {}", e.message());
                ExitCode::FAILURE
            }
        }
    })
}
