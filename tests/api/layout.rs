//! The module graph has no cycles: every module can be read knowing only
//! the ones below it. Checked from the source (paths after `crate::` and
//! `super::` in code, not comments or tests), at the level of files and at
//! the level of the top folders (`store`, `authority`, ...): a folder that
//! imports another may not be imported by it, through any of their files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (`security::guard`) → source text, without comments and
/// unit tests.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>, root: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out, root);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap()
                .lines()
                .map(|line| line.split("//").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &mut out, &root);
    out
}

/// The module a path names: its longest prefix that is a module.
fn resolve(path: &[&str], current: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let mut segments: Vec<String> = Vec::new();
    let mut rest = path;
    match rest.first() {
        Some(&"crate") => rest = &rest[1..],
        Some(&"super") => {
            segments = current.split("::").map(String::from).collect();
            while rest.first() == Some(&"super") {
                segments.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    segments.extend(rest.iter().map(|s| s.to_string()));
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|name| known.contains_key(name))
}

/// Every `crate::a::b` / `super::a` path in the code, `use` groups expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_path = (i == 0 || !word(bytes[i - 1]))
            && (bytes[i..].starts_with(b"crate::") || bytes[i..].starts_with(b"super::"));
        if !at_path {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut depth = 0;
        while j < bytes.len() {
            match bytes[j] {
                b'{' => depth += 1,
                b'}' if depth == 0 => break,
                b'}' => depth -= 1,
                b if depth == 0 && !(word(b) || b == b':') => break,
                _ => {}
            }
            j += 1;
        }
        let text = String::from_utf8_lossy(&bytes[i..j]).to_string();
        let split = |p: &str| p.split("::").map(String::from).collect::<Vec<_>>();
        match text.split_once("::{") {
            Some((prefix, group)) => {
                for item in group.trim_end_matches('}').split(',') {
                    let item = item.trim().trim_start_matches('{');
                    if !item.is_empty() {
                        out.push(split(&format!("{prefix}::{item}")));
                    }
                }
            }
            None => out.push(split(&text)),
        }
        i = j;
    }
    out
}

/// File-level edges: module → the modules its code names.
fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in modules {
        let targets = edges.entry(name.clone()).or_default();
        for path in paths(code) {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(target) = resolve(&path, name, modules)
                && target != *name
                && !name.starts_with(&format!("{target}::"))
            {
                targets.insert(target);
            }
        }
    }
    edges
}

/// Panics naming the first cycle found by a depth-first search.
fn assert_acyclic(edges: &BTreeMap<String, BTreeSet<String>>, level: &str) {
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        level: &str,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| *n == node) {
            panic!("{level} cycle: {} -> {node}", stack[at..].join(" -> "));
        }
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done, level);
        }
        stack.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, edges, &mut Vec::new(), &mut done, level);
    }
}

/// The top folder (or file) a module lives in: `store::sessions::batch` → `store`.
fn top(module: &str) -> String {
    module.split("::").next().unwrap_or(module).to_string()
}

#[test]
fn the_module_graph_has_no_cycles() {
    let modules = modules();
    let edges = edges(&modules);
    assert!(
        edges["security::guard"].contains("security::csrf"),
        "the parser sees edges"
    );
    assert_acyclic(&edges, "module");
}

#[test]
fn the_top_folders_import_each_other_in_one_direction_only() {
    let modules = modules();
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in edges(&modules) {
        let entry = folders.entry(top(&from)).or_default();
        entry.extend(targets.iter().map(|t| top(t)).filter(|t| *t != top(&from)));
    }
    assert!(
        folders["routes"].contains("authority") && folders["authority"].contains("store"),
        "the folder graph sees edges: {folders:?}"
    );
    assert_acyclic(&folders, "folder");
}
