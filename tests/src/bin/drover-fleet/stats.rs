//! What a scenario measured: latency per route (arrival of the answer's
//! whole body, as the agent sees it), answers by status, failures by kind,
//! 503s and retries; printed as a table and kept as JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Route {
    Enroll,
    Catalog,
    File,
    Report,
    /// The catalog watch: its latency includes the wait for a change.
    Watch,
    /// The git webhook.
    Hook,
}

impl Route {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Route::Enroll => "enroll",
            Route::Catalog => "catalog",
            Route::File => "file",
            Route::Report => "report",
            Route::Watch => "watch",
            Route::Hook => "hook",
        }
    }
}

#[derive(Default)]
struct Inner {
    latencies: BTreeMap<Route, Vec<Duration>>,
    statuses: BTreeMap<(Route, u16), u64>,
    failures: BTreeMap<(Route, &'static str), u64>,
}

/// Shared by every simulated node of a scenario.
#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<Inner>,
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every sample of `parts` together (one table for several servers).
    pub(crate) fn merged<'a>(parts: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let mut all = Inner::default();
        for part in parts {
            let inner = part.lock();
            for (route, samples) in &inner.latencies {
                all.latencies.entry(*route).or_default().extend(samples);
            }
            for (key, n) in &inner.statuses {
                *all.statuses.entry(*key).or_default() += n;
            }
            for (key, n) in &inner.failures {
                *all.failures.entry(*key).or_default() += n;
            }
        }
        Stats {
            inner: Mutex::new(all),
        }
    }

    /// An answer with `status` after `took`.
    pub(crate) fn answered(&self, route: Route, status: u16, took: Duration) {
        let mut inner = self.lock();
        inner.latencies.entry(route).or_default().push(took);
        *inner.statuses.entry((route, status)).or_default() += 1;
    }

    /// No answer, or one that is wrong (`kind` says how).
    pub(crate) fn failed(&self, route: Route, kind: &'static str) {
        *self.lock().failures.entry((route, kind)).or_default() += 1;
    }

    pub(crate) fn count(&self, route: Route, status: u16) -> u64 {
        self.lock()
            .statuses
            .get(&(route, status))
            .copied()
            .unwrap_or(0)
    }

    /// Failures, and answers that are errors other than the 503s of load
    /// shedding (those are the server working as meant).
    pub(crate) fn errors(&self) -> u64 {
        let inner = self.lock();
        let bad: u64 = inner
            .statuses
            .iter()
            .filter(|((_, s), _)| *s >= 400 && *s != 503)
            .map(|(_, n)| n)
            .sum();
        bad + inner.failures.values().sum::<u64>()
    }

    pub(crate) fn requests(&self) -> u64 {
        let inner = self.lock();
        inner.statuses.values().sum::<u64>() + inner.failures.values().sum::<u64>()
    }

    /// p50, p95, p99 and max of `route`, in milliseconds.
    pub(crate) fn percentiles(&self, route: Route) -> [f64; 4] {
        percentiles_of(&self.lock(), route)
    }

    pub(crate) fn print(&self, title: &str) {
        println!("\n{title}");
        println!(
            "{:<9}{:>9}{:>10}{:>10}{:>10}{:>10}   answers",
            "route", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        let inner = self.lock();
        for route in inner.latencies.keys() {
            let statuses: Vec<String> = inner
                .statuses
                .iter()
                .filter(|((r, _), _)| r == route)
                .map(|((_, s), n)| format!("{s}: {n}"))
                .collect();
            let [p50, p95, p99, max] = percentiles_of(&inner, *route);
            println!(
                "{:<9}{:>9}{p50:>10.1}{p95:>10.1}{p99:>10.1}{max:>10.1}   {}",
                route.as_str(),
                inner.latencies[route].len(),
                statuses.join(", ")
            );
        }
        if inner.failures.is_empty() {
            println!("failures: none");
        } else {
            for ((route, kind), n) in &inner.failures {
                println!("failures: {} {kind}: {n}", route.as_str());
            }
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let inner = self.lock();
        let mut routes = serde_json::Map::new();
        for route in inner.latencies.keys() {
            let [p50, p95, p99, max] = percentiles_of(&inner, *route);
            let statuses: serde_json::Map<String, Value> = inner
                .statuses
                .iter()
                .filter(|((r, _), _)| r == route)
                .map(|((_, s), n)| (s.to_string(), json!(n)))
                .collect();
            routes.insert(
                route.as_str().to_owned(),
                json!({"requests": inner.latencies[route].len(), "p50_ms": p50, "p95_ms": p95,
                       "p99_ms": p99, "max_ms": max, "statuses": statuses}),
            );
        }
        let failures: serde_json::Map<String, Value> = inner
            .failures
            .iter()
            .map(|((r, k), n)| (format!("{} {k}", r.as_str()), json!(n)))
            .collect();
        json!({"routes": routes, "failures": failures})
    }
}

fn percentiles_of(inner: &Inner, route: Route) -> [f64; 4] {
    percentiles(inner.latencies.get(&route).cloned().unwrap_or_default())
}

/// p50, p95, p99 and max of `samples`, in milliseconds (zeros for none).
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> [f64; 4] {
    if samples.is_empty() {
        return [0.0; 4];
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    [at(0.50), at(0.95), at(0.99), at(1.0)]
}
