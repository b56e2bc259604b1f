//! Specs and data fixes name connections: `source = "legacy-inbox"` and
//! `target = "…"` in a migration spec, `connection = "…"` in a fix's job spec.
//! Here a spec's names become URLs, read from the store when a job starts; the
//! stored spec keeps the names. The lines are replaced one for one, so the
//! engine's errors still name the line the person wrote.
//!
//! A spec written with a password in a URL is refused when it is created: the
//! password belongs in a connection, where it is encrypted and never shown.

use tern_datafix::FixSpec;
use tern_engine::Spec;

use crate::error::{ControlError, Result};
use crate::store::Store;

/// `key = "value"` on one line (spaces and a trailing comment allowed).
fn named_line<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix(key)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let after = rest[end + 1..].trim();
    (after.is_empty() || after.starts_with('#')).then_some(&rest[..end])
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whether `url` carries a password (`user:pw@` or a `password=` option).
pub fn has_password(url: &str) -> bool {
    crate::redact::secrets_in(url) != url
}

fn refuse_password(url: &str, what: &str, key: &str) -> Result<()> {
    if has_password(url) {
        return Err(ControlError::Invalid(format!(
            "{what}: the URL carries a password, which would be stored and shown with the spec. \
             Register a connection for it (Admin › Connections, or `tern connection add NAME`) \
             and name it instead: {key} = \"NAME\""
        )));
    }
    Ok(())
}

impl Store {
    /// A migration spec's text with its named connections (`source = "name"`,
    /// `target = "name"` at the top level) replaced by their URLs.
    pub async fn resolve_spec_text(&self, text: &str) -> Result<String> {
        let mut out = Vec::new();
        let mut top_level = true;
        for line in text.lines() {
            if line.trim_start().starts_with('[') {
                top_level = false;
            }
            let mut replaced = None;
            if top_level {
                for key in ["source", "target"] {
                    if let Some(name) = named_line(line, key) {
                        let url = self.connection_url(name).await?;
                        replaced = Some(format!("{key} = {{ url = {} }}", toml_string(&url)));
                    }
                }
            }
            out.push(replaced.unwrap_or_else(|| line.to_string()));
        }
        Ok(out.join("\n"))
    }

    /// A migration spec parsed, its connections resolved, and checked not to
    /// reach Tern's own store: what a job connects with.
    pub async fn spec_for(&self, text: &str, name: &str) -> Result<Spec> {
        crate::planning::parse_spec(&self.resolve_spec_text(text).await?, name)
    }

    /// Refuses a new migration spec that writes a password into a URL.
    pub fn refuse_spec_passwords(text: &str, name: &str) -> Result<()> {
        let Ok(table) = toml::from_str::<toml::Table>(text) else {
            return Ok(()); // the engine's parser says what is wrong with it
        };
        for key in ["source", "target"] {
            if let Some(url) = table
                .get(key)
                .and_then(|v| v.get("url"))
                .and_then(|u| u.as_str())
            {
                refuse_password(url, &format!("{name}.toml: {key}.url"), key)?;
            }
        }
        Ok(())
    }

    /// A fix's job spec text with `connection = "name"` replaced by its URL.
    pub async fn resolve_fix_text(&self, text: &str) -> Result<String> {
        let mut out = Vec::new();
        let mut top_level = true;
        for line in text.lines() {
            if line.trim_start().starts_with('[') {
                top_level = false;
            }
            match named_line(line, "connection").filter(|_| top_level) {
                Some(name) => {
                    let url = self.connection_url(name).await?;
                    out.push(format!("url = {}", toml_string(&url)));
                }
                None => out.push(line.to_string()),
            }
        }
        Ok(out.join("\n"))
    }

    /// A fix's job spec parsed with its connection resolved, checked not to
    /// reach Tern's own store.
    pub async fn fix_spec_for(&self, text: &str, origin: &str) -> Result<FixSpec> {
        crate::fixes::parse_fix_spec(&self.resolve_fix_text(text).await?, origin)
    }

    /// Refuses a new fix spec that writes a password into its URL.
    pub fn refuse_fix_password(text: &str, origin: &str) -> Result<()> {
        let Ok(table) = toml::from_str::<toml::Table>(text) else {
            return Ok(());
        };
        if let Some(url) = table.get("url").and_then(|u| u.as_str()) {
            refuse_password(url, &format!("{origin}: url"), "connection")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_their_own_lines_only() {
        assert_eq!(
            named_line("source = \"legacy-inbox\"", "source"),
            Some("legacy-inbox")
        );
        assert_eq!(
            named_line("  target=\"new\" # the new store", "target"),
            Some("new")
        );
        assert_eq!(named_line("source_table = \"x\"", "source"), None);
        assert_eq!(named_line("source = { url = \"x\" }", "source"), None);
    }

    #[test]
    fn a_password_in_a_url_is_refused_with_the_way_out() {
        let spec = "[source]\nurl = \"postgres://app:hunter2@db/inbox\"\n[target]\nurl = \"sqlite://new.db\"\n";
        let e = Store::refuse_spec_passwords(spec, "contacts")
            .expect_err("refused")
            .to_string();
        assert!(e.contains("source.url") && e.contains("connection"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(
            Store::refuse_spec_passwords("[source]\nurl = \"postgres://app@db/inbox\"\n", "c")
                .is_ok()
        );
        let fix = "name = \"x\"\nurl = \"mysql://root:pw@db/app\"\n";
        assert!(Store::refuse_fix_password(fix, "job.toml").is_err());
    }
}
