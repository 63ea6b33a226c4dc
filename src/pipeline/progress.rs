//! Progress a person can follow: per-stream records and bytes, throughput
//! and acknowledged states, reported at a steady interval and at the end.

use std::time::{Duration, Instant};

/// At most this many streams are named in one progress line; the rest are
/// summed up as "N more".
const STREAMS_PER_LINE: usize = 8;

pub struct Progress {
    started: Instant,
    last_report: Instant,
    interval: Duration,
    labels: Vec<String>,
    records: Vec<u64>,
    bytes: Vec<u64>,
}

impl Progress {
    pub fn new(labels: Vec<String>, interval: Duration) -> Self {
        let now = Instant::now();
        let n = labels.len();
        Progress {
            started: now,
            last_report: now,
            interval,
            labels,
            records: vec![0; n],
            bytes: vec![0; n],
        }
    }

    pub fn record(&mut self, stream: usize, bytes: usize) {
        self.records[stream] += 1;
        self.bytes[stream] += bytes as u64;
    }

    pub fn due(&self) -> bool {
        self.last_report.elapsed() >= self.interval
    }

    /// One line: totals, throughput, states, and the busiest streams.
    pub fn line(&mut self, states_acknowledged: u64) -> String {
        self.last_report = Instant::now();
        let (records, bytes): (u64, u64) = (self.records.iter().sum(), self.bytes.iter().sum());
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut order: Vec<usize> = (0..self.labels.len())
            .filter(|&i| self.records[i] > 0)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.records[i]));
        let mut parts: Vec<String> = order
            .iter()
            .take(STREAMS_PER_LINE)
            .map(|&i| {
                format!(
                    "{} {} records ({})",
                    self.labels[i],
                    self.records[i],
                    mib(self.bytes[i])
                )
            })
            .collect();
        if order.len() > STREAMS_PER_LINE {
            parts.push(format!("{} more streams", order.len() - STREAMS_PER_LINE));
        }
        format!(
            "progress: {records} records ({}) in {secs:.1} s, {:.0} records/s, {:.1} MiB/s, {states_acknowledged} states acknowledged{}{}",
            mib(bytes),
            records as f64 / secs,
            bytes as f64 / secs / (1 << 20) as f64,
            if parts.is_empty() { "" } else { "; " },
            parts.join(", ")
        )
    }

    /// The final summary: one line per stream, then the totals.
    pub fn summary(&mut self, tables: &[String], states_acknowledged: u64) -> Vec<String> {
        let mut lines: Vec<String> = (0..self.labels.len())
            .map(|i| {
                format!(
                    "stream {}: {} records ({}) written to {}",
                    self.labels[i],
                    self.records[i],
                    mib(self.bytes[i]),
                    tables[i]
                )
            })
            .collect();
        lines.push(
            self.line(states_acknowledged)
                .replacen("progress:", "sync finished:", 1),
        );
        lines
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
