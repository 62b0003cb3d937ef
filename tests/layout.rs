//! The house rules of `src/` (ARCHITECTURE.md), checked on the source itself: one job a file
//! (a `//!` line saying it, a bounded size), no circle of imports among files, nothing imports
//! `server/`, no `static` outside `main.rs`, unsafe code only in `server/socket.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// "Under ~400 lines": a little slack, no more.
const MAX_LINES: usize = 450;

/// Every `.rs` file under `src/`, as (module path, file), e.g. (["proxy", "hooks"], …).
fn files() -> Vec<(Vec<String>, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(Path::new(SRC), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(SRC).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            (module, p)
        })
        .collect()
}

/// The source without comments (line comments; doc comments are line comments too) and without
/// its unit tests (a `#[cfg(test)]` module closes a file).
fn code(text: &str) -> String {
    let text = text.find("#[cfg(test)]").map_or(text, |i| &text[..i]);
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(|s| format!("{prefix}{s}")))
        .collect()
}

/// The module paths a file refers to: its `use` items and inline `crate::`/`super::` paths,
/// made absolute.
fn references(
    module: &[String],
    is_mod_file: bool,
    text: &str,
    children: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    let code = code(text);
    let mut paths = Vec::new();
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let t = line.trim_start();
        if statement.is_none() {
            let starts = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "];
            if let Some(prefix) = starts.iter().find(|p| t.starts_with(**p)) {
                statement = Some(t[prefix.len()..].to_owned());
            }
        } else if let Some(s) = statement.as_mut() {
            s.push_str(t);
        }
        if let Some(s) = statement.take() {
            match s.find(';') {
                Some(end) => paths.extend(expand(&s[..end])),
                None => statement = Some(s),
            }
        }
    }
    for root in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(root) {
            let start = at + i;
            let path: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            // `super::{a, b}` is a use tree: read above, item by item.
            if !path.ends_with("::") {
                paths.push(path);
            }
            at = start + root.len();
        }
    }
    // A file's own module, as `super::` sees it: a mod.rs is its directory's module.
    let here: Vec<String> = module.to_vec();
    let parent: Vec<String> = if is_mod_file || module.is_empty() {
        here.iter()
            .take(here.len().saturating_sub(1))
            .cloned()
            .collect()
    } else {
        here[..here.len() - 1].to_vec()
    };
    let base_for_super = if is_mod_file { parent.clone() } else { parent };
    paths
        .into_iter()
        .filter_map(|p| {
            let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
            let (first, rest) = segs.split_first()?;
            let abs: Vec<String> = match *first {
                "crate" => rest.iter().map(|s| s.to_string()).collect(),
                "super" => {
                    let mut base = base_for_super.clone();
                    let mut rest = rest;
                    while rest.first() == Some(&"super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().map(|s| s.to_string()));
                    base
                }
                "self" => {
                    let mut base = here.clone();
                    base.extend(rest.iter().map(|s| s.to_string()));
                    base
                }
                // `use child::X` in a module with that child.
                child if children.contains(child) => {
                    let mut base = here.clone();
                    base.extend(segs.iter().map(|s| s.to_string()));
                    base
                }
                _ => return None,
            };
            Some(abs)
        })
        .collect()
}

#[test]
fn every_file_says_its_job_and_stays_small() {
    let mut problems = Vec::new();
    for (_, path) in files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path.strip_prefix(SRC).unwrap().display().to_string();
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: no `//!` line saying its one job"));
        }
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("{rel}: {lines} lines (at most {MAX_LINES})"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_circle_of_imports_and_nothing_imports_server() {
    let files = files();
    let modules: BTreeMap<Vec<String>, PathBuf> = files.iter().cloned().collect();
    // The file that defines the longest known prefix of `path`.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains_key(p))
    };
    // Names a module re-exports (`pub use child::Name`): a path through the re-export is an
    // import of the file that defines the name, not of the module that re-exports it.
    let mut reexports: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = code(&std::fs::read_to_string(path).unwrap());
        let is_mod_file = path.ends_with("mod.rs") || path.ends_with("lib.rs");
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        let public: String = text
            .lines()
            .filter(|l| l.trim_start().starts_with("pub use "))
            .map(|l| l.trim_start().replacen("pub ", "", 1) + "\n")
            .collect();
        for target in references(module, is_mod_file, &public, &children) {
            if let Some(name) = target.last() {
                let mut key = module.clone();
                key.push(name.clone());
                reexports.insert(key, target);
            }
        }
    }
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        let mut path = path.to_vec();
        for _ in 0..4 {
            let file = resolve(&path)?;
            let mut key = file.clone();
            match path.get(file.len()) {
                Some(name) => key.push(name.clone()),
                None => return Some(file),
            }
            match reexports.get(&key) {
                Some(source) if *source != path => path = source.clone(),
                _ => return Some(file),
            }
        }
        resolve(&path)
    };
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let is_mod_file = path.ends_with("mod.rs") || path.ends_with("lib.rs");
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        for target in references(module, is_mod_file, &text, &children) {
            let Some(file) = resolve(&target) else {
                continue;
            };
            if file == *module || file.is_empty() {
                continue;
            }
            // The program (app.rs, the crate root) runs the server; nothing else may reach it.
            if file.first().map(String::as_str) == Some("server")
                && !matches!(module.first().map(String::as_str), Some("server" | "app"))
                && !module.is_empty()
            {
                problems.push(format!(
                    "{} imports server/ ({})",
                    module.join("::"),
                    target.join("::")
                ));
            }
            edges.entry(module.clone()).or_default().insert(file);
        }
    }
    // Any circle: a file reachable from itself.
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let mut circle: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    circle.push(start.join("::"));
                    problems.push(format!("circle: {}", circle.join(" → ")));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_statics_and_unsafe_code_in_one_module() {
    let mut problems = Vec::new();
    for (module, path) in files() {
        let text = code(&std::fs::read_to_string(&path).unwrap());
        let rel = path.strip_prefix(SRC).unwrap().display().to_string();
        for line in text.lines() {
            let t = line.trim_start();
            let top_level = line.len() == t.len();
            if top_level
                && (t.starts_with("static ")
                    || t.starts_with("pub static ")
                    || t.starts_with("pub(crate) static "))
                && rel != "main.rs"
            {
                problems.push(format!("{rel}: {t}"));
            }
            if t.contains("unsafe ") && module != ["server", "socket"] {
                problems.push(format!("{rel}: unsafe outside server/socket.rs: {t}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
