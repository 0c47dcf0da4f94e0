//! The module graph of `src/` is a DAG of layers, checked from the source text.
//!
//! Every `crate::…`, `super::…` and `self::…` path in the code (comments excluded) of every file under `src/` is
//! resolved to the module it names. Two rules:
//! - **Layers**: a top-level module may use only modules of lower layers (and itself). The order is [`LAYERS`].
//! - **No cycles between siblings**: inside a top-level module, the files (second-level modules) that use each
//!   other form no cycle (e.g. `kernels::conv` -> `kernels::direct` -> `kernels::conv`).
//!
//! The test prints the layer graph it found, so a run shows there is no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the bottom up: a module may use the ones before it, never the ones after.
const LAYERS: &[&str] = &[
    "kernels", "model", "weights", "optim", "data", "preset", "train", "record", "attach", "tui",
    "cli",
];

/// A module path, e.g. `["train", "step"]` for `src/train/step.rs`, `["train"]` for `src/train/mod.rs`.
type ModPath = Vec<String>;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without comments and without its inline `#[cfg(test)]` module (whose `super` is the file).
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The first path segments after a `crate::` / `super::` prefix: one, or each item of a `{…}` group.
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0usize;
        let mut items = Vec::new();
        let mut start = 0usize;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .filter_map(|item| ident_at(item.trim()).map(str::to_string))
            .collect();
    }
    ident_at(rest).map(str::to_string).into_iter().collect()
}

/// The modules a file's code names, resolved to absolute module paths (only their first segment below the base).
fn references(module: &ModPath, code: &str) -> Vec<ModPath> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (i, _) in code.match_indices("::") {
        // Find the path's start: walk back over `super::super::`, `crate::`, `self::`.
        let head_start = code[..i]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        if head_start > 0 && bytes[head_start - 1] == b'$' {
            continue; // a macro's `$crate`
        }
        let head = &code[head_start..i];
        if !(head == "crate" || head == "self" || head.starts_with("super")) {
            continue;
        }
        if head_start > 0 && code[..head_start].ends_with("::") {
            continue;
        }
        let mut base: ModPath = match head {
            "crate" => Vec::new(),
            "self" => module.clone(),
            _ => {
                let ups = head.split("::").filter(|s| *s == "super").count();
                if head.split("::").any(|s| s != "super") {
                    continue; // counted at its last `::`
                }
                let keep = module.len().saturating_sub(ups);
                module[..keep].to_vec()
            }
        };
        // For `super::super::x` only the last `::` of the prefix names the target.
        let rest = &code[i + 2..];
        if rest.starts_with("super") {
            continue;
        }
        for seg in first_segments(rest) {
            base.push(seg);
            out.push(base.clone());
            base.pop();
        }
    }
    out
}

fn layer_index(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

/// A cycle in a directed graph, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

struct Graph {
    /// Every module that exists as a file.
    modules: BTreeSet<ModPath>,
    /// (from-file, to-module) for every reference.
    edges: Vec<(String, ModPath, ModPath)>,
}

fn scan() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut modules = BTreeSet::new();
    let mut edges = Vec::new();
    for file in &files {
        let module = module_path(&src, file);
        modules.insert(module.clone());
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        for target in references(&module, &code_of(&text)) {
            edges.push((shown.clone(), module.clone(), target));
        }
    }
    Graph { modules, edges }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let graph = scan();
    let mut layer_graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut violations = Vec::new();
    for (file, from, to) in &graph.edges {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue;
        };
        if a == b {
            continue;
        }
        let (Some(la), Some(lb)) = (layer_index(a), layer_index(b)) else {
            continue; // e.g. a function of the crate root
        };
        layer_graph
            .entry(LAYERS[la])
            .or_default()
            .insert(LAYERS[lb]);
        if lb > la {
            violations.push(format!(
                "src/{file}: `{a}` uses `{}` (a higher layer)",
                to.join("::")
            ));
        }
    }
    for top in graph.modules.iter().filter(|m| m.len() == 1) {
        assert!(
            layer_index(&top[0]).is_some(),
            "src/{}: a top-level module that is not in LAYERS; place it in the layer order",
            top[0]
        );
    }
    println!("layer graph (a module -> the lower layers it uses):");
    for layer in LAYERS {
        let uses: Vec<&str> = layer_graph
            .get(layer)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        println!(
            "  {layer} -> {}",
            if uses.is_empty() {
                "-".into()
            } else {
                uses.join(", ")
            }
        );
    }
    assert!(
        violations.is_empty(),
        "imports against the layers ({}):\n{}",
        LAYERS.join(" < "),
        violations.join("\n")
    );
}

#[test]
fn sibling_modules_form_no_cycle() {
    let graph = scan();
    let mut by_layer: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (_, from, to) in &graph.edges {
        if from.len() < 2 || to.len() < 2 || from[0] != to[0] || from[1] == to[1] {
            continue;
        }
        if !graph.modules.contains(&to[..2]) {
            continue; // an item of the parent module (a re-export), not a sibling file
        }
        by_layer
            .entry(from[0].clone())
            .or_default()
            .entry(from[1].clone())
            .or_default()
            .insert(to[1].clone());
    }
    let cycles: Vec<String> = by_layer
        .iter()
        .filter_map(|(layer, g)| find_cycle(g).map(|c| format!("{layer}: {}", c.join(" -> "))))
        .collect();
    assert!(
        cycles.is_empty(),
        "modules that use each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_scanner_resolves_paths_as_rustc_does() {
    let m: ModPath = vec!["train".into(), "step".into()];
    let refs = references(
        &m,
        "use crate::{model::Net, preset::{Preset, X}};\nuse super::state::S;\nuse super::super::kernels::conv;\n\
         let x = crate::record::run_dir::X; // crate::tui in a comment is code_of's business\n",
    );
    let shown: Vec<String> = refs.iter().map(|r| r.join("::")).collect();
    assert_eq!(
        shown,
        [
            "model",
            "preset",
            "train::state",
            "kernels",
            "record",
            "tui"
        ],
        "the raw scan (comments not yet stripped)"
    );
    let refs = references(&m, &code_of("use crate::model::X; // crate::tui::Y\n"));
    assert_eq!(refs, vec![vec!["model".to_string()]]);
    let root: ModPath = vec!["train".into()];
    let up = references(&root, "use super::preset::Preset;");
    assert_eq!(
        up,
        vec![vec!["preset".to_string()]],
        "super of a mod.rs is the crate root"
    );
}
