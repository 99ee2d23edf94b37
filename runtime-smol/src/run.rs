//! What the `terminus` binary runs: `demo` and `serve`, each until SIGTERM
//! or SIGINT, then a bounded drain; and the executor they run on.

use crate::config::{Config, GrpcUpstreamConfig, MysqlDbConfig};
use crate::demo_upstream::{self, DemoUpstream};
use crate::grpc::GrpcUpstream;
use crate::mysql::MysqlPool;
use crate::server::{DrainReport, Running, Server};
use crate::upstreams::Upstreams;
use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use terminus_core::graphql::{demo, Schema};

/// The executor every task of the process runs on (through
/// [`crate::tasks::spawn`]), run by `threads` threads named
/// `terminus-exec-N`, with their owner: [`Runtime::shutdown`] stops and
/// joins them. It is async-executor's `Executor`, the one smol's global
/// executor is made of (smol's documentation advises a program to make its
/// own); its thread count is `[runtime] threads` (docs/config.md) rather
/// than the `SMOL_THREADS` environment variable, and its threads have an
/// owner, where smol's run until the process exits.
pub struct Runtime {
    stop: async_channel::Sender<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Disconnected once every executor thread has returned: each holds a
    /// sender, dropped as its thread ends.
    exited: std::sync::mpsc::Receiver<()>,
}

impl Runtime {
    /// Starts `threads` threads on a new executor and makes it the one
    /// [`crate::tasks::spawn`] uses. Fails if a runtime was started before
    /// in this process, or a thread cannot be started.
    pub fn start(threads: usize) -> Result<Runtime, RunError> {
        let threads = crate::config::check_runtime_threads(threads)?;
        let executor = Arc::new(async_executor::Executor::new());
        if !crate::tasks::install(executor.clone()) {
            return Err("the executor was already started in this process".into());
        }
        // Closed (never sent on) by `shutdown`: each thread's `run` ends.
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let (exit, exited) = std::sync::mpsc::channel::<()>();
        let mut runtime = Runtime {
            stop,
            threads: Vec::with_capacity(threads),
            exited,
        };
        for n in 1..=threads {
            let executor = executor.clone();
            let stopped = stopped.clone();
            let exit = exit.clone();
            let thread = std::thread::Builder::new()
                .name(format!("terminus-exec-{n}"))
                .spawn(move || {
                    run_executor(&executor, &stopped);
                    drop(exit);
                });
            match thread {
                Ok(handle) => runtime.threads.push(handle),
                Err(e) => {
                    // The threads already started have run no task: they
                    // return as soon as they see the stop.
                    runtime.stop.close();
                    return Err(format!("cannot start executor thread {n}: {e}").into());
                }
            }
        }
        // Only the threads hold senders now.
        drop(exit);
        tracing::debug!(threads, "executor started");
        Ok(runtime)
    }

    /// Threads running the executor.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Runs `future` on the calling thread (it spawns its work through
    /// [`crate::tasks::spawn`]) until it is done.
    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        smol::block_on(future)
    }

    /// Stops the executor's threads once each has finished the task it is
    /// polling, and waits for them, at most `within` (the binary passes
    /// `timeouts.drain`): a thread still inside a task's poll by then is
    /// left to the process's exit, and logged. Tasks still alive (counted
    /// in `DrainReport::live_tasks_after`) are not polled again. Returns
    /// whether every thread stopped in time.
    pub fn shutdown(self, within: std::time::Duration) -> bool {
        self.stop.close();
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.exited.recv_timeout(left) {
                // Nothing is ever sent: only the senders' drops count.
                Ok(()) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let running = self.threads.iter().filter(|t| !t.is_finished()).count();
                    tracing::error!(
                        running,
                        ?within,
                        "executor threads still inside a task's poll; leaving them to the exit"
                    );
                    return false;
                }
            }
        }
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("an executor thread panicked outside a task");
            }
        }
        true
    }
}

/// One executor thread: runs tasks until the stop channel is closed. A
/// task's panic is caught by async-task and given to the task's handle;
/// anything else that unwinds restarts the loop, as smol's global executor
/// does.
fn run_executor(
    executor: &async_executor::Executor<'static>,
    stopped: &async_channel::Receiver<()>,
) {
    loop {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            smol::block_on(executor.run(async {
                // Err: closed by `shutdown`; nothing is ever sent.
                let _ = stopped.recv().await;
            }))
        }));
        if run.is_ok() {
            return;
        }
    }
}

/// Why the binary stopped with a failure.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// `terminus demo`: the demo gRPC upstream on a loopback port and the
/// gateway in front of it, until a signal.
pub async fn demo(listen: SocketAddr, mysql: Option<String>) -> Result<DrainReport, RunError> {
    let upstream = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (config, schema, upstreams) =
        demo_parts(listen, upstream.endpoint(), mysql.as_deref()).await?;
    let running = Server::start_with(config, schema, upstreams).await?;
    println!(
        "terminus demo: demo gRPC upstream at {}",
        upstream.endpoint()
    );
    if let Some(url) = &mysql {
        println!("terminus demo: MySQL fields (messages with their author, postMessage, messageBoard) on {url}");
    }
    print_urls(&running);
    let report = serve_until_signal(running).await?;
    upstream.stop().await;
    Ok(report)
}

/// The demo's config, schema and upstreams, with the demo gRPC upstream at
/// `endpoint` under the name the demo schema uses. With `mysql_url`, the
/// schema gains the MySQL demo fields on database `main` at that URL, and
/// their table is created when missing.
pub async fn demo_parts(
    listen: SocketAddr,
    endpoint: String,
    mysql_url: Option<&str>,
) -> Result<(Config, Schema, Upstreams), RunError> {
    let mut config = Config::with_schema(PathBuf::from(demo::SCHEMA_FILE));
    config.listen = listen;
    let grpc = GrpcUpstreamConfig {
        endpoint,
        ..GrpcUpstreamConfig::default()
    };
    let client = GrpcUpstream::from_descriptors("demo", &grpc, demo_upstream::descriptor_pool())?;
    config.grpc.insert("demo".to_owned(), grpc);
    let mut upstreams = Upstreams::default();
    upstreams.insert_grpc("demo", client);
    let schema = match mysql_url {
        None => Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE)?,
        Some(url) => {
            let db = crate::upstreams::with_listener_defaults(&MysqlDbConfig::new(url), listen);
            // The pool's errors redact the url's password.
            let pool = MysqlPool::new("main", &db).map_err(|e| format!("--mysql: {e}"))?;
            pool.execute(demo::MYSQL_TABLE_DDL, &[])
                .await
                .map_err(|e| format!("--mysql: cannot create the demo table: {e}"))?;
            for (i, statement) in demo::MYSQL_SETUP.iter().enumerate() {
                let done = pool.execute(statement, &[]).await;
                // The last one only upgrades a table from before authors.
                if let Err(e) = done {
                    if i + 1 < demo::MYSQL_SETUP.len() {
                        return Err(format!("--mysql: cannot set up the demo tables: {e}").into());
                    }
                    tracing::info!(error = %e, "demo: author_id column not added (it exists, or the server is MySQL)");
                }
            }
            config.mysql.insert("main".to_owned(), db);
            upstreams.insert_mysql("main", pool);
            Schema::parse(
                demo::SCHEMA_WITH_MYSQL_SDL,
                "core/schemas/demo_mysql.graphql",
            )?
        }
    };
    Ok((config, schema, upstreams))
}

/// `terminus serve --config FILE`.
pub async fn serve(config_path: &Path) -> Result<DrainReport, RunError> {
    serve_loaded(Config::load(config_path)?, config_path).await
}

/// `terminus serve` with `config`, already read from `config_path` (the
/// binary reads it first for `[runtime] threads`).
pub async fn serve_loaded(config: Config, config_path: &Path) -> Result<DrainReport, RunError> {
    let running = Server::start(config).await?;
    // SIGHUP and POST /admin/reload read this file again
    // (runtime-smol/src/reload.rs).
    *running
        .gateway()
        .config_path
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(config_path.to_path_buf());
    print_urls(&running);
    serve_until_signal(running).await
}

/// `terminus demo-upstream`: only the demo gRPC upstream, until a signal.
/// Reports an empty drain: it serves no GraphQL operations.
pub async fn demo_upstream(listen: SocketAddr) -> Result<DrainReport, RunError> {
    let started = std::time::Instant::now();
    let upstream = DemoUpstream::start(listen).await?;
    println!(
        "terminus demo-upstream: gRPC service terminus.demo.v1.Demo at {}",
        upstream.endpoint()
    );
    wait_for_signal().await?;
    upstream.stop().await;
    Ok(DrainReport {
        leaked_operations: 0,
        forced_connections: 0,
        live_tasks_after: crate::tasks::live_tasks(),
        took: started.elapsed(),
    })
}

fn print_urls(running: &Running) {
    let addr = running.local_addr();
    // With `[tls]` the one listener speaks only TLS (docs/security.md).
    let (http, ws) = if running.gateway().config.tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("terminus listening on {http}://{addr}");
    println!("  GraphQL (WebSocket, POST): {ws}://{addr}/graphql  {http}://{addr}/graphql");
    println!("  admin page:                {http}://{addr}/admin");
    println!("  browser simulator:         {http}://{addr}/simulator/");
    println!("  metrics:                   {http}://{addr}/metrics");
    println!("  health, readiness:         {http}://{addr}/healthz  {http}://{addr}/readyz");
}

/// Serves until SIGTERM or SIGINT, then drains; SIGHUP reloads the config
/// and schema (runtime-smol/src/reload.rs) and serving goes on.
async fn serve_until_signal(running: Running) -> Result<DrainReport, RunError> {
    let mut signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup])?;
    loop {
        let signal = signals.next().await;
        if let Some(Ok(Signal::Hup)) = signal {
            tracing::info!("SIGHUP received: reloading the config and schema");
            // The outcome is logged and shown on /admin by `reload`.
            let _ = crate::reload::reload(running.gateway()).await;
            continue;
        }
        tracing::info!(?signal, "signal received: draining");
        break;
    }
    Ok(running.shutdown().await)
}

/// Waits for SIGTERM or SIGINT.
async fn wait_for_signal() -> Result<(), RunError> {
    let mut signals = Signals::new([Signal::Term, Signal::Int])?;
    let signal = signals.next().await;
    tracing::info!(?signal, "signal received: draining");
    Ok(())
}
