//! The spec the unit tests of parsing, validation and reverse mappings
//! write: a SQLite source, one table `people` filled from `members`. Line
//! numbers are stable (tests assert them): `[[tables]]` is line 7, `key`
//! line 9, `extra` line 10, `[tables.source]` line 11 and the source's own
//! lines start at 13, then `[tables.columns]`; each line of `extra` and
//! `source` moves what follows (end `source` with a newline for a blank
//! line before `[tables.columns]`).

/// A spec's text with the target `target`, the table key `key` (a TOML
/// list's items), `extra` after the table's key, `source` after the source
/// table and `columns` under `[tables.columns]`.
pub(crate) fn people(target: &str, key: &str, extra: &str, source: &str, columns: &str) -> String {
    format!(
        r#"
[source]
url = "sqlite://a.db"
[target]
url = "{target}"

[[tables]]
name = "people"
key = [{key}]
{extra}
[tables.source]
table = "members"
{source}
[tables.columns]
{columns}
"#
    )
}

/// The error message of a spec (read as `s.toml`) that must be refused.
pub(crate) fn refused(text: &str) -> String {
    match super::Spec::parse(text, "s.toml") {
        Ok(_) => panic!("the spec was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}
