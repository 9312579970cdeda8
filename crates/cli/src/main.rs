//! The `gatehouse` binary: parses flags and calls the library. Config flow starts here (`run`,
//! `check`, `routes`); nothing else lives in this crate.

use clap::{ArgGroup, Args, Parser, Subcommand};
use gatehouse_config::{Config, ConfigErrors};
use gatehouse_gateway::routing::{RouteFilter, RouteRow, Router};
use gatehouse_gateway::{ConfigSource, Gateway};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

mod alloc;
mod contract;

const EXAMPLES: &str = "\
Examples:
  gatehouse run                      serve the built-in quickstart on 127.0.0.1:8080 (admin on :9901)
  gatehouse run -c config/           serve every *.yaml/*.yml/*.json under config/, reloading on change
  gatehouse check config/            validate and print every error with file:line:col and field path
  gatehouse routes config/           print the compiled route table in matching order
  gatehouse diff old/ new/           the public API change between two configs; exit 1 if breaking
  gatehouse diff --git main.. gw/    the same between two git revisions of gw/ (no checkout)
  gatehouse openapi config/          the gateway's public API as one OpenAPI 3.1 document
  kill -HUP <pid>                    reload; or: curl -X POST 127.0.0.1:9901/reload
Every command takes the config as PATH or as -c PATH: `gatehouse run config/` and
`gatehouse check -c config/` work too.";

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "Gatehouse: a cloud-native API gateway", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the config is: every command accepts it both as a positional `PATH` and as `-c PATH`,
/// so the form that worked for one command never gets a confusing rejection from another.
#[derive(Args)]
struct ConfigArg {
    /// A manifest file or a directory of manifests (loaded recursively).
    #[arg(value_name = "PATH", conflicts_with = "config")]
    path: Option<PathBuf>,
    /// The same as PATH, as an option.
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn into_path(self) -> Option<PathBuf> {
        self.path.or(self.config)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic. Without a PATH, serves the embedded quickstart config.
    #[command(after_help = EXAMPLES)]
    Run {
        #[command(flatten)]
        source: ConfigArg,
    },
    /// Validate a config; print every error; exit 1 if there is any.
    #[command(group(ArgGroup::new("source").required(true).args(["path", "config"])))]
    Check {
        #[command(flatten)]
        source: ConfigArg,
    },
    /// Print the compiled route table, in the order requests are matched.
    #[command(group(ArgGroup::new("source").required(true).args(["path", "config"])))]
    Routes {
        #[command(flatten)]
        source: ConfigArg,
        #[command(flatten)]
        filter: RoutesFilter,
    },
    /// Report the public API change between two configs (OLD NEW, or --git A..B PATH), each change
    /// breaking, non-breaking or informational; exit 1 on breaking changes (see --fail-on), 2 when
    /// a config does not load.
    Diff {
        /// Read both configs from git: the revision range A..B (B defaults to HEAD) of PATH.
        #[arg(long, value_name = "A..B")]
        git: Option<String>,
        /// OLD and NEW config paths (file or directory); with --git, the one PATH in the repository.
        #[arg(value_name = "PATH", required = true, num_args = 1..=2)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: contract::Format,
        /// Which changes make the exit status 1.
        #[arg(long, value_enum, default_value = "breaking")]
        fail_on: contract::FailOn,
    },
    /// Print the gateway's public API as one OpenAPI 3.1 document (JSON).
    #[command(group(ArgGroup::new("source").required(true).args(["path", "config"])))]
    Openapi {
        #[command(flatten)]
        source: ConfigArg,
    },
}

/// Which rows `gatehouse routes` prints (the same filter as the admin API's `GET /routes`).
#[derive(Args)]
struct RoutesFilter {
    /// Only rows that can serve this host, in lookup order (`*.example.com` or `*`: that class).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only rows whose path pattern starts with this text (`/v1` shows `prefix /v1/tasks`).
    // Its own id: `path` is the positional config PATH.
    #[arg(long = "path", id = "path_filter", value_name = "TEXT")]
    path_prefix: Option<String>,
    /// Print at most this many rows.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Skip this many rows first.
    #[arg(long, value_name = "N", default_value_t = 0)]
    offset: usize,
}

/// Why a config with no listener is worth a word: it would serve only the admin API.
const NO_LISTENER: &str = "no Listener: the gateway would serve only its admin API";

/// The path a required [`ConfigArg`] holds; clap's `source` group makes sure there is one.
fn required(source: ConfigArg) -> PathBuf {
    source.into_path().unwrap_or_default()
}

fn print_errors(e: &ConfigErrors) {
    for err in &e.0 {
        eprintln!("{err}");
    }
    let n = e.0.len();
    eprintln!("{n} error{}", if n == 1 { "" } else { "s" });
}

/// Checks that can only be made by loading files the config points at (certificates).
fn check_files(config: &Config) -> Vec<String> {
    config
        .listeners
        .iter()
        .filter_map(|l| gatehouse_gateway::gateway::tls_config(l).err())
        .chain(contract::validation_errors(config))
        .collect()
}

fn main() -> ExitCode {
    gatehouse_gateway::memory::set_release(alloc::release_freed);
    let cli = Cli::parse();
    match cli.command {
        Command::Check { source } => match gatehouse_config::load_path(&required(source)) {
            Err(e) => {
                print_errors(&e);
                ExitCode::FAILURE
            }
            Ok(config) => {
                let problems = check_files(&config);
                if !problems.is_empty() {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    eprintln!(
                        "{} error{}",
                        problems.len(),
                        if problems.len() == 1 { "" } else { "s" }
                    );
                    return ExitCode::FAILURE;
                }
                if config.listeners.is_empty() {
                    eprintln!("warning: {NO_LISTENER} (`gatehouse run` refuses this config)");
                }
                contract::print_warnings(&config);
                let rules: usize = config.routes.iter().map(|r| r.rules.len()).sum();
                println!(
                    "ok: {} listener(s), {} backend(s), {} route(s) with {} rule(s); version {}",
                    config.listeners.len(),
                    config.backends.len(),
                    config.routes.len(),
                    rules,
                    config.version
                );
                // The process ends right after: freeing a large config one allocation at a time
                // is wasted work (10,000 routes: 14 M instructions, ~4 % of a check).
                std::mem::forget(config);
                ExitCode::SUCCESS
            }
        },
        Command::Routes { source, filter } => {
            match gatehouse_config::load_path(&required(source)) {
                Err(e) => {
                    print_errors(&e);
                    ExitCode::FAILURE
                }
                Ok(config) => {
                    print_routes(&config, filter);
                    ExitCode::SUCCESS
                }
            }
        }
        Command::Run { source } => run(source.into_path()),
        Command::Diff {
            git,
            paths,
            format,
            fail_on,
        } => contract::diff(git, paths, format, fail_on),
        Command::Openapi { source } => contract::openapi(&required(source)),
    }
}

/// Prints the route table as aligned columns; a filtered or paged table ends with a count on
/// stderr, so the rows on stdout stay one per line.
fn print_routes(config: &Config, f: RoutesFilter) {
    let router = Router::build(config, |_, _| ());
    let filter = RouteFilter {
        host: f.host,
        path: f.path_prefix,
        offset: f.offset,
        limit: f.limit,
    };
    let page = router.page(&filter, gatehouse_gateway::snapshot::describe_action);
    let rows = &page.routes;
    let w = |f: fn(&RouteRow) -> &str, title: &str| {
        rows.iter()
            .map(|r| f(r).len())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (wh, wp, wc, wr) = (
        w(|r| &r.host, "HOST"),
        w(|r| &r.path, "PATH"),
        w(|r| &r.conditions, "CONDITIONS"),
        w(|r| &r.rule, "RULE"),
    );
    let mut out = String::with_capacity(rows.len() * 80);
    let _ = writeln!(
        out,
        "{:wh$}  {:wp$}  {:wc$}  {:wr$}  ACTION",
        "HOST", "PATH", "CONDITIONS", "RULE"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:wh$}  {:wp$}  {:wc$}  {:wr$}  {}",
            r.host, r.path, r.conditions, r.rule, r.action
        );
    }
    // One write: printing 10,000 rows line by line through a locked stdout is measurably slower.
    print!("{out}");
    if rows.len() != page.total {
        eprintln!(
            "rows {}-{} of {}",
            (page.offset + 1).min(page.total),
            page.offset + rows.len(),
            page.total
        );
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let source = match path {
        Some(p) => ConfigSource::Path(p),
        None => ConfigSource::Embedded(gatehouse_config::QUICKSTART),
    };
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e);
            return ExitCode::FAILURE;
        }
    };
    if config.listeners.is_empty() {
        eprintln!("error: {NO_LISTENER}; add a Listener manifest");
        return ExitCode::FAILURE;
    }
    // Thread per core: every worker is a single-threaded runtime with its own accept loop on each
    // listener (SO_REUSEPORT), so a connection, its requests and the upstream connections they
    // pool stay on one thread, with no work-stealing atomics or cross-thread wake-ups. The main
    // thread is worker 0 and also runs the admin API and reloads.
    let workers = config
        .gateway
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut handles = vec![rt.handle().clone()];
    for i in 1..workers {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("gatehouse-worker-{i}"))
            .spawn(move || match runtime() {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    // Serves whatever the gateway spawns on it until the process exits.
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            });
        match spawned
            .map_err(|e| e.to_string())
            .and_then(|_| rx.recv().map_err(|e| e.to_string()))
        {
            Ok(Ok(h)) => handles.push(h),
            Ok(Err(e)) => {
                eprintln!("cannot start worker {i}: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("cannot start worker {i}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for h in &handles {
        h.spawn(alloc::collect_every_second());
    }
    rt.block_on(async move {
        let mut signals = match gatehouse_gateway::reload::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin = config.gateway.admin_address;
        let gw = match Gateway::start_on(source.clone(), config, handles).await {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        signals.reload_on_sighup(gw.clone());
        match gatehouse_gateway::admin::serve(gw.clone(), admin).await {
            Ok(addr) => tracing::info!(address = %addr, "admin listening"),
            Err(e) => {
                eprintln!("cannot listen on admin address {admin}: {e}");
                return ExitCode::FAILURE;
            }
        }
        let _watcher = gatehouse_gateway::reload::watch_files(gw.clone(), &source);
        let first = signals.terminated().await;
        tracing::info!(signal = first, "draining: no new connections; waiting for in-flight requests (send it again to exit at once)");
        tokio::select! {
            _ = gw.shutdown() => {}
            again = signals.terminated() => {
                // Exit now: nothing waits for in-flight requests, which are cut.
                eprintln!("gatehouse: {again} during the drain: exiting at once, cutting in-flight requests");
                std::process::exit(if again == "SIGINT" { 130 } else { 143 });
            }
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
