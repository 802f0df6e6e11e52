//! Request counts and latencies by route: the middleware and its metrics.
//!
//! Labels are bounded whatever callers send: the route is the template the
//! router matched (`/api/v1/nodes/{name}/catalog`), never the raw path, every
//! unmatched path shares one label, and unusual methods share `other`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Metrics;

/// The route label of a request that matched no route (a 404 of the fallback).
const UNMATCHED: &str = "unmatched";

/// Latency buckets in seconds: a cached catalog or a file answers in about
/// a millisecond, a fresh compile or a big report in up to seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// The request metrics of [`Metrics`].
#[derive(Debug)]
pub(super) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    pub(super) fn register(registry: &mut Registry) -> HttpMetrics {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        };
        registry.register(
            "drover_http_requests",
            "HTTP requests answered, by route template, method and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "drover_http_request_duration_seconds",
            "Time from a request's arrival to its response headers, by route template and method",
            metrics.duration.clone(),
        );
        metrics
    }

    fn observe(&self, route: String, method: &'static str, status: StatusCode, took: Duration) {
        let labels = RouteLabels { route, method };
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let labels = RequestLabels {
            route: labels.route,
            method,
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
    }
}

/// Middleware (`Router::layer`, so it runs after routing and sees the
/// matched route): counts and times every request.
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .http
        .observe(route, method, response.status(), started.elapsed());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
