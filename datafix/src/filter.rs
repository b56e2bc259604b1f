//! The filter's text: one SELECT (or WITH … SELECT). The read-only
//! transaction the engine's connector runs it in is the real guard (see
//! [`tern_engine::Connector::fetch_read_only`]); this check only gives a
//! clearer message for the obvious cases, before anything reaches the
//! database.

use crate::error::{DatafixError, Result};

/// Refuses filter text that is not one SELECT (or WITH … SELECT), with a
/// clear message. The read-only transaction is the real guard.
pub fn check_filter_text(sql: &str) -> Result<()> {
    let body = strip_comments(sql);
    let body = body.trim().trim_end_matches(';').trim();
    let first = body
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        let word = if first.is_empty() {
            "nothing".to_string()
        } else {
            format!("`{first}`")
        };
        return Err(DatafixError::Filter {
            message: format!(
                "the filter must be a single SELECT returning the records to change, but it starts with {word}; \
                 put the change itself in the mapper"
            ),
        });
    }
    let outside_literals: String = body.split('\'').step_by(2).collect();
    if outside_literals.contains(';') {
        return Err(DatafixError::Filter {
            message: "the filter must be a single statement: remove the `;` between statements"
                .into(),
        });
    }
    Ok(())
}

fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            out.push(' ');
        } else if rest.starts_with('\'') {
            // Keep string literals whole (a `;` or `--` inside one is no statement end).
            let end = rest[1..].find('\'').map_or(rest.len(), |i| i + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_select_passes_the_text_check() {
        assert!(check_filter_text("SELECT id FROM t").is_ok());
        assert!(
            check_filter_text("  -- which rows\n with x as (select 1) select * from x;").is_ok()
        );
        assert!(check_filter_text("select ';' as semi").is_ok());
        for bad in [
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "DROP TABLE t",
            "/* hi */ INSERT INTO t VALUES (1)",
            "SELECT 1; DELETE FROM t",
            "",
        ] {
            let e = check_filter_text(bad).unwrap_err().to_string();
            assert!(e.starts_with("filter refused"), "{bad}: {e}");
        }
    }
}
