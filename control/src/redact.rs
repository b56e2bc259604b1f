//! Keeping database passwords on the server: every URL in a spec or message
//! that leaves Tern (API answers, pages) has its password replaced by `***`,
//! for every role. The runners read the stored spec itself; only what is
//! shown goes through here.

/// `text` with the password of every URL in it (`scheme://user:pw@host`, and
/// `password=` / `pass=` query parameters) replaced by `***`.
pub fn secrets_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL starts at the scheme: the run of scheme characters before `://`.
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |p| p + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        out.push_str(&tern_engine::connector::redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A migration as it may be shown: its spec's passwords hidden.
pub fn migration(mut m: crate::migrations::Migration) -> crate::migrations::Migration {
    m.spec = secrets_in(&m.spec);
    m
}

/// A data fix as it may be shown: its spec's and database's passwords hidden.
pub fn fix(mut f: crate::fixes::Fix) -> crate::fixes::Fix {
    f.spec = secrets_in(&f.spec);
    f.db_url = secrets_in(&f.db_url);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden_and_the_rest_is_kept() {
        let spec = "[source]\nurl = \"postgres://app:hunter2@db.internal:5432/inbox\"\n\
                    [target]\nurl = \"mysql://root@127.0.0.1/new?password=s3cret&ssl=true\"\n\
                    # see https://example.org/docs\n";
        let shown = secrets_in(spec);
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/inbox"),
            "{shown}"
        );
        assert!(
            shown.contains("mysql://root@127.0.0.1/new?password=***&ssl=true"),
            "{shown}"
        );
        assert!(shown.contains("https://example.org/docs"), "{shown}");
        assert_eq!(secrets_in("no urls here"), "no urls here");
    }
}
