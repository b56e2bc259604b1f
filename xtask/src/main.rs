//! `cargo xtask`: builds and runs Tern without any tool beyond cargo.
//!
//! - `cargo xtask demo`  — build the front end (wasm) and the server, start `tern demo`.
//! - `cargo xtask test`  — build, then run every Rust test and the browser tests.
//! - `cargo xtask site`  — only build the front end into `target/site`.
//! - `cargo xtask layout` — check the source layout (no circle of files, no
//!   file over 700 lines).
//!
//! Each installs what is missing (the wasm target, npm packages in `end2end/`,
//! Debian's `chromium`) and is quiet about what is already there. The wasm step
//! uses the `wasm-bindgen-cli-support` library, so no wasm-bindgen CLI is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod layout;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("site") => build_site(args.iter().any(|a| a == "--release")),
        Some("layout") => layout::check(&root()),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test|site> [options]\n\n  \
                 demo [--release] [-- ARGS]   build everything and run `tern demo ARGS`\n  \
                 test [--no-browser]          run every Rust test and the browser tests\n  \
                 site [--release]             build the front end into target/site\n  \
                 layout                       check for circles of files and files over 700 lines"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command in the workspace root, failing with its name when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => {
            eprintln!("xtask: installing the {WASM_TARGET} target");
            run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
        }
        // Without rustup, trust that the toolchain has the target; cargo says if not.
        Err(_) => Ok(()),
    }
}

/// Builds the hydration wasm, binds it, and lays out `target/site`.
fn build_site(release: bool) -> Result<()> {
    ensure_wasm_target()?;
    let root = root();
    let front_target = root.join("target").join("front");
    let mut build = Command::new(cargo());
    build.args([
        "build",
        "--quiet",
        "--package",
        "tern-frontend",
        "--lib",
        "--target",
        WASM_TARGET,
        "--target-dir",
    ]);
    build.arg(&front_target);
    if release {
        build.args(["--profile", "wasm-release"]);
    }
    run(&mut build).context("building the front end (wasm)")?;

    let profile_dir = if release { "wasm-release" } else { "debug" };
    let wasm = front_target
        .join(WASM_TARGET)
        .join(profile_dir)
        .join("tern_frontend.wasm");
    let site = root.join("target").join("site");
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name("tern")
        .web(true)
        .context("configuring wasm-bindgen")?
        .debug(!release)
        .generate(&pkg)
        .with_context(|| format!("running wasm-bindgen on {}", wasm.display()))?;

    let out = pkg.join("tern_bg.wasm");
    if release {
        optimise_wasm(&out)?;
    }
    if let Ok(m) = std::fs::metadata(&out) {
        eprintln!(
            "xtask: front end {} ({:.1} MB of wasm{})",
            out.display(),
            m.len() as f64 / 1_048_576.0,
            if release {
                ", optimised"
            } else {
                ", debug: `--release` for the small one"
            }
        );
    }

    std::fs::copy(root.join("style").join("tern.css"), pkg.join("tern.css"))
        .context("copying style/tern.css")?;
    copy_dir(&root.join("public"), &site)?;
    Ok(())
}

/// Shrinks a release build's wasm further with binaryen's `wasm-opt -Oz`
/// (the wasm-release profile already optimises for size; wasm-opt takes off
/// about another fifth).
///
/// Binaryen 116 or later: Debian's binaryen 108 is older than the wasm Rust
/// makes now, and its output failed in the browser
/// (`WebAssembly.Table.set(): Argument 1 is invalid for table`). A recent
/// enough `wasm-opt` on the PATH is used; else binaryen from the npm
/// registry, installed once under `target/tools/binaryen`.
fn optimise_wasm(wasm: &Path) -> Result<()> {
    let Some((wasm_opt, version)) = find_wasm_opt() else {
        eprintln!(
            "xtask: no wasm-opt of binaryen 116 or later (and npm could not install one); \
             the wasm stays as the wasm-release profile made it"
        );
        return Ok(());
    };
    eprintln!("xtask: {} ({})", version.trim(), wasm_opt.display());
    let tmp = wasm.with_extension("opt.wasm");
    run(Command::new(&wasm_opt)
        .args([
            "-Oz",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "-o",
        ])
        .arg(&tmp)
        .arg(wasm))
    .context("running wasm-opt")?;
    std::fs::rename(&tmp, wasm).with_context(|| format!("replacing {}", wasm.display()))
}

/// The binaryen release xtask installs from npm when none is on the PATH.
const BINARYEN_NPM: &str = "binaryen@132.0.0";

/// A `wasm-opt` of binaryen 116 or later with its version line: the PATH's,
/// else npm's (installed when missing).
fn find_wasm_opt() -> Option<(PathBuf, String)> {
    let version_of = |program: &Path| -> Option<String> {
        Command::new(program)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .filter(|v| binaryen_version(v).is_some_and(|n| n >= 116))
    };
    let on_path = PathBuf::from("wasm-opt");
    if let Some(v) = version_of(&on_path) {
        return Some((on_path, v));
    }
    let prefix = root().join("target").join("tools").join("binaryen");
    let local = prefix.join("node_modules").join(".bin").join("wasm-opt");
    if let Some(v) = version_of(&local) {
        return Some((local, v));
    }
    if !have("npm") {
        return None;
    }
    eprintln!("xtask: installing {BINARYEN_NPM} from npm for wasm-opt");
    std::fs::create_dir_all(&prefix).ok()?;
    let installed = run(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(BINARYEN_NPM));
    if let Err(e) = installed {
        eprintln!("xtask: could not install {BINARYEN_NPM}: {e:#}");
        return None;
    }
    version_of(&local).map(|v| (local, v))
}

/// The release number of `wasm-opt --version` (`wasm-opt version 116 (…)`).
fn binaryen_version(text: &str) -> Option<u32> {
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(|n| n.parse().ok())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn build_server(release: bool) -> Result<()> {
    let mut build = Command::new(cargo());
    build.args(["build", "--quiet", "--package", "tern-server"]);
    if release {
        build.arg("--release");
    }
    run(&mut build).context("building the server")
}

fn demo(args: &[String]) -> Result<()> {
    let release = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--release");
    let passthrough: Vec<&String> = args.iter().skip_while(|a| *a != "--").skip(1).collect();
    eprintln!("xtask: building Tern (the first build takes a few minutes)");
    build_site(release)?;
    build_server(release)?;
    let bin = root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("tern");
    let mut cmd = Command::new(bin);
    cmd.arg("demo").args(passthrough);
    if std::env::var_os("TERN_SITE_ROOT").is_none() {
        cmd.env("TERN_SITE_ROOT", root().join("target").join("site"));
    }
    run(&mut cmd)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn ensure_chromium() -> Result<()> {
    ensure_debian_package("/usr/bin/chromium", "chromium", "the browser tests")
}

/// Installs Debian's `package` when `binary` is missing, saying why.
fn ensure_debian_package(binary: &str, package: &str, why: &str) -> Result<()> {
    if Path::new(binary).exists() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian's {package} for {why}");
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        run(Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["-qq", "update"])?;
    apt(&["-qq", "install", "-y", "--no-install-recommends", package])
}

fn ensure_npm_packages() -> Result<()> {
    let dir = root().join("end2end");
    let marker = dir.join("node_modules").join(".package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (std::fs::metadata(&marker), std::fs::metadata(&lock)) {
        (Ok(m), Ok(l)) => m.modified()? >= l.modified()?,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    if !have("npm") {
        bail!("npm is missing: install Node.js and npm to run the browser tests");
    }
    eprintln!("xtask: installing the browser tests' npm packages");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))
    .context("npm ci in end2end/")
}

fn test(args: &[String]) -> Result<()> {
    let browser = !args.iter().any(|a| a == "--no-browser");
    // No circle of files in a crate, no file over 700 lines (docs/architecture.md).
    layout::check(&root())?;
    if browser {
        ensure_chromium()?;
        ensure_npm_packages()?;
    }
    build_site(false)?;
    build_server(false)?;

    eprintln!("xtask: Rust tests");
    let mut tests = Command::new(cargo());
    if have("cargo-nextest") {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--exclude",
            "tern-frontend",
            "--no-fail-fast",
        ]);
    } else {
        tests.args([
            "test",
            "--workspace",
            "--exclude",
            "tern-frontend",
            "--no-fail-fast",
        ]);
    }
    run(&mut tests).context("the Rust tests failed")?;

    if browser {
        eprintln!("xtask: browser tests");
        let bin = root().join("target").join("debug").join("tern");
        run(Command::new("npx")
            .args(["playwright", "test"])
            .current_dir(root().join("end2end"))
            .env("TERN_BIN", &bin)
            .env("TERN_SITE_ROOT", root().join("target").join("site")))
        .context("the browser tests failed; see end2end/playwright-report")?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}
