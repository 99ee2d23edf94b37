//! The result of a run: a table for people, JSON for tools, and an SVG
//! chart of connections, live operations, fds and RSS over time.

use crate::cli::{EndMode, Mode, ProtocolChoice};
use crate::scrape::Values;
use crate::stats::Summary;
use serde::Serialize;
use std::fmt::Write as _;

/// One point of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// baseline, ramp, hold, end, reclaim or done.
    pub phase: &'static str,
    /// Client sockets open.
    pub open: usize,
    /// Client connections acknowledged.
    pub acked: usize,
    /// Subscriptions that have received a result.
    pub subscriptions_flowing: usize,
    /// Results received so far.
    pub frames: u64,
    /// Churn or reconnect cycles so far.
    pub cycles: u64,
    /// The server's CPU seconds so far (with --pid).
    pub server_cpu_s: Option<f64>,
    /// The server's unlabelled /metrics series.
    pub values: Values,
}

/// The ramp.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    /// Connections the run opened.
    pub attempted: usize,
    /// Acknowledged by the end of the ramp.
    pub acked: u64,
    /// Connect, handshake or ack failures.
    pub failures: u64,
    /// Requested connections per second (0: unpaced).
    pub target_rate_per_s: f64,
    /// From the first connect to the last ack.
    pub ramp_s: f64,
    /// Acknowledged connections per second over the ramp.
    pub rate_per_s: Option<f64>,
    /// Connect start to `connection_ack`.
    pub connect_to_ack: Summary,
    /// Hold mode: from the end of the ramp (every connection acknowledged,
    /// then every client subscribes) until every subscription had a result.
    pub subscribe_s: f64,
}

/// Results received during the hold window.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    /// Length of the window, s.
    pub window_s: f64,
    /// Results received in the window.
    pub frames: u64,
    /// Results per second.
    pub frames_per_s: f64,
    /// What the schedule asks for (hold mode).
    pub expected_frames_per_s: Option<f64>,
    /// Churn or reconnect cycles in the window.
    pub cycles: u64,
    /// Cycles per second.
    pub cycles_per_s: f64,
    /// Lateness of ticks against their schedule (see `TickTrack`).
    pub lateness: Summary,
    /// A `subscribe` sent to its first result (in the window).
    pub first_result: Summary,
    /// Inter-arrival time minus the period.
    pub gap_excess: Summary,
    /// Ticks that came before their schedule.
    pub early_ticks: u64,
    /// `say` mutations the publisher sent (--say-every).
    pub says_sent: u64,
    /// ... answered with data.
    pub says_ok: u64,
    /// ... answered with an error.
    pub says_failed: u64,
    /// Ticks never received over the whole run: seq numbers skipped by a
    /// subscription (lost on the way, since the demo numbers every tick).
    pub skipped_ticks: u64,
}

/// The server's memory.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Acknowledged connections when the loaded RSS was read.
    pub connections_at_measure: usize,
    /// RSS at the baseline.
    pub rss_baseline_bytes: Option<f64>,
    /// RSS at the end of the hold.
    pub rss_loaded_bytes: Option<f64>,
    /// (loaded - baseline) / connections.
    pub rss_per_connection_bytes: Option<f64>,
    /// The load generator's own RSS at the end of the hold.
    pub loader_rss_bytes: Option<u64>,
}

/// CPU time during the hold window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// The server's CPU seconds (with --pid).
    pub server_s: Option<f64>,
    /// The server's CPU milliseconds per 1,000 results.
    pub server_ms_per_1k_frames: Option<f64>,
    /// The CPU seconds of each `--pid`, in the order given (a gateway and
    /// its upstream apart); `None` for one that could not be read.
    pub server_each_s: Vec<Option<f64>>,
    /// The load generator's CPU seconds.
    pub loader_s: Option<f64>,
}

/// One series of the reclaim check.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesReclaim {
    /// Series name.
    pub name: String,
    /// Value at the baseline.
    pub baseline: f64,
    /// Value at the end of the hold.
    pub loaded: Option<f64>,
    /// Largest value seen.
    pub peak: Option<f64>,
    /// Value at the last poll.
    pub last: Option<f64>,
}

/// After the connections ended.
#[derive(Debug, Clone, Serialize)]
pub struct ReclaimReport {
    /// Whether every series came back to its baseline within the bound.
    pub reclaimed: bool,
    /// Seconds from the stop signal to the first poll at baseline.
    pub seconds: Option<f64>,
    /// The bound.
    pub timeout_s: f64,
    /// Seconds from the stop signal until every client socket was closed.
    pub sockets_closed_s: f64,
    /// Seconds from the last client socket closing to the first poll at
    /// baseline (0 when already back by then).
    pub seconds_after_sockets_closed: Option<f64>,
    /// Each series.
    pub series: Vec<SeriesReclaim>,
}

/// One `--expect NAME=VALUE`.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectationReport {
    /// Series name.
    pub name: String,
    /// Required value.
    pub expected: f64,
    /// Samples that had the series.
    pub samples: usize,
    /// Smallest value seen.
    pub min: Option<f64>,
    /// Largest value seen.
    pub max: Option<f64>,
    /// Every sample had the required value.
    pub ok: bool,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorsReport {
    /// Connect, handshake or ack failures.
    pub connect_failures: u64,
    /// Connections the server closed before the client meant to end them.
    pub server_closes: u64,
    /// Operations ended by `error`.
    pub operation_errors: u64,
    /// Operations ended by the server's `complete`.
    pub operation_completes: u64,
    /// Operation errors by `extensions.code`.
    pub codes: std::collections::BTreeMap<String, u64>,
    /// /metrics requests that failed.
    pub scrape_failures: u64,
    /// Not every connection was acknowledged, or not every subscription
    /// had a result (or an error), within --ramp-timeout.
    pub ramp_incomplete: bool,
    /// The first distinct failure messages.
    pub messages: Vec<String>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's name in this run.
    pub label: String,
    /// Hold, churn or reconnect.
    pub mode: Mode,
    /// Subprotocol choice.
    pub protocol: ProtocolChoice,
    /// How connections ended.
    pub end: EndMode,
    /// Connections.
    pub connections: usize,
    /// Subscriptions per connection.
    pub subscriptions: usize,
    /// The subscription document.
    pub query: String,
    /// Expected tick period, ms.
    pub every_ms: u64,
    /// Hold length, s.
    pub hold_s: f64,
    /// Load generator threads.
    pub threads: usize,
    /// Wall clock at the start, Unix seconds.
    pub started_at_unix: u64,
    /// Wall clock when every client was told to end, Unix milliseconds
    /// (to tell a server log's events during the hold from those after).
    pub drop_at_unix_ms: u64,
    /// /proc/loadavg when the run started and when it ended: how busy the
    /// machine was (other work shares its cores).
    pub loadavg: [Option<String>; 2],
    /// The ramp.
    pub connect: ConnectReport,
    /// Results during the hold.
    pub delivery: DeliveryReport,
    /// Server memory.
    pub memory: MemoryReport,
    /// CPU during the hold.
    pub cpu: CpuReport,
    /// After the end.
    pub reclaim: ReclaimReport,
    /// `--expect` checks.
    pub expectations: Vec<ExpectationReport>,
    /// Failures.
    pub errors: ErrorsReport,
    /// Reclaimed, expectations met, the ramp complete, no connection
    /// failed, no operation ended with an error.
    pub passed: bool,
    /// The time series.
    pub samples: Vec<Sample>,
}

fn opt(value: Option<f64>, unit: &str, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}{unit}"))
}

/// " (per process: a s, b s)" when the server is more than one process
/// (a gateway and its upstream), else nothing.
fn each_process(each: &[Option<f64>]) -> String {
    if each.len() < 2 {
        return String::new();
    }
    let parts: Vec<String> = each.iter().map(|s| opt(*s, " s", 2)).collect();
    format!(" (per process: {})", parts.join(", "))
}

fn summary(s: &Summary) -> String {
    if s.count == 0 {
        return "n/a".to_owned();
    }
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        s.p50_ms, s.p99_ms, s.max_ms, s.count
    )
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        row(
            "run",
            format!(
                "{} / {:?} / {} conns x {} subs / {:?} end / {:?}",
                self.label,
                self.mode,
                self.connections,
                self.subscriptions,
                self.end,
                self.protocol
            ),
        );
        row("query", self.query.clone());
        row(
            "machine load",
            format!(
                "{} at start, {} at end (/proc/loadavg)",
                self.loadavg[0].as_deref().unwrap_or("n/a"),
                self.loadavg[1].as_deref().unwrap_or("n/a")
            ),
        );
        let c = &self.connect;
        if self.mode == Mode::Reconnect {
            row(
                "connect",
                format!(
                    "{} clients reconnecting; {} connections acknowledged by the end of the ramp, {} failures",
                    c.attempted, c.acked, c.failures
                ),
            );
        } else {
            row(
                "connect",
                format!(
                    "{} acked of {} in {:.2} s = {} conn/s (target {}), {} failures",
                    c.acked,
                    c.attempted,
                    c.ramp_s,
                    opt(c.rate_per_s, "", 0),
                    if c.target_rate_per_s > 0.0 {
                        format!("{:.0}", c.target_rate_per_s)
                    } else {
                        "unpaced".to_owned()
                    },
                    c.failures
                ),
            );
        }
        row("connect to ack", summary(&c.connect_to_ack));
        if self.mode == Mode::Hold && self.subscriptions > 0 {
            row(
                "subscribe all",
                format!(
                    "every subscription had a result {:.2} s after the ramp",
                    c.subscribe_s
                ),
            );
        }
        let d = &self.delivery;
        row(
            "delivered",
            format!(
                "{} results in {:.1} s = {:.0}/s (schedule asks {})",
                d.frames,
                d.window_s,
                d.frames_per_s,
                opt(d.expected_frames_per_s, "/s", 0)
            ),
        );
        if self.mode != Mode::Hold {
            row("cycles", format!("{} = {:.1}/s", d.cycles, d.cycles_per_s));
        }
        if d.first_result.count > 0 {
            row("subscribe to 1st result", summary(&d.first_result));
        }
        if d.says_sent > 0 {
            row(
                "say mutations",
                format!(
                    "{} sent, {} ok, {} failed",
                    d.says_sent, d.says_ok, d.says_failed
                ),
            );
        }
        row("lateness vs schedule", summary(&d.lateness));
        row("gap excess", summary(&d.gap_excess));
        row("skipped ticks", d.skipped_ticks.to_string());
        let m = &self.memory;
        row(
            "server RSS",
            format!(
                "baseline {} MiB, loaded {} MiB, {} per connection ({} conns)",
                opt(m.rss_baseline_bytes.map(|b| b / 1048576.0), "", 1),
                opt(m.rss_loaded_bytes.map(|b| b / 1048576.0), "", 1),
                opt(m.rss_per_connection_bytes, " B", 0),
                m.connections_at_measure
            ),
        );
        row(
            "loader RSS",
            opt(m.loader_rss_bytes.map(|b| b as f64 / 1048576.0), " MiB", 1),
        );
        row(
            "cpu in hold",
            format!(
                "server {}{}, {} per 1k results; loader {}",
                opt(self.cpu.server_s, " s", 2),
                each_process(&self.cpu.server_each_s),
                opt(self.cpu.server_ms_per_1k_frames, " ms", 3),
                opt(self.cpu.loader_s, " s", 2)
            ),
        );
        let r = &self.reclaim;
        row(
            "reclaim",
            match r.seconds {
                Some(s) => format!(
                    "back to baseline {s:.3} s after the drop signal; the loader closed its sockets in {:.3} s",
                    r.sockets_closed_s
                ),
                None => format!("NOT back to baseline within {:.1} s", r.timeout_s),
            },
        );
        for s in &r.series {
            row(
                &format!("  {}", s.name),
                format!(
                    "baseline {}, loaded {}, peak {}, last {}",
                    s.baseline,
                    opt(s.loaded, "", 0),
                    opt(s.peak, "", 0),
                    opt(s.last, "", 0)
                ),
            );
        }
        for e in &self.expectations {
            row(
                &format!("expect {}", e.name),
                format!(
                    "{} = {}: min {}, max {} over {} samples",
                    if e.ok { "ok" } else { "FAILED" },
                    e.expected,
                    opt(e.min, "", 0),
                    opt(e.max, "", 0),
                    e.samples
                ),
            );
        }
        let e = &self.errors;
        row(
            "errors",
            format!(
                "connect {}, server closes {}, op errors {}, op completes {}, scrape {}",
                e.connect_failures,
                e.server_closes,
                e.operation_errors,
                e.operation_completes,
                e.scrape_failures
            ),
        );
        if !e.codes.is_empty() {
            row(
                "  error codes",
                e.codes
                    .iter()
                    .map(|(code, n)| format!("{code} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        for message in &e.messages {
            row("  ", message.clone());
        }
        row(
            "verdict",
            if self.passed { "PASS" } else { "FAIL" }.to_owned(),
        );
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }

    /// The chart: four stacked panels sharing the time axis.
    pub fn svg(&self, ops_series: &str) -> String {
        let series: [(&str, SeriesOf); 4] = [
            (
                "client connections open",
                Box::new(|s: &Sample| Some(s.open as f64)),
            ),
            ("live operations", {
                let name = ops_series.to_owned();
                Box::new(move |s: &Sample| s.values.get(&name).copied())
            }),
            (
                "server open fds",
                Box::new(|s: &Sample| s.values.get("process_open_fds").copied()),
            ),
            (
                "server RSS (MiB)",
                Box::new(|s: &Sample| {
                    s.values
                        .get("process_resident_memory_bytes")
                        .map(|b| b / 1048576.0)
                }),
            ),
        ];
        let panels: Vec<Panel> = series
            .iter()
            .map(|(title, value)| Panel {
                title: if *title == "live operations" {
                    format!("live operations ({ops_series})")
                } else {
                    (*title).to_owned()
                },
                points: self
                    .samples
                    .iter()
                    .filter_map(|s| value(s).map(|v| (s.t_s, v)))
                    .collect(),
            })
            .collect();
        let mut marks = Vec::new();
        let mut previous = "";
        for sample in &self.samples {
            if sample.phase != previous {
                marks.push((sample.t_s, sample.phase));
                previous = sample.phase;
            }
        }
        let title = format!(
            "{}: {:?}, {} connections x {} subscriptions, {:?} end",
            self.label, self.mode, self.connections, self.subscriptions, self.end
        );
        draw_svg(&title, &panels, &marks)
    }
}

/// Reads one charted value from a sample.
type SeriesOf = Box<dyn Fn(&Sample) -> Option<f64>>;

/// One panel of the chart.
pub struct Panel {
    /// Its heading.
    pub title: String,
    /// (seconds, value) points.
    pub points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws stacked line panels sharing one time axis, with phase marks.
pub fn draw_svg(title: &str, panels: &[Panel], marks: &[(f64, &str)]) -> String {
    const WIDTH: f64 = 900.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const PANEL: f64 = 130.0;
    const GAP: f64 = 30.0;
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let height = TOP + panels.len() as f64 * (PANEL + GAP) + 20.0;
    let (t_min, t_max) = panels
        .iter()
        .flat_map(|p| p.points.iter().map(|(t, _)| *t))
        .chain(marks.iter().map(|(t, _)| *t))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
            (lo.min(t), hi.max(t))
        });
    let (t_min, t_max) = if t_min.is_finite() && t_max > t_min {
        (t_min, t_max)
    } else {
        (0.0, 1.0)
    };
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + (t - t_min) / (t_max - t_min) * plot_width;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (index, panel) in panels.iter().enumerate() {
        let top = TOP + index as f64 * (PANEL + GAP);
        let bottom = top + PANEL;
        let (v_min, v_max) = panel
            .points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let (v_min, v_max) = if !v_min.is_finite() {
            (0.0, 1.0)
        } else if v_max > v_min {
            (v_min.min(0.0), v_max)
        } else {
            (v_min.min(0.0), v_min.max(0.0) + 1.0)
        };
        let y = |v: f64| bottom - (v - v_min) / (v_max - v_min) * PANEL;
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-weight="bold">{}</text><rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            top - 5.0,
            escape(&panel.title)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 5.0,
            top + 10.0,
            number(v_max),
            LEFT - 5.0,
            bottom,
            number(v_min)
        );
        for (t, phase) in marks {
            let mx = x(*t);
            let _ = writeln!(
                svg,
                r##"<line x1="{mx:.1}" y1="{top}" x2="{mx:.1}" y2="{bottom}" stroke="#bbb" stroke-dasharray="3,3"/>"##
            );
            if index == 0 {
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{}" fill="#666">{}</text>"##,
                    mx + 2.0,
                    top + 12.0,
                    escape(phase)
                );
            }
        }
        if panel.points.is_empty() {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" fill="#999">no data</text>"##,
                LEFT + 10.0,
                top + PANEL / 2.0
            );
            continue;
        }
        let points: Vec<String> = panel
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            colours[index % colours.len()],
            points.join(" ")
        );
    }
    let axis_y = TOP + panels.len() as f64 * (PANEL + GAP) - GAP + 15.0;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{axis_y}">{t_min:.1} s</text><text x="{}" y="{axis_y}" text-anchor="end">{t_max:.1} s</text>"#,
        WIDTH - RIGHT
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_is_named_only_for_a_server_of_several() {
        assert_eq!(each_process(&[]), "");
        assert_eq!(each_process(&[Some(1.0)]), "");
        assert_eq!(
            each_process(&[Some(10.414), None]),
            " (per process: 10.41 s, n/a)"
        );
    }

    #[test]
    fn svg_has_one_polyline_per_panel_with_data_and_escapes_text() {
        let panels = vec![
            Panel {
                title: "a <b>".into(),
                points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
            },
            Panel {
                title: "empty".into(),
                points: vec![],
            },
            Panel {
                title: "flat".into(),
                points: vec![(0.0, 5.0), (2.0, 5.0)],
            },
        ];
        let svg = draw_svg("t & t", &panels, &[(0.0, "ramp"), (1.5, "hold")]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains("t &amp; t"));
        assert!(svg.contains("no data"));
        assert!(svg.contains(">hold<"));
        // The first panel's points span the plot width: 0 s at the left
        // edge, 2 s at the right edge.
        assert!(svg.contains("70.0,"), "{svg}");
        assert!(svg.contains("880.0,"), "{svg}");
        assert!(!svg.contains("NaN"));
    }
}
