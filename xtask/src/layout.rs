//! `cargo xtask layout`: the shape rules of CONVENTIONS.md that a program can
//! check.
//!
//! - **No circle of files.** Within a crate, file A depends on file B when A
//!   names a path into B's module (`use crate::b::X`, `super::X`,
//!   `crate::b::f()`). A circle (A → B → … → A) means neither can be read, or
//!   changed, without the other. Declaring a child (`mod b;`) and re-exporting
//!   it (`pub use b::X;`) are not dependencies: that is how a folder module is
//!   built. Inline test modules (`#[cfg(test)]`) are left out.
//! - **No file over [`MAX_LINES`] lines** outside the integration tests: a file
//!   that grows past that becomes a folder of the same name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The longest a source file may be.
pub const MAX_LINES: usize = 700;

/// The crates whose `src/` is checked.
const CRATES: &[&str] = &[
    "app", "client", "control", "datafix", "engine", "frontend", "ramp", "server", "testkit",
    "xtask",
];

/// One file of a crate: its module path (`""` for the crate root,
/// `bulk_load::apply` for `src/bulk_load/apply.rs`) and its text.
struct SourceFile {
    path: PathBuf,
    module: String,
    text: String,
}

/// Checks every crate; fails with the list of what is wrong.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        if !src.is_dir() {
            continue;
        }
        let files = read_crate(&src).with_context(|| format!("read {}", src.display()))?;
        for f in &files {
            let lines = f.text.lines().count();
            if lines > MAX_LINES {
                problems.push(format!(
                    "{} has {lines} lines (more than {MAX_LINES}): make it a folder of the same name",
                    rel(root, &f.path)
                ));
            }
        }
        for circle in circles(&files) {
            let names: Vec<String> = circle.iter().map(|&i| rel(root, &files[i].path)).collect();
            problems.push(format!(
                "files of {krate} that depend on each other in a circle: {}",
                names.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: layout: no circle of files, no file over {MAX_LINES} lines");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("xtask: layout: {p}");
        }
        bail!("{} layout problem(s), listed above", problems.len())
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn read_crate(src: &Path) -> Result<Vec<SourceFile>> {
    let mut paths = Vec::new();
    collect(src, &mut paths)?;
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        let module = module_of(src, &path);
        files.push(SourceFile { path, module, text });
    }
    Ok(files)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → ``.
fn module_of(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap_or(path);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The code of a file that counts: comments and inline test modules removed.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Module paths a file names, each as the path written (`a::b::C`), already
/// resolved against `crate` and `super`.
fn named_paths(f: &SourceFile) -> Vec<String> {
    let code = code_of(&f.text);
    let mut out = Vec::new();
    for statement in statements(&code) {
        let reexport = is_reexport(&statement);
        for path in paths_in(&statement, &f.module) {
            // A parent re-exporting its own child is structure, not dependency.
            if reexport && (f.module.is_empty() || path.starts_with(&format!("{}::", f.module))) {
                continue;
            }
            out.push(path);
        }
    }
    out
}

/// Splits code into statements at `;` and `{`/`}` boundaries, keeping `use`
/// groups (`use a::{b, c};`) whole.
fn statements(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_use = false;
    let mut depth = 0i32;
    for token in code.split_inclusive([';', '{', '}']) {
        if current.trim().is_empty() {
            let t = token.trim_start();
            in_use = t.starts_with("use ")
                || t.starts_with("pub use ")
                || t.starts_with("pub(crate) use ")
                || t.starts_with("pub(super) use ");
        }
        current.push_str(token);
        if in_use {
            depth += token.matches('{').count() as i32 - token.matches('}').count() as i32;
            if token.ends_with(';') && depth <= 0 {
                out.push(std::mem::take(&mut current));
                depth = 0;
            }
        } else {
            out.push(std::mem::take(&mut current));
        }
    }
    out.push(current);
    out
}

fn is_reexport(statement: &str) -> bool {
    let t = statement.trim_start();
    t.starts_with("pub use ")
        || t.starts_with("pub(crate) use ")
        || t.starts_with("pub(super) use ")
}

/// Every `crate::…`, `super::…` and `self::…` path in a statement (use groups
/// expanded one level), resolved to an absolute module path.
fn paths_in(statement: &str, module: &str) -> Vec<String> {
    let bytes: Vec<char> = statement.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if !at_word_start {
            i += 1;
            continue;
        }
        let (base, skip) = if starts(&bytes, i, "crate::") {
            (String::new(), 7)
        } else if starts(&bytes, i, "super::") {
            // `super` is the parent of the file's module (for `a/mod.rs`,
            // whose module is `a`, that is the crate root).
            let mut base = parent(module);
            let mut j = i + 7;
            while starts(&bytes, j, "super::") {
                base = parent(&base);
                j += 7;
            }
            (base, j - i)
        } else if starts(&bytes, i, "self::") {
            (module.to_string(), 6)
        } else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        let join = |base: &str, tail: &str| {
            if base.is_empty() {
                tail.to_string()
            } else if tail.is_empty() {
                base.to_string()
            } else {
                format!("{base}::{tail}")
            }
        };
        let (tail, end) = read_path(&bytes, j);
        j = end;
        if bytes.get(j) == Some(&'{') {
            // A group: each item's leading path.
            let mut depth = 0;
            let mut item = String::new();
            let prefix = join(&base, tail.trim_end_matches("::"));
            while j < bytes.len() {
                let c = bytes[j];
                match c {
                    '{' => {
                        depth += 1;
                        if depth > 1 {
                            item.push(c);
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            push_item(&mut out, &prefix, &item);
                            break;
                        }
                        item.push(c);
                    }
                    ',' if depth == 1 => {
                        push_item(&mut out, &prefix, &item);
                        item.clear();
                    }
                    _ => item.push(c),
                }
                j += 1;
            }
        } else {
            out.push(join(&base, tail.trim_end_matches("::")));
        }
        i = j.max(i + 1);
    }
    out
}

fn push_item(out: &mut Vec<String>, prefix: &str, item: &str) {
    let head: String = item
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let head = head.trim_end_matches("::");
    if head.is_empty() || head == "self" {
        out.push(prefix.to_string());
    } else if prefix.is_empty() {
        out.push(head.to_string());
    } else {
        out.push(format!("{prefix}::{head}"));
    }
}

fn starts(chars: &[char], i: usize, prefix: &str) -> bool {
    prefix
        .chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

/// An identifier path (`a::b::C`) starting at `i`; where it ends.
fn read_path(chars: &[char], mut i: usize) -> (String, usize) {
    let mut s = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' || c == ':' {
            s.push(c);
            i += 1;
        } else {
            break;
        }
    }
    (s, i)
}

/// The file a module path lands in: the longest prefix that is a file's module.
fn file_of(path: &str, modules: &BTreeMap<String, usize>) -> Option<usize> {
    let mut p = path.to_string();
    loop {
        if let Some(&i) = modules.get(&p) {
            return Some(i);
        }
        if p.is_empty() {
            return None;
        }
        p = parent(&p);
    }
}

/// Strongly connected groups of more than one file (Tarjan), each as a cycle.
fn circles(files: &[SourceFile]) -> Vec<Vec<usize>> {
    let modules: BTreeMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let edges: Vec<BTreeSet<usize>> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            named_paths(f)
                .iter()
                .filter_map(|p| file_of(p, &modules))
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut state = Tarjan {
        index: vec![None; files.len()],
        low: vec![0; files.len()],
        on_stack: vec![false; files.len()],
        stack: Vec::new(),
        next: 0,
        groups: Vec::new(),
    };
    for v in 0..files.len() {
        if state.index[v].is_none() {
            state.visit(v, &edges);
        }
    }
    state
        .groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

struct Tarjan {
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    groups: Vec<Vec<usize>>,
}

impl Tarjan {
    fn visit(&mut self, v: usize, edges: &[BTreeSet<usize>]) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &edges[v] {
            match self.index[w] {
                None => {
                    self.visit(w, edges);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                _ => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut group = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            self.groups.push(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(module: &str, text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from(format!("src/{}.rs", module.replace("::", "/"))),
            module: module.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_circle_through_uses_is_found_and_reexports_are_not_dependencies() {
        let files = vec![
            file("", "pub mod a;\npub mod b;\npub use a::A;\n"),
            file("a", "use crate::b::B;\npub struct A;\n"),
            file("b", "pub struct B;\nfn f() { crate::a::A; }\n"),
            file("c", "use crate::{a, b::B};\n"),
        ];
        let found = circles(&files);
        assert_eq!(found, vec![vec![1, 2]]);
    }

    #[test]
    fn super_paths_resolve_to_the_parent_and_tests_are_left_out() {
        let files = vec![
            file("x", "mod y;\npub(crate) use y::Y;\npub struct X;\n"),
            file("x::y", "use super::X;\npub struct Y;\n"),
            file(
                "z",
                "pub struct Z;\n#[cfg(test)]\nmod tests { use crate::x::X; }\n",
            ),
        ];
        assert!(circles(&files).is_empty());
        let mut files = files;
        files[0].text.push_str("fn g() { y::Y; self::y::Y; }\n");
        assert_eq!(circles(&files), vec![vec![0, 1]]);
    }
}
