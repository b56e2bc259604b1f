//! Prometheus metrics at `/metrics`, in the text exposition format: request
//! counts and latencies per route and status class, and whether the control
//! store answers. Kept small on purpose: a few atomics, no registry crate.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tern_app::state::AppState;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// One series' counters: atomics, so a request updates them under a shared
/// read lock without allocating (the routing API answers tens of thousands of
/// requests a second through this middleware).
#[derive(Debug)]
struct Series {
    method: String,
    route: String,
    class: &'static str,
    count: AtomicU64,
    sum_micros: AtomicU64,
    buckets: [AtomicU64; BOUNDS.len()],
}

/// Request metrics, shared by every request.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    // hash of (method, route, status class) -> series; written only the first
    // time a series is seen.
    series: Arc<RwLock<HashMap<u64, Arc<Series>>>>,
}

fn class_of(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let class = class_of(status);
        let mut h = DefaultHasher::new();
        (method, route, class).hash(&mut h);
        let key = h.finish();
        let found = self
            .series
            .read()
            .ok()
            .and_then(|map| map.get(&key).cloned());
        let series = match found {
            Some(s) => s,
            None => {
                let Ok(mut map) = self.series.write() else {
                    return;
                };
                map.entry(key)
                    .or_insert_with(|| {
                        Arc::new(Series {
                            method: method.to_string(),
                            route: route.to_string(),
                            class,
                            count: AtomicU64::new(0),
                            sum_micros: AtomicU64::new(0),
                            buckets: Default::default(),
                        })
                    })
                    .clone()
            }
        };
        series.count.fetch_add(1, Ordering::Relaxed);
        series
            .sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        for (i, bound) in BOUNDS.iter().enumerate() {
            if seconds <= *bound {
                series.buckets[i].fetch_add(1, Ordering::Relaxed);
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
        let map: BTreeMap<(String, String, &'static str), Arc<Series>> = match self.series.read() {
            Ok(m) => m
                .values()
                .map(|s| ((s.method.clone(), s.route.clone(), s.class), s.clone()))
                .collect(),
            Err(_) => return out,
        };
        for ((method, route, class), s) in map.iter() {
            out.push_str(&format!(
                "tern_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {}\n",
                s.count.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP tern_http_request_duration_seconds Time to answer HTTP requests.\n# TYPE tern_http_request_duration_seconds histogram\n");
        for ((method, route, class), s) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{class}\"");
            for (i, bound) in BOUNDS.iter().enumerate() {
                out.push_str(&format!(
                    "tern_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}\n",
                    s.buckets[i].load(Ordering::Relaxed)
                ));
            }
            let count = s.count.load(Ordering::Relaxed);
            out.push_str(&format!(
                "tern_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n"
            ));
            out.push_str(&format!(
                "tern_http_request_duration_seconds_sum{{{labels}}} {}\n",
                s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            ));
            out.push_str(&format!(
                "tern_http_request_duration_seconds_count{{{labels}}} {count}\n"
            ));
        }
        out
    }
}

/// The method's label: any method outside the standard few is `other`, so
/// a client cannot grow the series by inventing methods.
fn method_label(m: &Method) -> &'static str {
    match *m {
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

/// Middleware recording every request. The route label is the matched route
/// pattern (`/migrations/{id}`), never the raw path, to keep the series few.
/// Nothing is allocated per request.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let pkg = route.is_none() && req.uri().path().starts_with("/pkg/");
    let response = next.run(req).await;
    let label = match &route {
        Some(p) => p.as_str(),
        None if pkg => "/pkg/*",
        None => "unmatched",
    };
    metrics.observe(
        method,
        label,
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
    fn invented_methods_share_one_label() {
        for m in ["FOO", "BAR", "PROPFIND"] {
            let method = Method::from_bytes(m.as_bytes()).expect("a method");
            assert_eq!(method_label(&method), "other");
        }
        assert_eq!(method_label(&Method::GET), "GET");
    }

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
