//! One load run: warmup, baseline, ramp, hold, end, reclaim; and the
//! report it produces.

use crate::cli::{Args, Mode};
use crate::client::{run_client, run_publisher, ClientPlan, ClientSlot};
use crate::report::{
    ConnectReport, CpuReport, DeliveryReport, ErrorsReport, ExpectationReport, MemoryReport,
    ReclaimReport, Report, Sample, SeriesReclaim,
};
use crate::scrape::{self, HttpUrl, Values};
use crate::stats::{Shared, Summary};
use async_lock::Semaphore;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::FutureExt;
use smol::Executor;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Extra time, past the connect and close bounds, that the run waits for
/// every client task to finish after the stop signal before cancelling
/// the stragglers.
const END_SLACK: Duration = Duration::from_secs(5);
/// File descriptors kept free for the process itself (stdio, the metrics
/// scrapes, the executor's reactor).
const SPARE_FDS: u64 = 64;

/// Runs the load described by `args` and returns its report.
pub fn run(args: &Args) -> Result<Report, String> {
    args.validate()?;
    raise_fd_limit(args.connections as u64)?;
    let executor = Arc::new(Executor::new());
    let (done_tx, done_rx) = smol::channel::bounded::<()>(1);
    std::thread::scope(|scope| {
        for _ in 1..args.threads {
            let executor = executor.clone();
            let done_rx = done_rx.clone();
            scope.spawn(move || smol::block_on(executor.run(done_rx.recv())));
        }
        let result = smol::block_on(executor.run(orchestrate(&executor, args)));
        drop(done_tx);
        result
    })
}

/// Raises the soft open-files limit to the hard one and checks that
/// `connections` sockets fit.
fn raise_fd_limit(connections: u64) -> Result<(), String> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| format!("cannot raise the open-files limit: {e}"))?;
    if connections + SPARE_FDS > limit {
        return Err(format!(
            "{connections} connections need about {} file descriptors, but the limit is {limit} (raise `ulimit -Hn`)",
            connections + SPARE_FDS
        ));
    }
    Ok(())
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The samples and the phase they are tagged with, shared with the sampler.
struct Recorder {
    phase: Mutex<&'static str>,
    samples: Mutex<Vec<Sample>>,
    scrape_failures: std::sync::atomic::AtomicU64,
}

impl Recorder {
    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    fn push(&self, shared: &Shared, values: Values, server_cpu_s: Option<f64>) {
        let phase = *self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let sample = Sample {
            t_s: shared.now_s(),
            phase,
            open: shared.open.load(Ordering::Relaxed),
            acked: shared.acked.load(Ordering::Relaxed),
            subscriptions_flowing: shared.subscriptions_flowing.load(Ordering::Relaxed),
            frames: shared.frames.load(Ordering::Relaxed),
            cycles: shared.cycles.load(Ordering::Relaxed),
            server_cpu_s,
            values: values
                .into_iter()
                .filter(|(name, _)| !name.contains('{'))
                .collect(),
        };
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sample);
    }
}

/// Fetches /metrics and records it as a sample; `None` when it failed.
async fn scrape_and_record(
    args: &Args,
    url: &HttpUrl,
    shared: &Shared,
    recorder: &Recorder,
) -> Option<Values> {
    match scrape::fetch_metrics(url, args.metrics_timeout).await {
        Ok(values) => {
            recorder.push(shared, values.clone(), scrape::cpu_seconds_of(&args.pid));
            Some(values)
        }
        Err(error) => {
            recorder.scrape_failures.fetch_add(1, Ordering::Relaxed);
            shared.note_failure(format!("/metrics: {error}"));
            None
        }
    }
}

fn client_plan(args: &Args, mode: Mode, subscriptions: usize) -> Result<ClientPlan, String> {
    let mut ws_config = WebSocketConfig::default();
    ws_config.read_buffer_size = args.read_buffer;
    // Send each frame at once: the client's frames are few and small.
    ws_config.write_buffer_size = 0;
    Ok(ClientPlan {
        url: args.url.clone(),
        authority: ClientPlan::authority_of(&args.url)?,
        subscriptions,
        period: Duration::from_millis(args.every_ms),
        mode,
        end: args.end,
        connect_timeout: args.connect_timeout,
        ack_timeout: args.ack_timeout,
        close_timeout: args.close_timeout,
        ws_config,
    })
}

/// One connection, one subscription, until its first result; then dropped.
async fn warmup(executor: &Arc<Executor<'static>>, args: &Args) -> Result<(), String> {
    let shared = Arc::new(Shared::new());
    let plan = Arc::new(client_plan(args, Mode::Reconnect, 1)?);
    let pending = Arc::new(Semaphore::new(1));
    let permit = pending.acquire_arc().await;
    let who = ClientSlot {
        protocol: args.protocol.for_connection(0),
        query: args.query_for(0).into(),
        subscribe_after: Duration::ZERO,
    };
    let task = executor.spawn(run_client(shared.clone(), plan, who, pending, permit));
    let bound = args.connect_timeout + args.ack_timeout + Duration::from_millis(10 * args.every_ms);
    let deadline = Instant::now() + bound;
    while shared.cycles.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    shared.stop.set();
    task.await;
    if shared.cycles.load(Ordering::Relaxed) == 0 {
        let failures = shared.failures.lock().unwrap_or_else(|e| e.into_inner());
        return Err(format!(
            "warmup: no result within {bound:?}: {}",
            failures.join("; ")
        ));
    }
    Ok(())
}

async fn orchestrate(executor: &Arc<Executor<'static>>, args: &Args) -> Result<Report, String> {
    let metrics_text = args.metrics_url()?;
    let metrics_url = HttpUrl::parse(&metrics_text)?;
    let started_at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let loadavg_start = loadavg();
    // Reachable at all?
    scrape::fetch_metrics(&metrics_url, args.metrics_timeout)
        .await
        .map_err(|e| format!("cannot read {metrics_text}: {e}"))?;

    if args.warmup {
        warmup(executor, args).await?;
    }
    smol::Timer::after(args.settle).await;

    let shared = Arc::new(Shared::new());
    let recorder = Arc::new(Recorder {
        phase: Mutex::new("baseline"),
        samples: Mutex::new(Vec::new()),
        scrape_failures: Default::default(),
    });
    let baseline = scrape_and_record(args, &metrics_url, &shared, &recorder)
        .await
        .ok_or_else(|| "cannot read the baseline from /metrics".to_owned())?;
    for series in &args.reclaim_series {
        if !baseline.contains_key(series) {
            return Err(format!(
                "/metrics has no series {series}: choose --reclaim-series among: {}",
                baseline.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let rss_series = "process_resident_memory_bytes";
    let rss_baseline = baseline.get(rss_series).copied();

    // The sampler: a chart point every sample interval until dropped.
    let sampler = {
        let (args, url, shared, recorder) = (
            args.clone(),
            metrics_url.clone(),
            shared.clone(),
            recorder.clone(),
        );
        executor.spawn(async move {
            loop {
                smol::Timer::after(args.sample_interval).await;
                scrape_and_record(&args, &url, &shared, &recorder).await;
            }
        })
    };

    // Ramp.
    recorder.set_phase("ramp");
    let plan = Arc::new(client_plan(args, args.mode, args.subscriptions)?);
    let pending = Arc::new(Semaphore::new(args.max_pending_connects));
    let mut tasks = Vec::with_capacity(args.connections);
    let spread = args
        .subscribe_spread
        .unwrap_or(Duration::from_millis(args.every_ms));
    // The say publisher connects before the clients; it says from the go
    // signal on.
    let publisher = args.say_every.map(|every| {
        let says: Vec<String> = (0..args.variants)
            .map(|k| args.say_document(k, "load"))
            .collect();
        executor.spawn(run_publisher(
            shared.clone(),
            plan.clone(),
            args.protocol.for_connection(0),
            says,
            every,
        ))
    });
    let mut documents: HashMap<String, Arc<str>> = HashMap::new();
    let ramp_start = Instant::now();
    let ramp_start_us = shared.now_us();
    for index in 0..args.connections {
        let query = documents
            .entry(args.query_for(index))
            .or_insert_with_key(|text| Arc::from(text.as_str()))
            .clone();
        if args.connect_rate > 0.0 {
            let due = ramp_start + Duration::from_secs_f64(index as f64 / args.connect_rate);
            if due > Instant::now() {
                smol::Timer::at(due).await;
            }
        }
        let permit = pending.acquire_arc().await;
        let who = ClientSlot {
            protocol: args.protocol.for_connection(index),
            query,
            subscribe_after: spread.mul_f64(index as f64 / args.connections as f64),
        };
        tasks.push(executor.spawn(run_client(
            shared.clone(),
            plan.clone(),
            who,
            pending.clone(),
            permit,
        )));
    }
    let deadline = ramp_start + args.ramp_timeout;
    let mut ramp_incomplete = false;
    if args.mode != Mode::Reconnect {
        // Every connection acknowledged (or failed)...
        while shared.acked_total.load(Ordering::Relaxed)
            + shared.connect_failures.load(Ordering::Relaxed)
            < args.connections as u64
        {
            if Instant::now() >= deadline {
                ramp_incomplete = true;
                shared.note_failure(format!(
                    "ramp: {} of {} connections acknowledged within {:?}",
                    shared.acked_total.load(Ordering::Relaxed),
                    args.connections,
                    args.ramp_timeout
                ));
                break;
            }
            smol::Timer::after(Duration::from_millis(5)).await;
        }
    }
    let ramp_done = Instant::now();
    // ...then subscribe everywhere at once.
    shared.go.set();
    if args.mode == Mode::Hold && args.subscriptions > 0 {
        loop {
            let acked = shared.acked.load(Ordering::Relaxed);
            let flowing = shared.subscriptions_flowing.load(Ordering::Relaxed);
            // Operations the server already ended (an error such as
            // UPSTREAM_BUSY) will never flow: do not wait for them.
            let ended = shared.operation_errors.load(Ordering::Relaxed)
                + shared.operation_completes.load(Ordering::Relaxed);
            if flowing as u64 + ended >= (acked * args.subscriptions) as u64 {
                break;
            }
            if Instant::now() >= deadline.max(ramp_done + args.ramp_timeout) {
                ramp_incomplete = true;
                shared.note_failure(format!(
                    "ramp: {flowing} of {} subscriptions had a result within {:?}",
                    acked * args.subscriptions,
                    args.ramp_timeout
                ));
                break;
            }
            smol::Timer::after(Duration::from_millis(5)).await;
        }
    }
    let subscribe_s = ramp_done.elapsed().as_secs_f64();
    let acked_at_ramp = shared.acked_total.load(Ordering::Relaxed);
    let last_ack_us = shared.last_ack_us.load(Ordering::Relaxed);
    let ramp_s = last_ack_us.saturating_sub(ramp_start_us) as f64 / 1e6;

    // Hold.
    recorder.set_phase("hold");
    shared.reset_latency();
    let hold_start = Instant::now();
    let frames_before = shared.frames.load(Ordering::Relaxed);
    let cycles_before = shared.cycles.load(Ordering::Relaxed);
    let each_cpu_before: Vec<Option<f64>> = args
        .pid
        .iter()
        .map(|pid| scrape::cpu_seconds(Some(*pid)))
        .collect();
    let loader_cpu_before = scrape::cpu_seconds(None);
    shared.recording.store(true, Ordering::Relaxed);
    smol::Timer::after(args.hold).await;
    shared.recording.store(false, Ordering::Relaxed);
    let window_s = hold_start.elapsed().as_secs_f64();
    let frames = shared.frames.load(Ordering::Relaxed) - frames_before;
    let cycles = shared.cycles.load(Ordering::Relaxed) - cycles_before;
    let server_cpu_each_s: Vec<Option<f64>> = args
        .pid
        .iter()
        .zip(&each_cpu_before)
        .map(|(pid, before)| {
            before
                .zip(scrape::cpu_seconds(Some(*pid)))
                .map(|(b, a)| a - b)
        })
        .collect();
    // The server's total: its processes' sum, `None` when there are none
    // or one could not be read (as `scrape::cpu_seconds_of`).
    let server_cpu_s = if server_cpu_each_s.is_empty() {
        None
    } else {
        server_cpu_each_s.iter().copied().sum::<Option<f64>>()
    };
    let loader_cpu_s = loader_cpu_before
        .zip(scrape::cpu_seconds(None))
        .map(|(before, after)| after - before);
    let connections_at_measure = shared.acked.load(Ordering::Relaxed);
    let loaded = scrape_and_record(args, &metrics_url, &shared, &recorder).await;
    let loader_rss = scrape::resident_bytes(None);

    // End.
    recorder.set_phase("end");
    let drop_at = Instant::now();
    let drop_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    shared.stop.set();
    let all_ended = async {
        for task in tasks.drain(..) {
            task.await;
        }
        true
    };
    let bound = args.connect_timeout + args.close_timeout + END_SLACK;
    let expired = async {
        smol::Timer::after(bound).await;
        false
    };
    let publisher_ended = async {
        if let Some(publisher) = publisher {
            publisher.await;
        }
    };
    if !all_ended.or(expired).await {
        shared.note_failure(format!(
            "{} clients had not ended {bound:?} after the stop; cancelled",
            tasks.len()
        ));
    }
    drop(tasks);
    // The publisher sees the same stop signal; bounded as the clients are.
    let bound = async {
        smol::Timer::after(args.connect_timeout + END_SLACK).await;
    };
    publisher_ended.or(bound).await;
    let sockets_closed_s = drop_at.elapsed().as_secs_f64();

    // Reclaim: poll until every series is back to its baseline.
    recorder.set_phase("reclaim");
    let mut reclaimed_s = None;
    let mut last = None;
    let deadline = drop_at + args.reclaim_timeout;
    loop {
        let values = scrape_and_record(args, &metrics_url, &shared, &recorder).await;
        if let Some(values) = values {
            let back = args.reclaim_series.iter().all(|series| {
                values.get(series).copied().unwrap_or(f64::INFINITY) <= baseline[series]
            });
            last = Some(values);
            if back {
                reclaimed_s = Some(drop_at.elapsed().as_secs_f64());
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        smol::Timer::after(args.reclaim_poll).await;
    }
    recorder.set_phase("done");
    drop(sampler);

    let samples = std::mem::take(&mut *recorder.samples.lock().unwrap_or_else(|e| e.into_inner()));
    let reclaim = ReclaimReport {
        reclaimed: reclaimed_s.is_some(),
        seconds: reclaimed_s,
        timeout_s: args.reclaim_timeout.as_secs_f64(),
        sockets_closed_s,
        seconds_after_sockets_closed: reclaimed_s.map(|s| (s - sockets_closed_s).max(0.0)),
        series: args
            .reclaim_series
            .iter()
            .map(|name| SeriesReclaim {
                name: name.clone(),
                baseline: baseline[name],
                loaded: loaded.as_ref().and_then(|v| v.get(name).copied()),
                peak: samples
                    .iter()
                    .filter_map(|s| s.values.get(name).copied())
                    .fold(None, |peak: Option<f64>, v| {
                        Some(peak.map_or(v, |p| p.max(v)))
                    }),
                last: last.as_ref().and_then(|v| v.get(name).copied()),
            })
            .collect(),
    };
    let expectations = args
        .expectations
        .iter()
        .map(|(name, expected)| {
            let seen: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.values.get(name).copied())
                .collect();
            let min = seen.iter().copied().fold(f64::INFINITY, f64::min);
            let max = seen.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            ExpectationReport {
                name: name.clone(),
                expected: *expected,
                samples: seen.len(),
                min: min.is_finite().then_some(min),
                max: max.is_finite().then_some(max),
                ok: !seen.is_empty() && seen.iter().all(|v| v == expected),
            }
        })
        .collect::<Vec<_>>();
    let rss_loaded = loaded.as_ref().and_then(|v| v.get(rss_series).copied());
    let memory = MemoryReport {
        connections_at_measure,
        rss_baseline_bytes: rss_baseline,
        rss_loaded_bytes: rss_loaded,
        rss_per_connection_bytes: rss_baseline.zip(rss_loaded).and_then(|(base, loaded)| {
            (connections_at_measure > 0).then(|| (loaded - base) / connections_at_measure as f64)
        }),
        loader_rss_bytes: loader_rss,
    };
    let connect = ConnectReport {
        attempted: args.connections,
        acked: acked_at_ramp,
        failures: shared.connect_failures.load(Ordering::Relaxed),
        target_rate_per_s: args.connect_rate,
        ramp_s,
        rate_per_s: (ramp_s > 0.0).then(|| acked_at_ramp as f64 / ramp_s),
        connect_to_ack: Summary::of(&shared.handshake),
        subscribe_s,
    };
    let expected_per_s = match args.mode {
        Mode::Hold => Some(
            (connections_at_measure * args.subscriptions) as f64 * 1000.0 / args.every_ms as f64,
        ),
        Mode::Churn | Mode::Reconnect => None,
    };
    let delivery = DeliveryReport {
        window_s,
        frames,
        frames_per_s: frames as f64 / window_s,
        expected_frames_per_s: expected_per_s,
        cycles,
        cycles_per_s: cycles as f64 / window_s,
        lateness: Summary::of(&shared.lateness),
        first_result: Summary::of(&shared.first_result),
        gap_excess: Summary::of(&shared.gap_excess),
        early_ticks: shared.early_ticks.load(Ordering::Relaxed),
        says_sent: shared.says_sent.load(Ordering::Relaxed),
        says_ok: shared.says_ok.load(Ordering::Relaxed),
        says_failed: shared.says_failed.load(Ordering::Relaxed),
        skipped_ticks: shared.skipped_ticks.load(Ordering::Relaxed),
    };
    let cpu = CpuReport {
        server_s: server_cpu_s,
        server_ms_per_1k_frames: server_cpu_s
            .filter(|_| frames > 0)
            .map(|s| s * 1e6 / frames as f64),
        server_each_s: server_cpu_each_s,
        loader_s: loader_cpu_s,
    };
    let errors = ErrorsReport {
        connect_failures: shared.connect_failures.load(Ordering::Relaxed),
        server_closes: shared.server_closes.load(Ordering::Relaxed),
        operation_errors: shared.operation_errors.load(Ordering::Relaxed),
        operation_completes: shared.operation_completes.load(Ordering::Relaxed),
        codes: shared
            .error_codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        scrape_failures: recorder.scrape_failures.load(Ordering::Relaxed),
        ramp_incomplete,
        messages: shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    };
    let passed = reclaim.reclaimed
        && expectations.iter().all(|e| e.ok)
        && !errors.ramp_incomplete
        && errors.connect_failures == 0
        && errors.server_closes == 0
        && errors.operation_errors == 0;
    Ok(Report {
        label: args.label.clone(),
        mode: args.mode,
        protocol: args.protocol,
        end: args.end,
        connections: args.connections,
        subscriptions: args.subscriptions,
        query: args.query(),
        every_ms: args.every_ms,
        hold_s: args.hold.as_secs_f64(),
        threads: args.threads,
        started_at_unix,
        drop_at_unix_ms,
        loadavg: [loadavg_start, loadavg()],
        connect,
        delivery,
        memory,
        cpu,
        reclaim,
        expectations,
        errors,
        passed,
        samples,
    })
}
