//! The JSON form of a [`LoadReport`]: `herd load --json`, and each run in `herd bench`'s
//! report.json. serde writes it, so every string is escaped and every number formatted the way
//! JSON wants; the structs here fix the field names and their order.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use super::LoadReport;

impl LoadReport {
    /// The report as one line of JSON (see the [`Serialize`] impl for its shape).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report has string keys and serializes")
    }
}

/// The JSON report: the fields in this order, latencies in microseconds, `rate` `null` for a
/// closed-loop run (and any non-finite number `null`, as JSON has none). `herd bench`'s
/// report.json and the scripts under `scripts/` read it.
impl Serialize for LoadReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let h = &self.latency_us;
        Json {
            url: &self.url,
            threads: self.threads,
            connections: self.connections,
            rate: self.rate,
            close: self.close,
            elapsed_s: self.elapsed.as_secs_f64(),
            requests: self.requests,
            requests_per_sec: self.requests_per_sec,
            bytes_read: self.bytes_read,
            bytes_per_sec: self.bytes_per_sec(),
            connections_opened: self.connections_opened,
            in_flight_at_deadline: self.in_flight_at_deadline,
            queued_at_deadline: self.queued_at_deadline,
            status: &self.status,
            errors: &self.errors,
            latency_us: LatencyJson {
                count: h.len(),
                min: h.min(),
                mean: h.mean(),
                stdev: h.stdev(),
                quantiles: Quantiles::of(h),
            },
            paths: (self.paths.iter())
                .map(|p| PathJson {
                    path: &p.path,
                    weight: p.weight,
                    count: p.latency_us.len(),
                    quantiles: Quantiles::of(&p.latency_us),
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

/// The shape of [`LoadReport`]'s JSON.
#[derive(Serialize)]
struct Json<'a> {
    url: &'a str,
    threads: usize,
    connections: usize,
    rate: Option<f64>,
    close: bool,
    elapsed_s: f64,
    requests: u64,
    requests_per_sec: f64,
    bytes_read: u64,
    bytes_per_sec: f64,
    connections_opened: u64,
    in_flight_at_deadline: u64,
    queued_at_deadline: u64,
    status: &'a BTreeMap<String, u64>,
    errors: &'a BTreeMap<String, u64>,
    latency_us: LatencyJson,
    paths: Vec<PathJson<'a>>,
}

/// `latency_us`: the whole run's distribution.
#[derive(Serialize)]
struct LatencyJson {
    count: u64,
    min: u64,
    mean: f64,
    stdev: f64,
    #[serde(flatten)]
    quantiles: Quantiles,
}

/// One entry of `paths`: one path of the mix.
#[derive(Serialize)]
struct PathJson<'a> {
    path: &'a str,
    weight: u32,
    count: u64,
    #[serde(flatten)]
    quantiles: Quantiles,
}

/// The percentiles both write, in microseconds.
#[derive(Serialize)]
struct Quantiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p99_9: u64,
    max: u64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Quantiles {
        Quantiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}
