//! A data-fix job spec (`job.toml`): which database, which records need the
//! change (the filter), what the change is (the mapper), and the settings it
//! starts with. `examples/truncate_first_names.toml` is the worked example.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tern_engine::RateThrottle;

use crate::error::{DatafixError, Result};
use crate::expr::Expr;

/// A parsed and validated job spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixSpec {
    /// A short name: letters, digits, `-` and `_`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The database to fix (`postgres://`, `mysql://`, `sqlite://`). May be
    /// left out of the file and given on the command line (`--url`) instead.
    #[serde(default)]
    pub url: String,
    /// The columns that identify a record (returned by the filter).
    pub key: Vec<String>,
    pub filter: FilterSpec,
    pub mapper: MapperSpec,
    #[serde(default)]
    pub settings: Settings,
    /// How busy the database may get before the fix waits (`[throttle]`).
    #[serde(default, skip_serializing_if = "LoadSettings::is_empty")]
    pub throttle: LoadSettings,
}

/// The live site comes first: with these limits the fix asks its database
/// about once a second how busy it is (MariaDB/MySQL `Threads_running` and
/// replica lag, PostgreSQL active backends and replication lag), and no page
/// starts while it is over a limit. Like a migration's `[throttle]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSettings {
    /// Statements running at once.
    pub active: Option<u64>,
    /// Replication lag, seconds.
    pub lag_s: Option<f64>,
    /// How often the database is asked (default 1000 ms).
    pub check_every_ms: u64,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            active: None,
            lag_s: None,
            check_every_ms: 1000,
        }
    }
}

impl LoadSettings {
    /// True when no limit is set: nothing to watch.
    pub fn is_empty(&self) -> bool {
        self.active.is_none() && self.lag_s.is_none()
    }

    /// The engine's limits for the fix's one database.
    pub fn limits(&self) -> tern_engine::spec::SideLimits {
        tern_engine::spec::SideLimits {
            active: self.active,
            lag_s: self.lag_s,
        }
    }

    fn check(&self, origin: &str) -> Result<()> {
        let at = |f: &str| format!("{origin}: throttle.{f}");
        if self.active == Some(0) {
            return Err(DatafixError::spec(
                at("active"),
                "0 would never let the fix run: use at least 1, or leave it out",
            ));
        }
        if let Some(lag) = self.lag_s.filter(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(DatafixError::spec(
                at("lag_s"),
                format!("{lag} is not a number of seconds above 0"),
            ));
        }
        if !(100..=60_000).contains(&self.check_every_ms) {
            return Err(DatafixError::spec(
                at("check_every_ms"),
                format!("{} is out of range: use 100 to 60000", self.check_every_ms),
            ));
        }
        Ok(())
    }
}

/// The filter phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// A SELECT returning the key columns and the fields the mapper needs.
    pub sql: String,
    /// Statement timeout for each filter query, seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_timeout() -> u64 {
    30
}

/// The mapper phase: the change for one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum MapperSpec {
    /// Set columns of `table` from expressions of the record's fields (see [`crate::expr`]).
    Update {
        table: String,
        set: BTreeMap<String, String>,
    },
    /// Delete the record's row from `table`.
    Delete { table: String },
    /// POST each record to a service that owns the validation; it answers
    /// with the change (`{"set": {...}}`, `{"delete": true}`), `{"applied":
    /// true}` when it wrote the record itself, or an error status with
    /// `{"reason": "..."}`.
    Http {
        table: String,
        endpoint: String,
        #[serde(default = "default_http_timeout")]
        timeout_s: u64,
    },
    /// A Rust plug-in registered under `name` (see [`crate::mapper::FixPlugin`]).
    Plugin { table: String, name: String },
}

fn default_http_timeout() -> u64 {
    10
}

impl MapperSpec {
    pub fn table(&self) -> &str {
        match self {
            MapperSpec::Update { table, .. }
            | MapperSpec::Delete { table }
            | MapperSpec::Http { table, .. }
            | MapperSpec::Plugin { table, .. } => table,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            MapperSpec::Update { .. } => "update",
            MapperSpec::Delete { .. } => "delete",
            MapperSpec::Http { .. } => "http",
            MapperSpec::Plugin { .. } => "plugin",
        }
    }
}

/// What to do with a record whose change failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Try again (up to `retries` times, backing off), then record and skip.
    Retry,
    /// Record the failure and go on with the next record.
    #[default]
    Skip,
    /// Record the failure and stop the job.
    Stop,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Retry => "retry",
            OnFailure::Skip => "skip",
            OnFailure::Stop => "stop",
        }
    }

    pub fn parse(s: &str) -> Option<OnFailure> {
        match s {
            "retry" => Some(OnFailure::Retry),
            "skip" => Some(OnFailure::Skip),
            "stop" => Some(OnFailure::Stop),
            _ => None,
        }
    }
}

/// The settings a job starts with. Concurrency, batch size and failure
/// policy change while it runs through [`crate::LiveSettings`]; rate and
/// pause through the run's throttle ([`Settings::throttle`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Records per second; 0 is unthrottled (default 0).
    pub rate: u64,
    /// Records mapped at once (default 4).
    pub concurrency: usize,
    /// Records per filter page and per write transaction (default 500).
    pub batch_size: usize,
    /// Start paused (default false).
    pub paused: bool,
    /// Failure policy (default `skip`).
    pub on_failure: OnFailure,
    /// Tries of a failing record under `retry` (default 3).
    pub retries: u32,
    /// Filter passes before giving up (default 20).
    pub max_passes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rate: 0,
            concurrency: 4,
            batch_size: 500,
            paused: false,
            on_failure: OnFailure::Skip,
            retries: 3,
            max_passes: 20,
        }
    }
}

impl Settings {
    /// A throttle at these settings' rate in records per second (0:
    /// unthrottled), paused if they say so. Keep a clone to change the rate
    /// or pause while a run goes on.
    pub fn throttle(&self) -> RateThrottle {
        let t = RateThrottle::new(Some(self.rate).filter(|r| *r > 0));
        if self.paused {
            t.pause();
        }
        t
    }
}

/// A plain identifier (optionally `schema.name`), so names can be quoted safely.
pub(crate) fn check_ident(at: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(DatafixError::spec(
            at,
            format!(
                "`{name}` is not a plain identifier (letters, digits, `_`, optionally schema.name)"
            ),
        ))
    }
}

impl FixSpec {
    /// Parses and validates a `job.toml`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<FixSpec> {
        let spec: FixSpec = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("{origin} line {line}")
                }
                None => origin.to_string(),
            };
            DatafixError::spec(at, e.message().to_string())
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Refuses nonsense with a message naming the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let at = |f: &str| format!("{origin}: {f}");
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(DatafixError::spec(
                at("name"),
                format!("`{}` must be letters, digits, `-` or `_`", self.name),
            ));
        }
        if self.key.is_empty() {
            return Err(DatafixError::spec(
                at("key"),
                "name the column(s) that identify a record, e.g. key = [\"id\"]",
            ));
        }
        for k in &self.key {
            check_ident(&at("key"), k)?;
        }
        crate::filter::check_filter_text(&self.filter.sql)?;
        if self.filter.timeout_s == 0 {
            return Err(DatafixError::spec(
                at("filter.timeout_s"),
                "must be at least 1 second",
            ));
        }
        check_ident(&at("mapper.table"), self.mapper.table())?;
        match &self.mapper {
            MapperSpec::Update { set, .. } => {
                if set.is_empty() {
                    return Err(DatafixError::spec(
                        at("mapper.set"),
                        "name at least one column to set, e.g. set = { first_name = \"truncate(first_name, 1000)\" }",
                    ));
                }
                for (col, expr) in set {
                    check_ident(&at("mapper.set"), col)?;
                    if self.key.contains(col) {
                        return Err(DatafixError::spec(
                            at(&format!("mapper.set.{col}")),
                            "a key column cannot be changed by a fix",
                        ));
                    }
                    Expr::parse(expr)
                        .map_err(|m| DatafixError::spec(at(&format!("mapper.set.{col}")), m))?;
                }
            }
            MapperSpec::Http { endpoint, .. }
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) =>
            {
                return Err(DatafixError::spec(
                    at("mapper.endpoint"),
                    format!("`{endpoint}` is not an http:// or https:// URL"),
                ));
            }
            MapperSpec::Plugin { name, .. } if name.is_empty() => {
                return Err(DatafixError::spec(at("mapper.name"), "name the plug-in"));
            }
            _ => {}
        }
        self.settings.check(origin)?;
        self.throttle.check(origin)?;
        Ok(())
    }
}

impl Settings {
    /// Refuses settings that cannot run.
    pub fn check(&self, origin: &str) -> Result<()> {
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(DatafixError::spec(
                format!("{origin}: settings.concurrency"),
                format!("{} is out of range: use 1 to 256", self.concurrency),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err(DatafixError::spec(
                format!("{origin}: settings.batch_size"),
                format!("{} is out of range: use 1 to 100000", self.batch_size),
            ));
        }
        if self.max_passes == 0 {
            return Err(DatafixError::spec(
                format!("{origin}: settings.max_passes"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The seed's example, used as the template on the create page.
pub const EXAMPLE: &str = include_str!("../../examples/truncate_first_names.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let spec = FixSpec::parse(EXAMPLE, "truncate_first_names.toml").expect("example parses");
        assert_eq!(spec.key, vec!["id".to_string()]);
        assert_eq!(spec.mapper.table(), "members");
        assert!(matches!(spec.mapper, MapperSpec::Update { .. }));
    }

    #[test]
    fn a_throttle_section_sets_the_databases_limits() {
        let text = format!("{EXAMPLE}\n[throttle]\nactive = 25\nlag_s = 5\n");
        let spec = FixSpec::parse(&text, "job.toml").expect("parses");
        assert_eq!(spec.throttle.active, Some(25));
        assert_eq!(spec.throttle.limits().lag_s, Some(5.0));
        assert_eq!(spec.throttle.check_every_ms, 1000);
        assert!(
            FixSpec::parse(EXAMPLE, "job.toml")
                .expect("parses")
                .throttle
                .is_empty()
        );

        let zero = format!("{EXAMPLE}\n[throttle]\nactive = 0\n");
        let e = FixSpec::parse(&zero, "job.toml").unwrap_err().to_string();
        assert!(
            e.contains("throttle.active") && e.contains("at least 1"),
            "{e}"
        );
        let typo = format!("{EXAMPLE}\n[throttle]\nthreads = 3\n");
        let e = FixSpec::parse(&typo, "job.toml").unwrap_err().to_string();
        assert!(e.contains("threads"), "{e}");
    }

    #[test]
    fn mistakes_name_the_field() {
        let bad = EXAMPLE.replace("truncate(first_name, 1000)", "shorten(first_name)");
        let e = FixSpec::parse(&bad, "job.toml").unwrap_err().to_string();
        assert!(
            e.contains("mapper.set.first_name")
                && e.contains("calls `shorten`, which is no function"),
            "{e}"
        );

        let bad = EXAMPLE.replace("SELECT", "DELETE FROM members --");
        let e = FixSpec::parse(&bad, "job.toml").unwrap_err().to_string();
        assert!(e.contains("filter refused"), "{e}");

        let bad = EXAMPLE.replace("key = [\"id\"]", "key = []");
        let e = FixSpec::parse(&bad, "job.toml").unwrap_err().to_string();
        assert!(e.contains("key"), "{e}");

        let e = FixSpec::parse("name = 3", "job.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("job.toml line 1"), "{e}");
    }
}
