//! The `terminus` binary: `terminus demo`, `terminus serve --config FILE` and
//! `terminus schema --proto FILE`.

use clap::Parser;
use std::process::ExitCode;
use terminus::cli::{Cli, Command};
use terminus::config::Config;
use terminus::run::{RunError, Runtime};
use terminus::server::DrainReport;
use tracing_subscriber::EnvFilter;

/// The global allocator: jemalloc, so that memory freed after a load (say
/// 3,000 clients leaving at once) goes back to the system within seconds
/// rather than staying in the allocator's free lists. docs/BENCHMARKS.md
/// has the measurements; docs/config.md the knob.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer that may live in a `static`.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a `'static` byte string that is never written.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
unsafe impl Sync for MallocConf {}

/// jemalloc's compiled-in options (it reads this symbol once, at its
/// start): a background thread purges freed pages, dirty pages are returned
/// after 1 s and never kept "muzzy" (`MADV_FREE`d pages still count in the
/// resident set until the kernel wants them). The environment variable
/// `_RJEM_MALLOC_CONF` overrides any of them (docs/config.md).
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let run_command = match cli.command {
        Command::Schema {
            protos,
            includes,
            upstream,
        } => {
            return match terminus::grpc::sdl::generate_from_files(&protos, &includes, &upstream) {
                Ok(sdl) => {
                    print!("{sdl}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("terminus: {error}");
                    ExitCode::from(2)
                }
            };
        }
        other => other,
    };
    let result = run(run_command);
    match result {
        Ok(report) if report.leaked_operations == 0 => {
            tracing::info!(leaked_operations = 0, "terminus stopped");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            tracing::error!(
                leaked_operations = report.leaked_operations,
                "terminus stopped with leaked operations"
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("terminus: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs a serving command on an executor of the configured thread count
/// (`[runtime] threads`, or `--threads` for `demo` and `demo-upstream`),
/// then stops the executor's threads.
fn run(command: Command) -> Result<DrainReport, RunError> {
    let default_threads = terminus::config::default_runtime_threads;
    // The threads' stop is bounded by the drain's own bound.
    let (threads, stop_within, config) = match &command {
        Command::Serve { config } => {
            let loaded = Config::load(config)?;
            (loaded.runtime.threads, loaded.timeouts.drain, Some(loaded))
        }
        Command::Demo { threads, .. } | Command::DemoUpstream { threads, .. } => (
            threads.unwrap_or_else(default_threads),
            terminus::config::Timeouts::default().drain,
            None,
        ),
        Command::Schema { .. } => return Err(RunError::from("schema runs above")),
    };
    let runtime = Runtime::start(threads)?;
    tracing::info!(threads = runtime.threads(), "executor threads");
    let result = runtime.block_on(async {
        match command {
            Command::Demo { listen, mysql, .. } => terminus::run::demo(listen, mysql).await,
            Command::Serve { config: path } => match config {
                Some(config) => terminus::run::serve_loaded(config, &path).await,
                None => terminus::run::serve(&path).await,
            },
            Command::DemoUpstream { listen, .. } => terminus::run::demo_upstream(listen).await,
            Command::Schema { .. } => Err(RunError::from("schema runs above")),
        }
    });
    runtime.shutdown(stop_within);
    result
}
