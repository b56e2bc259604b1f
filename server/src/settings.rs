//! Typed settings: defaults that run the demo with no file at all, overridden by
//! a TOML file (`--config tern.toml`), then by `TERN_…` environment variables
//! (`TERN_LISTEN=0.0.0.0:8080`). [`Settings::validate`] runs at start-up and
//! refuses nonsense with a message that names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything `tern` can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the web server listens on. Default `127.0.0.1:3000`.
    pub listen: SocketAddr,
    /// Directory for Tern's own files (the SQLite control store). Default `.tern`.
    pub data_dir: PathBuf,
    /// Control store URL. Default empty: the SQLite file `<data_dir>/tern.db`.
    /// Set `postgres://…` to share the work between several `tern` processes.
    pub database_url: String,
    /// Log format, `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax. Default `info,sqlx=warn`.
    pub log: String,
    /// Directory of the built front end (wasm, JS, CSS, favicon). Default `target/site`.
    pub site_root: PathBuf,
    /// Minutes of inactivity after which a session ends. Default 720 (12 hours).
    pub session_idle_minutes: u32,
    /// Send session cookies only over HTTPS; turn on behind a TLS proxy. Default false.
    pub secure_cookies: bool,
    /// Workers `tern serve` runs in-process (0: none, leave the work to `tern worker`). Default 2.
    pub workers: u32,
    /// Seconds a job's lease lasts without a heartbeat before another worker may take it over. Default 30.
    pub lease_seconds: u32,
    /// Origins (`https://tern.example.com`) besides the server's own from which
    /// state-changing requests are accepted, e.g. behind a proxy. Default none.
    pub allowed_origins: Vec<String>,
    /// The key (64 hex characters, `tern connection new-key`) connection
    /// passwords are encrypted with; usually `TERN_SECRET_KEY`. Default empty:
    /// Tern then refuses to store a password (references still work).
    pub secret_key: SecretSetting,
    /// The key before `secret_key`, kept while rotating
    /// (`tern connection rekey`). Default empty.
    pub previous_secret_key: SecretSetting,
}

/// A setting that holds a secret: read like a string, never printed.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretSetting(pub String);

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from(".tern"),
            database_url: String::new(),
            log_format: LogFormat::Text,
            log: "info,sqlx=warn".into(),
            site_root: PathBuf::from("target/site"),
            session_idle_minutes: 720,
            secure_cookies: false,
            workers: 2,
            lease_seconds: 30,
            allowed_origins: Vec::new(),
            secret_key: SecretSetting::default(),
            previous_secret_key: SecretSetting::default(),
        }
    }
}

/// A setting that cannot be used, with the reason and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("setting `{setting}` {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

impl Settings {
    /// Defaults, then the file (if any), then `TERN_…` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| SettingsError::File {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let mut source: std::collections::HashMap<String, String> = table
            .keys()
            .map(|k| {
                let from = file.map(|p| p.display().to_string()).unwrap_or_default();
                (k.clone(), from)
            })
            .collect();
        let known = known_keys();
        for (var, value) in env {
            let Some(key) = var.strip_prefix("TERN_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if !known.contains(&key) {
                continue;
            }
            table.insert(key.clone(), env_value(&key, &value));
            source.insert(key, var);
        }
        let settings = match Settings::deserialize(toml::Value::Table(table.clone())) {
            Ok(s) => s,
            Err(e) => return Err(name_the_bad_setting(&table, &source, e.message())),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses values that would make `tern` misbehave.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(SettingsError::Invalid {
                setting: "data_dir",
                message: "is empty: name a directory Tern may write to, e.g. `.tern`".into(),
            });
        }
        let url = self.database_url.trim();
        if !url.is_empty()
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(SettingsError::Invalid {
                setting: "database_url",
                message: format!(
                    "must be empty (SQLite in data_dir), `sqlite://…` or `postgres://…`, not `{}`",
                    tern_control::store::redact_url(url)
                ),
            });
        }
        if !(1..=43_200).contains(&self.session_idle_minutes) {
            return Err(SettingsError::Invalid {
                setting: "session_idle_minutes",
                message: format!("is {}: use 1 to 43200 (30 days)", self.session_idle_minutes),
            });
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(SettingsError::Invalid {
                setting: "log",
                message: format!(
                    "`{}` is not a log filter ({e}); try `info` or `info,tern=debug`",
                    self.log
                ),
            });
        }
        if self.workers > 64 {
            return Err(SettingsError::Invalid {
                setting: "workers",
                message: format!(
                    "is {}: use 0 to 64 (each worker runs one job at a time)",
                    self.workers
                ),
            });
        }
        if !(3..=3600).contains(&self.lease_seconds) {
            return Err(SettingsError::Invalid {
                setting: "lease_seconds",
                message: format!("is {}: use 3 to 3600 seconds", self.lease_seconds),
            });
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/').matches('/').count() != 2
            {
                return Err(SettingsError::Invalid {
                    setting: "allowed_origins",
                    message: format!(
                        "holds `{origin}`: an origin is a scheme and host, like `https://tern.example.com`"
                    ),
                });
            }
        }
        if let Err(e) = self.secret_key() {
            return Err(SettingsError::Invalid {
                setting: "secret_key",
                message: e.to_string(),
            });
        }
        Ok(())
    }

    /// The key connection secrets are encrypted with, if one is set.
    pub fn secret_key(
        &self,
    ) -> Result<Option<tern_control::connections::SecretKey>, tern_control::ControlError> {
        let current = self.secret_key.0.trim();
        if current.is_empty() {
            return Ok(None);
        }
        tern_control::connections::SecretKey::parse(current, Some(&self.previous_secret_key.0))
            .map(Some)
    }
}

/// Finds which key of `table` cannot be read, so the error names it and where
/// it came from (the file or an environment variable).
fn name_the_bad_setting(
    table: &toml::Table,
    source: &std::collections::HashMap<String, String>,
    message: &str,
) -> SettingsError {
    let defaults = match toml::Value::try_from(Settings::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    for (key, value) in table {
        let mut probe = defaults.clone();
        probe.insert(key.clone(), value.clone());
        if let Err(e) = Settings::deserialize(toml::Value::Table(probe)) {
            let from = source.get(key).cloned().unwrap_or_default();
            return match from.strip_prefix("TERN_") {
                Some(_) => SettingsError::Env {
                    var: from,
                    message: format!("setting `{key}`: {}", e.message()),
                },
                None => SettingsError::File {
                    path: PathBuf::from(from),
                    message: format!("setting `{key}`: {}", e.message()),
                },
            };
        }
    }
    SettingsError::Env {
        var: "TERN_*".into(),
        message: message.to_string(),
    }
}

fn known_keys() -> Vec<String> {
    match toml::Value::try_from(Settings::default()) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// An environment value as TOML: lists are comma-separated, numbers and
/// booleans are typed, anything else is a string.
fn env_value(key: &str, raw: &str) -> toml::Value {
    if key == "allowed_origins" {
        return toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        );
    }
    if key.ends_with("secret_key") {
        return toml::Value::String(raw.to_string());
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let s = Settings::load(None, env(&[])).expect("defaults are valid");
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("tern-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("tern.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:8080\"\nsession_idle_minutes = 30\n",
        )
        .expect("write");
        let s = Settings::load(
            Some(&file),
            env(&[
                ("TERN_SESSION_IDLE_MINUTES", "60"),
                (
                    "TERN_ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("TERN_UNRELATED", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.listen.port(), 8080);
        assert_eq!(s.session_idle_minutes, 60);
        assert_eq!(
            s.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            (vec![("TERN_LISTEN", "nowhere")], "listen"),
            (
                vec![("TERN_SESSION_IDLE_MINUTES", "0")],
                "session_idle_minutes",
            ),
            (vec![("TERN_DATABASE_URL", "mysql://x")], "database_url"),
            (vec![("TERN_LOG_FORMAT", "xml")], "log_format"),
            (vec![("TERN_ALLOWED_ORIGINS", "evil")], "allowed_origins"),
        ];
        for (vars, setting) in cases {
            let err = Settings::load(None, env(&vars)).expect_err("must be refused");
            let msg = err.to_string();
            assert!(
                msg.contains(setting) || msg.contains(&vars[0].1.to_string()),
                "{msg} should name {setting}"
            );
        }
    }

    #[test]
    fn a_secret_key_is_read_checked_and_never_printed() {
        let key = "ab".repeat(32);
        let s = Settings::load(None, env(&[("TERN_SECRET_KEY", &key)])).expect("valid key");
        assert!(s.secret_key().expect("parses").is_some());
        assert!(!format!("{s:?}").contains(&key), "the key is not printed");
        let err = Settings::load(None, env(&[("TERN_SECRET_KEY", "short")])).expect_err("refused");
        assert!(err.to_string().contains("secret_key"), "{err}");
        assert!(!err.to_string().contains("short"), "{err}");
    }

    #[test]
    fn a_typo_in_the_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("tern-settings-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("tern.toml");
        std::fs::write(&file, "lisen = \"0.0.0.0:8080\"\n").expect("write");
        let err = Settings::load(Some(&file), env(&[])).expect_err("typo refused");
        assert!(err.to_string().contains("lisen"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
