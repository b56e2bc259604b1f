//! Prometheus metrics at `/metrics`, in the text exposition format: request
//! counts and latencies per route and status class, and whether the control
//! store answers. Kept small on purpose: a few atomics, no registry crate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tern_app::state::AppState;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BOUNDS.len()],
}

/// Request metrics, shared by every request.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    // (method, route, status class) -> series
    series: Arc<Mutex<BTreeMap<(String, String, &'static str), Series>>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let s = map
            .entry((method.to_string(), route.to_string(), class))
            .or_default();
        s.count += 1;
        s.sum_seconds += seconds;
        for (i, bound) in BOUNDS.iter().enumerate() {
            if seconds <= *bound {
                s.buckets[i] += 1;
            }
        }
    }

    /// The exposition text.
    pub fn render(&self, store_up: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP tern_build_info Tern's version.\n# TYPE tern_build_info gauge\n");
        out.push_str(&format!(
            "tern_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ));
        out.push_str("# HELP tern_store_up Whether the control store answers (1) or not (0).\n# TYPE tern_store_up gauge\n");
        out.push_str(&format!("tern_store_up {}\n", u8::from(store_up)));
        out.push_str("# HELP tern_http_requests_total HTTP requests answered.\n# TYPE tern_http_requests_total counter\n");
        let Ok(map) = self.series.lock() else {
            return out;
        };
        for ((method, route, class), s) in map.iter() {
            out.push_str(&format!(
                "tern_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {}\n",
                s.count
            ));
        }
        out.push_str("# HELP tern_http_request_duration_seconds Time to answer HTTP requests.\n# TYPE tern_http_request_duration_seconds histogram\n");
        for ((method, route, class), s) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{class}\"");
            for (i, bound) in BOUNDS.iter().enumerate() {
                out.push_str(&format!(
                    "tern_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            out.push_str(&format!(
                "tern_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
                s.count
            ));
            out.push_str(&format!(
                "tern_http_request_duration_seconds_sum{{{labels}}} {}\n",
                s.sum_seconds
            ));
            out.push_str(&format!(
                "tern_http_request_duration_seconds_count{{{labels}}} {}\n",
                s.count
            ));
        }
        out
    }
}

/// Middleware recording every request. The route label is the matched route
/// pattern (`/migrations/{id}`), never the raw path, to keep the series few.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| {
            if req.uri().path().starts_with("/pkg/") {
                "/pkg/*".into()
            } else {
                "unmatched".into()
            }
        });
    let response = next.run(req).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn endpoint(
    State(state): State<AppState>,
    metrics: axum::Extension<Metrics>,
) -> Response {
    let up = state.store.ping().await.is_ok();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(up),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.observe("GET", "/", 200, 0.003);
        m.observe("GET", "/", 200, 0.2);
        m.observe("POST", "/auth/login", 403, 0.001);
        let text = m.render(true);
        assert!(text.contains("tern_store_up 1"));
        assert!(
            text.contains("tern_http_requests_total{method=\"GET\",route=\"/\",status=\"2xx\"} 2")
        );
        assert!(text.contains(
            "tern_http_requests_total{method=\"POST\",route=\"/auth/login\",status=\"4xx\"} 1"
        ));
        assert!(text.contains(
            "tern_http_request_duration_seconds_bucket{method=\"GET\",route=\"/\",status=\"2xx\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "tern_http_request_duration_seconds_bucket{method=\"GET\",route=\"/\",status=\"2xx\",le=\"+Inf\"} 2"
        ));
    }
}
