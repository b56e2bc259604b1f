//! Running the `tern` binary and writing spec files.

use std::path::PathBuf;
use std::process::Output;

use tern_testkit::TestDb;

/// A spec file in a temporary directory, removed on drop.
pub struct SpecFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl SpecFile {
    pub fn new(source: &TestDb, target: &TestDb, body: &str) -> anyhow::Result<SpecFile> {
        let dir = std::env::temp_dir().join(format!("tern-spec-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("spec.toml");
        std::fs::write(
            &path,
            format!(
                "{body}\n[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n",
                source.url, target.url
            ),
        )?;
        Ok(SpecFile { dir, path })
    }
}

impl Drop for SpecFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn tern() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_tern"));
    c.kill_on_drop(true);
    c
}

/// Runs `tern args…` to completion; fails with its output if it fails.
pub async fn run(args: &[&str]) -> anyhow::Result<String> {
    let out: Output = tern().args(args).output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "tern {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}
