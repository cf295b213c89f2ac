//! `--watch-pid`: samples the server's CPU time and memory from `/proc` while
//! the load runs, so a report can say what each request cost the server.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (fields 14 and 15, in
//! clock ticks); memory is `VmRSS` from `/proc/PID/status`. Linux only: on
//! other systems, or when the pid does not exist, [`Watcher::start`] fails
//! with a clear message. Clock ticks are taken as 100 per second (`USER_HZ`,
//! fixed at 100 by the Linux ABI on every architecture we build for); asking
//! `sysconf` would need `libc`, which this crate does not depend on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// How often the background sampler looks (for peak RSS).
const PERIOD: Duration = Duration::from_millis(250);
/// `USER_HZ`: clock ticks per second in `/proc/PID/stat`.
const TICKS_PER_SECOND: u64 = 100;

/// One look at the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kb: u64,
}

/// The server's usage over the measured window, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// Server CPU time (user + system) spent in the window, seconds.
    pub cpu_s: f64,
    /// `cpu_s` divided by the requests completed in the window, µs.
    pub cpu_us_per_request: f64,
    /// Highest RSS seen, MB (sampled every 250 ms, plus start and end).
    pub peak_rss_mb: f64,
    /// RSS at the end of the run, MB.
    pub final_rss_mb: f64,
    /// The process was gone before the run ended; the figures stop there.
    pub exited: bool,
}

/// Parses `utime + stime` out of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may contain spaces or `)`, so fields are
/// counted from the *last* `)`.
pub fn parse_stat(line: &str) -> anyhow::Result<u64> {
    let after = line
        .rfind(')')
        .map(|i| &line[i + 1..])
        .context("no ')' after the command name")?;
    // After ") " come field 3 (state) onwards: utime is field 14, stime 15.
    let mut fields = after.split_ascii_whitespace().skip(14 - 3);
    let mut next = |name: &str| -> anyhow::Result<u64> {
        fields
            .next()
            .with_context(|| format!("{name} missing"))?
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok(next("utime")? + next("stime")?)
}

/// Parses `VmRSS` (kB) out of `/proc/PID/status`. A kernel thread or a zombie
/// has no `VmRSS` line: that reads as 0.
pub fn parse_status_rss_kb(status: &str) -> anyhow::Result<u64> {
    let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) else {
        return Ok(0);
    };
    line["VmRSS:".len()..]
        .split_ascii_whitespace()
        .next()
        .context("VmRSS has no value")?
        .parse()
        .context("VmRSS is not a number")
}

/// Samples one pid; the background task stops when the watcher is dropped.
#[derive(Debug)]
pub struct Watcher {
    pid: u32,
    state: Arc<Mutex<State>>,
    /// Dropping the set aborts the sampling task.
    _task: tokio::task::JoinSet<()>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    peak_rss_kb: u64,
    last: Sample,
    exited: bool,
}

impl Watcher {
    /// Checks the pid can be read, then samples every 250 ms in the
    /// background.
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        if !cfg!(target_os = "linux") {
            bail!("--watch-pid needs Linux (it reads /proc/PID/stat and /proc/PID/status)");
        }
        let first = read(pid).with_context(|| {
            format!("--watch-pid {pid}: cannot read the process (does it exist?)")
        })?;
        let state = Arc::new(Mutex::new(State {
            peak_rss_kb: first.rss_kb,
            last: first,
            exited: false,
        }));
        let mut task = tokio::task::JoinSet::new();
        task.spawn({
            let state = state.clone();
            async move {
                let mut tick = tokio::time::interval(PERIOD);
                loop {
                    tick.tick().await;
                    let sample = read(pid);
                    let Ok(mut state) = state.lock() else { return };
                    match sample {
                        Ok(sample) => state.update(sample),
                        Err(_) => {
                            state.exited = true;
                            return;
                        }
                    }
                }
            }
        });
        Ok(Self {
            pid,
            state,
            _task: task,
        })
    }

    /// Takes a sample now (also folded into the peak). When the process is
    /// gone, the last sample it gave.
    pub fn sample(&self) -> Sample {
        let now = read(self.pid);
        let Ok(mut state) = self.state.lock() else {
            unreachable!("the sampler never panics while holding the lock")
        };
        match now {
            Ok(sample) => state.update(sample),
            Err(_) => state.exited = true,
        }
        state.last
    }

    /// Usage between `base` (taken when the measured window opened) and now.
    pub fn usage(&self, base: Sample, completed: u64) -> ServerUsage {
        let end = self.sample();
        let Ok(state) = self.state.lock().map(|s| *s) else {
            unreachable!("the sampler never panics while holding the lock")
        };
        let cpu_s = end.cpu_ticks.saturating_sub(base.cpu_ticks) as f64 / TICKS_PER_SECOND as f64;
        let per_request = if completed == 0 {
            0.0
        } else {
            cpu_s * 1e6 / completed as f64
        };
        let mb = |kb: u64| (kb as f64 / 1024.0 * 10.0).round() / 10.0;
        ServerUsage {
            pid: self.pid,
            cpu_s,
            cpu_us_per_request: (per_request * 10.0).round() / 10.0,
            peak_rss_mb: mb(state.peak_rss_kb),
            final_rss_mb: mb(end.rss_kb),
            exited: state.exited,
        }
    }
}

impl State {
    fn update(&mut self, sample: Sample) {
        self.peak_rss_kb = self.peak_rss_kb.max(sample.rss_kb);
        self.last = sample;
    }
}

/// Reads both files; `/proc` reads never block on disk, so this is fine to
/// call from async code.
fn read(pid: u32) -> anyhow::Result<Sample> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(dir.join("stat"))
        .with_context(|| format!("no process with pid {pid}"))?;
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("no process with pid {pid}"))?;
    let cpu_ticks = parse_stat(&stat).with_context(|| format!("unexpected /proc/{pid}/stat"))?;
    let rss_kb =
        parse_status_rss_kb(&status).with_context(|| format!("unexpected /proc/{pid}/status"))?;
    Ok(Sample { cpu_ticks, rss_kb })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from `cat /proc/self/stat`, with a command name that has a
    // space and a parenthesis in it.
    const STAT: &str = "4242 (abridge (w) 1) S 1 4242 4242 0 -1 4194560 2345 0 0 0 \
        1234 567 0 0 20 0 3 0 123456 987654321 3210 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17987 0 0 0 17 1 0 0 0 0 0";

    const STATUS: &str = "Name:\tabridge\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  200000 kB\nVmRSS:\t   12840 kB\nRssAnon:\t    8000 kB\nThreads:\t3\n";

    #[test]
    fn stat_sums_utime_and_stime() {
        assert_eq!(parse_stat(STAT).unwrap(), 1234 + 567);
    }

    #[test]
    fn stat_without_enough_fields_is_an_error() {
        let err = parse_stat("1 (x) S 1 2 3").unwrap_err();
        assert!(format!("{err:#}").contains("utime missing"));
        assert!(parse_stat("garbage").is_err());
    }

    #[test]
    fn status_gives_rss_in_kb() {
        assert_eq!(parse_status_rss_kb(STATUS).unwrap(), 12_840);
        assert_eq!(parse_status_rss_kb("Name:\tkthreadd\n").unwrap(), 0);
        assert!(parse_status_rss_kb("VmRSS:\tlots kB\n").is_err());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn watches_itself_and_rejects_a_missing_pid() {
        let watcher = Watcher::start(std::process::id()).unwrap();
        let base = watcher.sample();
        assert!(base.rss_kb > 0);
        let usage = watcher.usage(base, 10);
        assert!(usage.peak_rss_mb >= usage.final_rss_mb);
        assert!(!usage.exited);
        // Pids above the kernel's maximum (4194304) never exist.
        let err = Watcher::start(4_294_967).unwrap_err();
        assert!(format!("{err:#}").contains("no process with pid 4294967"));
    }
}
