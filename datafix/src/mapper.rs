//! Mappers: the change for one record. Declarative (`update` / `delete`),
//! an HTTP service that owns the validation, or a Rust plug-in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{DatafixError, Result};
use crate::expr::Expr;
use crate::record::Record;
use crate::spec::MapperSpec;

/// The change a mapper wants for one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Set these columns to these values.
    Set(Vec<(String, Json)>),
    /// Delete the record.
    Delete,
    /// The service wrote the record itself; nothing left for the platform.
    AppliedByService,
}

/// A Rust plug-in mapper: registered by name, named by a spec's
/// `mapper = { kind = "plugin", name = "…" }`. Return `Err(reason)` to reject
/// a record (recorded as a failure with that reason).
#[async_trait::async_trait]
pub trait FixPlugin: Send + Sync {
    async fn map(&self, record: &Record) -> std::result::Result<Change, String>;
}

/// The plug-ins a process offers.
#[derive(Default, Clone)]
pub struct PluginRegistry {
    plugins: HashMap<String, Arc<dyn FixPlugin>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("names", &self.plugins.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PluginRegistry {
    pub fn register(&mut self, name: impl Into<String>, plugin: Arc<dyn FixPlugin>) {
        self.plugins.insert(name.into(), plugin);
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.plugins.keys().cloned().collect();
        n.sort();
        n
    }
}

/// A mapper ready to run.
#[derive(Clone)]
pub enum Mapper {
    Update(Vec<(String, Expr)>),
    Delete,
    Http {
        client: reqwest::Client,
        endpoint: String,
        job: String,
    },
    Plugin(Arc<dyn FixPlugin>),
}

impl std::fmt::Debug for Mapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mapper::Update(s) => f.debug_tuple("Update").field(s).finish(),
            Mapper::Delete => f.write_str("Delete"),
            Mapper::Http { endpoint, .. } => {
                f.debug_struct("Http").field("endpoint", endpoint).finish()
            }
            Mapper::Plugin(_) => f.write_str("Plugin"),
        }
    }
}

/// What the HTTP mapper's service answers with a 2xx status.
#[derive(Debug, Deserialize, Default)]
struct ServiceAnswer {
    #[serde(default)]
    set: Option<serde_json::Map<String, Json>>,
    #[serde(default)]
    delete: bool,
    #[serde(default)]
    applied: bool,
}

impl Mapper {
    /// Builds the mapper a spec names.
    pub fn from_spec(spec: &MapperSpec, job: &str, plugins: &PluginRegistry) -> Result<Mapper> {
        Ok(match spec {
            MapperSpec::Update { set, .. } => Mapper::Update(
                set.iter()
                    .map(|(c, e)| {
                        Expr::parse(e)
                            .map(|x| (c.clone(), x))
                            .map_err(|m| DatafixError::spec(format!("mapper.set.{c}"), m))
                    })
                    .collect::<Result<_>>()?,
            ),
            MapperSpec::Delete { .. } => Mapper::Delete,
            MapperSpec::Http {
                endpoint,
                timeout_s,
                ..
            } => Mapper::Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs((*timeout_s).max(1)))
                    .build()
                    .map_err(|e| {
                        DatafixError::spec(
                            "mapper.endpoint",
                            format!("cannot build an HTTP client: {e}"),
                        )
                    })?,
                endpoint: endpoint.clone(),
                job: job.to_string(),
            },
            MapperSpec::Plugin { name, .. } => {
                Mapper::Plugin(plugins.plugins.get(name).cloned().ok_or_else(|| {
                    DatafixError::spec(
                        "mapper.name",
                        format!(
                            "no plug-in `{name}` is registered in this process; registered: {}",
                            if plugins.plugins.is_empty() {
                                "none".to_string()
                            } else {
                                plugins.names().join(", ")
                            }
                        ),
                    )
                })?)
            }
        })
    }

    /// The columns the mapper reads that the filter must return (declarative only).
    pub fn fields_read(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Mapper::Update(set) = self {
            for (_, e) in set {
                e.fields(&mut out);
            }
        }
        out
    }

    /// The change for one record, or the reason it cannot be changed.
    /// `dry_run` tells an HTTP service not to write.
    pub async fn map(
        &self,
        rec: &Record,
        key: &[String],
        dry_run: bool,
    ) -> std::result::Result<Change, String> {
        match self {
            Mapper::Update(set) => {
                let mut cols = Vec::with_capacity(set.len());
                for (c, e) in set {
                    cols.push((c.clone(), e.eval(rec).map_err(|m| format!("set {c}: {m}"))?));
                }
                Ok(Change::Set(cols))
            }
            Mapper::Delete => Ok(Change::Delete),
            Mapper::Plugin(p) => p.map(rec).await,
            Mapper::Http {
                client,
                endpoint,
                job,
            } => {
                let body = serde_json::json!({
                    "job": job,
                    "key": rec.key_json(key),
                    "record": rec.to_json(),
                    "dry_run": dry_run,
                });
                let resp = client
                    .post(endpoint)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("service {endpoint} unreachable: {e}"))?;
                let status = resp.status();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| format!("reading the answer of {endpoint}: {e}"))?;
                if !status.is_success() {
                    let reason = serde_json::from_str::<Json>(&text)
                        .ok()
                        .and_then(|j| {
                            ["reason", "error", "message"]
                                .iter()
                                .find_map(|f| j.get(*f).and_then(Json::as_str).map(str::to_string))
                        })
                        .unwrap_or_else(|| text.trim().chars().take(500).collect());
                    return Err(format!("service rejected ({}): {reason}", status.as_u16()));
                }
                let ans: ServiceAnswer = if text.trim().is_empty() {
                    ServiceAnswer::default()
                } else {
                    serde_json::from_str(&text)
                        .map_err(|e| format!("service {endpoint} answered {status} with a body that is not a change: {e}"))?
                };
                match (ans.set, ans.delete, ans.applied) {
                    (Some(set), false, _) if !set.is_empty() => {
                        Ok(Change::Set(set.into_iter().collect()))
                    }
                    (_, true, _) => Ok(Change::Delete),
                    (_, false, true) => Ok(Change::AppliedByService),
                    _ => Err(format!(
                        "service {endpoint} answered {status} without a change: answer {{\"set\": {{...}}}}, {{\"delete\": true}} or {{\"applied\": true}}"
                    )),
                }
            }
        }
    }
}
