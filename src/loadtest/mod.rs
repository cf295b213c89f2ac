//! The load generator behind `abridge loadtest`: an open-loop schedule, a
//! fixed pool of workers on the shared `upstream::client`, and a report.
//!
//! | file          | owns                                                   |
//! |---------------|--------------------------------------------------------|
//! | `mod.rs`      | [`Config`] and [`run`]: wiring one run together        |
//! | `schedule.rs` | due times (`start + i/qps`) and the pacer thread       |
//! | `worker.rs`   | measuring: workers, per-worker histograms              |
//! | `sse.rs`      | counting output tokens in a streamed body              |
//! | `report.rs`   | aggregating: merged histograms → [`Report`]            |
//! | `render.rs`   | presenting: the text table (JSON is serde on `Report`) |
//! | `slo.rs`      | `--max-p99` / `--min-success` verdicts                 |
//! | `watch.rs`    | `--watch-pid` CPU and RSS sampling from `/proc`        |
//! | `progress.rs` | the live bar or periodic lines on stderr               |
//!
//! It has no HTTP client of its own (DESIGN) and parses no flags
//! (`cli/loadtest.rs` turns them into a [`Config`]).

mod progress;
pub mod render;
pub mod report;
mod schedule;
pub mod slo;
mod sse;
mod watch;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::watch as signal;

pub use report::Report;
pub use worker::Target;

use crate::upstream::client::HttpClient;
use report::{Merged, Setup};
use schedule::Schedule;
use worker::{Live, Shared};

/// Time between building the run and its first due request, so the workers
/// are spawned and waiting before the clock starts.
const LEAD: Duration = Duration::from_millis(20);

/// A validated run; built by `cli/loadtest.rs`.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// The endpoint's name for the report (`messages`, `raw`, …).
    pub endpoint: &'static str,
    pub qps: u64,
    pub duration: Duration,
    pub warmup: Duration,
    /// Worker tasks, hence the most requests in flight.
    pub concurrency: usize,
    pub watch_pid: Option<u32>,
    /// Show the live progress display on stderr.
    pub progress: bool,
}

/// Runs the schedule to its end (or to ctrl-c) and returns the report. The
/// SLO verdict is left for the caller.
pub async fn run(config: Config, client: HttpClient) -> anyhow::Result<Report> {
    let watcher = config.watch_pid.map(watch::Watcher::start).transpose()?;
    let mut base = watcher.as_ref().map(watch::Watcher::sample);

    let schedule = Schedule::new(
        Instant::now() + LEAD,
        config.qps,
        config.warmup,
        config.duration,
    );
    let shared = Arc::new(Shared {
        schedule,
        target: config.target.clone(),
        client,
        live: Arc::new(Live::default()),
        next: AtomicU64::new(0),
    });
    let progress = config.progress.then(|| {
        progress::Progress::start(
            shared.live.clone(),
            schedule.start(),
            config.warmup,
            config.warmup + config.duration,
        )
    });

    let (stop, stopped) = signal::channel(false);
    let workers = worker::run_workers(shared.clone(), config.concurrency, stopped);
    tokio::pin!(workers);
    let window_opens = tokio::time::sleep_until(schedule.window_start().into());
    tokio::pin!(window_opens);
    let mut window_open = false;
    let mut interrupted = false;
    let recorders = loop {
        tokio::select! {
            recorders = &mut workers => break recorders?,
            () = &mut window_opens, if !window_open => {
                window_open = true;
                if let Some(w) = &watcher {
                    base = Some(w.sample());
                }
            }
            Ok(()) = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                eprintln!("loadtest: interrupted, reporting what was measured so far");
                let _ = stop.send(true);
            }
        }
    };
    let ended = Instant::now();
    drop(progress);

    let merged = Merged::new(&recorders);
    let setup = Setup {
        method: config.target.method.to_string(),
        url: config.target.url.to_string(),
        endpoint: config.endpoint,
        stream: config.target.stream,
        qps: config.qps,
        duration_s: config.duration.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        concurrency: config.concurrency,
    };
    let mut report = Report::build(
        setup,
        &merged,
        schedule.window_start(),
        schedule.measured_len(),
        ended,
    );
    report.interrupted = interrupted;
    if let (Some(w), Some(base)) = (&watcher, base) {
        report.server = Some(w.usage(base, merged.completed()));
    }
    Ok(report)
}
