//! Live progress on stderr: an indicatif bar with the current QPS and p99 on
//! a terminal, a plain line every few seconds otherwise (CI logs, pipes).
//!
//! It only reads [`Live`]: two counters and a latency histogram that it
//! resets on every tick, so the p99 shown is the p99 of the last tick
//! (corrected latency, warmup included). It never touches the report.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::worker::Live;

/// Refresh period of the bar.
const TTY_TICK: Duration = Duration::from_millis(500);
/// Period of the plain lines.
const PLAIN_TICK: Duration = Duration::from_secs(5);

/// Shows progress until dropped (dropping aborts the task and clears the bar).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    _task: tokio::task::JoinSet<()>,
}

impl Progress {
    /// `start` and `warmup`/`total` describe the schedule; the bar spans
    /// `total` (warmup included).
    pub fn start(live: Arc<Live>, start: Instant, warmup: Duration, total: Duration) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(total.as_millis().try_into().unwrap_or(u64::MAX)),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let mut task = tokio::task::JoinSet::new();
        task.spawn({
            let bar = bar.clone();
            async move {
                let period = if bar.is_some() { TTY_TICK } else { PLAIN_TICK };
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                let mut last = (Instant::now(), 0);
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let completed = live.completed.load(Ordering::Relaxed);
                    let failed = live.failed.load(Ordering::Relaxed);
                    let qps = (completed - last.1) as f64
                        / now.duration_since(last.0).as_secs_f64().max(1e-9);
                    last = (now, completed);
                    let p99_ms = match live.window.lock() {
                        Ok(mut window) => {
                            let p99 = window.value_at_quantile(0.99) as f64 / 1000.0;
                            window.reset();
                            p99
                        }
                        Err(_) => f64::NAN,
                    };
                    let elapsed = now.saturating_duration_since(start);
                    let phase = if elapsed < warmup { "warmup" } else { "measuring" };
                    let msg = format!(
                        "{phase}: {qps:.0} req/s, p99 {p99_ms:.2} ms, {completed} done, {failed} failed"
                    );
                    match &bar {
                        Some(bar) => {
                            bar.set_position(elapsed.as_millis().try_into().unwrap_or(u64::MAX));
                            bar.set_message(msg);
                        }
                        None => eprintln!(
                            "loadtest: {:>4.0}s/{:.0}s {msg}",
                            elapsed.as_secs_f64(),
                            total.as_secs_f64()
                        ),
                    }
                }
            }
        });
        Self { bar, _task: task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
