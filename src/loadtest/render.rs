//! Presenting: the human-readable table of a [`Report`]. The JSON form is
//! the report's serde derive; this file only formats, it computes nothing.

use std::fmt::{self, Write};

use super::report::{Percentiles, Report};

/// Renders the report as an aligned plain-text table.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_text(&mut out, report);
    out
}

fn write_text(out: &mut String, r: &Report) -> fmt::Result {
    let s = &r.setup;
    let q = &r.requests;
    writeln!(
        out,
        "{:<14}{} {} ({}{})",
        "Target",
        s.method,
        s.url,
        s.endpoint,
        if s.stream { ", stream" } else { "" }
    )?;
    writeln!(
        out,
        "{:<14}{} req/s for {}s (+{}s warmup), {} workers{}",
        "Schedule",
        s.qps,
        s.duration_s,
        s.warmup_s,
        s.concurrency,
        if r.interrupted { ", interrupted" } else { "" }
    )?;
    writeln!(
        out,
        "{:<14}{} of {} completed in {:.3}s: {:.1} req/s achieved",
        "Requests", q.completed, q.scheduled, q.wall_s, q.achieved_qps
    )?;
    writeln!(
        out,
        "{:<14}{:.3}% ({} with a 2xx status)",
        "Success", q.success_pct, q.succeeded
    )?;
    writeln!(
        out,
        "{:<14}{}",
        "Status",
        join(q.status.iter().map(|(k, v)| format!("{k}: {v}")))
    )?;
    writeln!(
        out,
        "{:<14}{}",
        "Errors",
        join(q.errors.iter().map(|(k, v)| format!("{k}: {v}")))
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "", "p50", "p90", "p99", "p99.9", "max", "mean"
    )?;
    row(out, "latency (ms)", r.latency_ms)?;
    row(out, "  uncorrected (ms)", r.latency_uncorrected_ms)?;
    row(out, "scheduling lag (ms)", r.lag.ms)?;
    if r.setup.stream {
        row(out, "time to first byte (ms)", r.ttfb_ms)?;
        row(out, "tokens/s", r.tokens_per_s)?;
    }
    writeln!(
        out,
        "{:<24}{} sent >1 ms late, {} of them waiting for a free worker",
        "", r.lag.late, r.lag.backlogged
    )?;
    if let Some(server) = &r.server {
        writeln!(out)?;
        writeln!(
            out,
            "{:<14}pid {}: {:.1} µs CPU per request ({:.2}s CPU), RSS peak {:.1} MB, final {:.1} MB{}",
            "Server",
            server.pid,
            server.cpu_us_per_request,
            server.cpu_s,
            server.peak_rss_mb,
            server.final_rss_mb,
            if server.exited {
                " (process exited)"
            } else {
                ""
            }
        )?;
    }
    if let Some(slo) = &r.slo {
        let verdict = match &slo.reason {
            None => "passed".to_owned(),
            Some(reason) => reason.clone(),
        };
        writeln!(out, "{:<14}{verdict}", "SLO")?;
    }
    Ok(())
}

fn row(out: &mut String, label: &str, p: Option<Percentiles>) -> fmt::Result {
    match p {
        None => writeln!(out, "{label:<24}{:>10}", "-"),
        Some(p) => writeln!(
            out,
            "{label:<24}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.3}",
            p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean
        ),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    let joined = items.collect::<Vec<_>>().join(", ");
    if joined.is_empty() {
        "none".into()
    } else {
        joined
    }
}
