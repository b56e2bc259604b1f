//! The `tern` subcommands, one file each: a `clap::Args` struct and `run`.

pub mod access;
pub mod bulk_load;
pub mod capture;
pub mod catch_up;
pub mod connection;
pub mod demo;
pub mod demo_clients;
pub mod demo_data;
pub mod fix;
pub mod plan;
pub mod relay;
pub mod reverse_relay;
pub mod serve;
pub mod switch;
pub mod user;
pub mod verify;
pub mod worker;

/// Reads a migration spec for a command run by hand, `${NAME}` replaced by
/// the environment variable NAME (so a password can stay out of the file);
/// a spec whose source or target is Tern's own control store (the one the
/// settings name) is refused.
pub fn load_spec(path: &std::path::Path) -> anyhow::Result<tern_engine::Spec> {
    let text = read_interpolated(path)?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let spec = tern_engine::Spec::parse(&text, &file)?;
    tern_control::own_store::refuse(&spec.source.url, &format!("{file}: source"))?;
    tern_control::own_store::refuse(&spec.target.url, &format!("{file}: target"))?;
    Ok(spec)
}

/// Watches the spec's `[throttle]` limits for a command run by hand (`None`
/// when it sets none), and says on the terminal when the databases' load
/// holds the run back and when it goes on. Keep it while the engine runs.
pub fn load_guard(link: &tern_engine::Link) -> Option<tern_engine::LoadGuard> {
    announced(tern_engine::LoadGuard::start(link)?)
}

/// `guard`, with every change of what holds the run back printed to stderr.
pub fn announced(guard: tern_engine::LoadGuard) -> Option<tern_engine::LoadGuard> {
    let mut state = guard.watch();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            match state.borrow_and_update().note() {
                Some(note) => eprintln!("{note}"),
                None => eprintln!("resumed: the databases are back under their limits"),
            }
        }
    });
    Some(guard)
}

/// A token cancelled by Ctrl-C, after saying on stderr what happens then
/// (`"stopping after the current chunk; run again to resume"`).
pub fn stop_on_ctrl_c(what: &'static str) -> tokio_util::sync::CancellationToken {
    let cancel = tokio_util::sync::CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("{what}");
            token.cancel();
        }
    });
    cancel
}

/// The spec and the tables a command works on (`--spec S [--table T]`).
#[derive(clap::Args, Debug)]
pub struct SpecTables {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: std::path::PathBuf,
    /// Only this target table (default: every table with a source).
    #[arg(long)]
    pub table: Option<String>,
}

impl SpecTables {
    /// The spec, read and checked (`load_spec`).
    pub fn load(&self) -> anyhow::Result<tern_engine::Spec> {
        load_spec(&self.spec)
    }

    /// The table named, or every table of `link` with a source.
    pub fn tables(&self, link: &tern_engine::Link) -> Vec<String> {
        match &self.table {
            Some(t) => vec![t.clone()],
            None => link.tables().iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Refuses a table `flag` names that the spec has no source for.
pub fn known_table(link: &tern_engine::Link, flag: &str, table: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        link.tables().contains(&table),
        "{flag} {table}: the spec has no such table with a source (it has: {})",
        link.tables().join(", ")
    );
    Ok(())
}

/// Refuses bucket indexes `flag` names beyond `table`'s stored plan (or
/// any, without one; `first` says what makes the plan).
pub async fn known_buckets(
    link: &tern_engine::Link,
    flag: &str,
    first: &str,
    table: &str,
    buckets: impl IntoIterator<Item = usize>,
) -> anyhow::Result<()> {
    let n = link
        .stored_plan(table)
        .await?
        .map_or(0, |p| p.buckets.len());
    anyhow::ensure!(
        n > 0,
        "{flag}: {table} has no stored plan yet; {first} it first"
    );
    for b in buckets {
        anyhow::ensure!(b < n, "{flag}: {table} has buckets 0..{}, not {b}", n - 1);
    }
    Ok(())
}

/// What a change stream run by hand takes (`tern relay`, `tern reverse-relay`):
/// its pace, its batches, and whether it stops at the head.
#[derive(clap::Args, Debug)]
pub struct StreamArgs {
    /// Changes per second at most (default: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Changelog rows per batch.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Stop once the relay reaches the head of its changelog.
    #[arg(long)]
    pub until_caught_up: bool,
}

impl StreamArgs {
    /// Sets the stream's batch size and whether the run stops at the head.
    pub fn configure(&self, stream: &mut tern_engine::StreamOptions, stop_at_head: &mut bool) {
        stream.batch_changes = self.batch.max(1);
        *stop_at_head = self.until_caught_up;
    }

    /// The run's control: at most `rate` changes a second, Ctrl-C stops it
    /// after the current batch, its progress printed once a second as
    /// `render` says, held back by the spec's limits.
    pub fn control(
        &self,
        render: fn(&tern_engine::Progress) -> String,
        load: Option<&tern_engine::LoadGuard>,
    ) -> tern_engine::RunControl {
        let cancel = stop_on_ctrl_c(
            "stopping after the current batch; run again to continue from the stored position",
        );
        tern_engine::RunControl::new()
            .with_rate(self.rate)
            .with_cancel(cancel)
            .on_progress(once_a_second(move |p| eprintln!("{}", render(p))))
            .guarded(load)
    }
}

/// `lag N changes, S s | position P`: where a change stream stands.
pub fn lag_position(p: &tern_engine::Progress) -> String {
    let lag = p.lag.unwrap_or_default();
    format!(
        "lag {} changes, {:.2}s | position {}",
        lag.changes,
        lag.seconds,
        p.position
            .as_ref()
            .map_or_else(|| "-".to_string(), ToString::to_string)
    )
}

/// `show` called at most once a second (the first report at once): a
/// progress callback for the terminal.
pub fn once_a_second(
    show: impl Fn(&tern_engine::Progress) + Send + Sync + 'static,
) -> impl Fn(&tern_engine::Progress) + Send + Sync + 'static {
    let last: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    move |p| {
        if let Ok(mut at) = last.lock()
            && at.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1))
        {
            *at = Some(std::time::Instant::now());
            show(p);
        }
    }
}

/// A spec file's text with every `${NAME}` replaced by that environment
/// variable; an unset variable is an error that names it.
pub fn read_interpolated(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the spec {}: {e}", path.display()))?;
    interpolate(&text, |name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn interpolate(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "a `${` is not closed by `}`".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{name}}}` is not a variable name"));
        }
        let value = var(name).ok_or_else(|| {
            format!("the spec uses ${{{name}}}, which is not set in the environment")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    #[test]
    fn variables_are_replaced_and_missing_ones_named() {
        let var = |n: &str| (n == "INBOX_PW").then(|| "s3cret".to_string());
        assert_eq!(
            interpolate("url = \"postgres://app:${INBOX_PW}@db/inbox\"", var).as_deref(),
            Ok("url = \"postgres://app:s3cret@db/inbox\"")
        );
        let e = interpolate("url = \"${NOPE}\"", var).expect_err("unset");
        assert!(e.contains("NOPE"), "{e}");
        assert!(interpolate("a ${ b", var).is_err());
    }
}
