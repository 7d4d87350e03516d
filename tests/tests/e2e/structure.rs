//! The gateway's, billing's and the Stripe simulator's modules import each
//! other in no circle: a newcomer can read a module knowing only what sits
//! below it, and a change to a leaf (the error type, the config tree, the
//! body) cannot ripple back up.
//!
//! Each source file is a node. A file points at another when it names an item
//! defined there: `use crate::x::Y`, `super::Y`, `self::child::Y`, or a path in
//! code such as `crate::x::f()`. A name re-exported with `pub use` is followed
//! to the file that defines it, so `use crate::config::ByteSize` points at
//! `config/units.rs`, and the parent that re-exports points at its child. Test
//! modules (`#[cfg(test)]`, files named `tests`) are left out: a test may use
//! its parent. Paths inside macro calls are not read.
//!
//! The end-to-end suite's own modules (`tests/tests/e2e/`) are read the same
//! way, macro calls included, for a stricter rule: no arrow at all. Each is
//! one feature's tests; what two of them share is a fixture of the
//! `coopgate_tests` library (`tests/src/`), where a newcomer looks for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

#[test]
fn gateway_modules_import_each_other_in_no_circle() {
    assert_no_circles("gateway/src");
}

#[test]
fn billing_modules_import_each_other_in_no_circle() {
    assert_no_circles("billing/src");
}

#[test]
fn simulator_modules_import_each_other_in_no_circle() {
    assert_no_circles("stripe-sim/src");
}

#[test]
fn end_to_end_test_modules_import_no_sibling() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    // `tests/e2e.rs` mounts the folder as `mod e2e { .. }`.
    let graph = Graph::read(&root, &["e2e"], Macros::Read);
    assert!(graph.modules.len() > 5, "no modules read under {}", root.display());
    let mut report = String::new();
    for (from, edges) in &graph.edges {
        for (to, names) in edges {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            report.push_str(&format!("  {} -> {}: {}\n", graph.file(from), graph.file(to), names.join(", ")));
        }
    }
    assert!(
        report.is_empty(),
        "end-to-end test modules import each other; move what both need into a module of \
         tests/src (the coopgate_tests library)\n{report}"
    );
}

#[test]
fn the_fixtures_start_the_coopgate_binary_cargo_built_for_these_tests() {
    // The library cannot read `CARGO_BIN_EXE_*` (Cargo sets it for integration
    // tests only), so it finds the binary beside the test's own `deps/`.
    let built = Path::new(env!("CARGO_BIN_EXE_coopgate-under-test"));
    assert_eq!(coopgate_tests::process::program().canonicalize().unwrap(), built.canonicalize().unwrap());
}

/// A circle found in a crate fails the test with every file in it and, for
/// each arrow between them, the names that make it.
fn assert_no_circles(src: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(src);
    let graph = Graph::read(&root, &[], Macros::Skipped);
    assert!(graph.modules.len() > 5, "no modules read under {}", root.display());
    let circles = graph.circles();
    if circles.is_empty() {
        return;
    }
    let mut report = String::new();
    for circle in &circles {
        report.push_str(&format!("circle of {} files:\n", circle.len()));
        for from in circle {
            for (to, names) in &graph.edges[from] {
                if circle.contains(to) {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    report.push_str(&format!("  {} -> {}: {}\n", graph.file(from), graph.file(to), names.join(", ")));
                }
            }
        }
    }
    panic!("{src}: modules import each other in a circle; move what both need into a leaf module\n{report}");
}

/// A module path inside the crate: `[]` is the crate root, `["limit", "remote"]`
/// is `limit/remote.rs`.
type ModPath = Vec<String>;

/// Whether the paths inside macro calls (`format!("{}", super::x::f())`) are
/// read: token by token, so a path is found whatever the macro's grammar.
#[derive(Clone, Copy, PartialEq)]
enum Macros {
    Skipped,
    Read,
}

struct Graph {
    /// Every file module, with the file it was read from.
    modules: BTreeMap<ModPath, PathBuf>,
    /// Names each module re-exports with `pub use`, and the absolute path they come from.
    reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
    /// module -> module it names -> the names.
    edges: BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<String>>>,
    root: PathBuf,
    /// Where the folder sits in its crate: `crate::` paths start with it.
    mount: ModPath,
    macros: Macros,
}

impl Graph {
    fn read(root: &Path, mount: &[&str], macros: Macros) -> Graph {
        let mut files = Vec::new();
        collect(root, &mut files);
        let mut modules = BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(root).unwrap();
            let mut path: ModPath = rel.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if path == ["lib"] {
                path.clear();
            } else if path == ["main"] || path.iter().any(|p| p == "tests") || path.first().is_some_and(|p| p == "bin")
            {
                // The binary is its own crate; test modules may use their parents.
                continue;
            }
            modules.insert(path, file);
        }
        let mut parsed = BTreeMap::new();
        for (path, file) in &modules {
            let text = std::fs::read_to_string(file).unwrap();
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            parsed.insert(path.clone(), ast);
        }
        let mut graph = Graph {
            modules,
            reexports: BTreeMap::new(),
            edges: BTreeMap::new(),
            root: root.to_owned(),
            mount: mount.iter().map(|m| (*m).to_owned()).collect(),
            macros,
        };
        // First the re-exports, so that the arrows can be followed through them.
        for (path, ast) in &parsed {
            let mut found = Reader::new(&graph, path.clone());
            found.visit_file(ast);
            let map = found.uses.iter().filter(|u| u.public).map(|u| (u.alias.clone(), u.target.clone())).collect();
            graph.reexports.insert(path.clone(), map);
        }
        for (path, ast) in &parsed {
            let mut found = Reader::new(&graph, path.clone());
            found.visit_file(ast);
            let mut edges: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
            let named = found.uses.iter().map(|u| u.target.clone()).chain(found.paths.iter().cloned());
            for target in named {
                if let Some((module, name)) = graph.defining(&target)
                    && module != *path
                {
                    edges.entry(module).or_default().insert(name);
                }
            }
            graph.edges.insert(path.clone(), edges);
        }
        graph
    }

    fn file(&self, path: &ModPath) -> String {
        self.modules[path].strip_prefix(&self.root).unwrap().display().to_string()
    }

    /// The file module that defines what `target` (an absolute path) names,
    /// and the name: the longest module prefix, then through its re-exports.
    fn defining(&self, target: &ModPath) -> Option<(ModPath, String)> {
        let mut target = target.clone();
        for _ in 0..8 {
            let split = (0..=target.len()).rev().find(|&n| self.modules.contains_key(&target[..n]))?;
            let module = target[..split].to_vec();
            let Some(name) = target.get(split).cloned() else {
                // The module itself (`use crate::body;`): its file.
                return Some((module, target.last().cloned().unwrap_or_default()));
            };
            match self.reexports.get(&module).and_then(|m| m.get(&name)) {
                Some(origin) if origin != &target[..=split] => {
                    let mut next = origin.clone();
                    next.extend_from_slice(&target[split + 1..]);
                    target = next;
                }
                _ => return Some((module, name)),
            }
        }
        None
    }

    /// Strongly connected components of more than one file (Tarjan).
    fn circles(&self) -> Vec<BTreeSet<ModPath>> {
        struct State<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a ModPath, usize>,
            low: BTreeMap<&'a ModPath, usize>,
            stack: Vec<&'a ModPath>,
            on_stack: BTreeSet<&'a ModPath>,
            found: Vec<BTreeSet<ModPath>>,
        }
        fn connect<'a>(s: &mut State<'a>, v: &'a ModPath) {
            let n = s.index.len();
            s.index.insert(v, n);
            s.low.insert(v, n);
            s.stack.push(v);
            s.on_stack.insert(v);
            for w in s.graph.edges[v].keys() {
                if !s.index.contains_key(w) {
                    connect(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.insert(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    s.found.push(component);
                }
            }
        }
        let mut s = State {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for v in self.edges.keys() {
            if !s.index.contains_key(v) {
                connect(&mut s, v);
            }
        }
        s.found
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// One `use` leaf: the name it brings in and the absolute path it names.
struct Use {
    alias: String,
    target: ModPath,
    public: bool,
}

/// Reads one file: its `use` items and the crate-relative paths in its code.
struct Reader<'g> {
    graph: &'g Graph,
    /// The module being read: the file's, then any inline `mod x { .. }` in it.
    scope: ModPath,
    uses: Vec<Use>,
    paths: Vec<ModPath>,
}

impl<'g> Reader<'g> {
    fn new(graph: &'g Graph, scope: ModPath) -> Self {
        Reader { graph, scope, uses: Vec::new(), paths: Vec::new() }
    }

    /// The absolute path of `segments` as written in the current scope, when it
    /// names something of this crate.
    fn absolute(&self, segments: &[String]) -> Option<ModPath> {
        let first = segments.first()?;
        let mut base = match first.as_str() {
            "crate" => return segments[1..].strip_prefix(self.graph.mount.as_slice()).map(<[String]>::to_vec),
            "self" => return Some(self.scope.iter().chain(&segments[1..]).cloned().collect()),
            "super" => self.scope.clone(),
            _ => {
                // A child module of this one, named without `self::`.
                let mut child = self.scope.clone();
                child.push(first.clone());
                return self
                    .graph
                    .modules
                    .contains_key(&child)
                    .then(|| self.scope.iter().chain(segments).cloned().collect());
            }
        };
        let mut rest = segments;
        while rest.first().is_some_and(|s| s == "super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend_from_slice(rest);
        Some(base)
    }

    /// The crate-relative paths among a macro call's tokens, in nested groups too.
    fn macro_paths(&mut self, mut cursor: syn::buffer::Cursor) {
        while !cursor.eof() {
            if let Some((inside, _, _, next)) = cursor.any_group() {
                self.macro_paths(inside);
                cursor = next;
            } else if let Some((first, mut next)) = cursor.ident() {
                let mut segments = vec![first.to_string()];
                // `::` is two `:` tokens, then the next segment.
                while let Some((colon, after)) = next.punct()
                    && colon.as_char() == ':'
                    && let Some((colon, after)) = after.punct()
                    && colon.as_char() == ':'
                    && let Some((segment, after)) = after.ident()
                {
                    segments.push(segment.to_string());
                    next = after;
                }
                if segments.len() > 1
                    && let Some(target) = self.absolute(&segments)
                {
                    self.paths.push(target);
                }
                cursor = next;
            } else {
                cursor = cursor.token_tree().map_or(cursor, |(_, next)| next);
            }
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, public: bool) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, public);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, n.ident.to_string(), n.ident.to_string(), public),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, r.ident.to_string(), r.rename.to_string(), public),
            syn::UseTree::Glob(_) => {
                if let Some(target) = self.absolute(prefix) {
                    self.paths.push(target);
                }
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree, public);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], name: String, alias: String, public: bool) {
        let mut segments = prefix.to_vec();
        if name != "self" {
            segments.push(name);
        }
        let alias = if alias == "self" { prefix.last().cloned().unwrap_or_default() } else { alias };
        if let Some(target) = self.absolute(&segments) {
            self.uses.push(Use { alias, target, public });
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
}

impl<'ast> Visit<'ast> for Reader<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // `mod x;` is read from its own file; `mod x { .. }` is read here, in its scope.
        if m.content.is_some() {
            self.scope.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.scope.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        let mut prefix = Vec::new();
        if u.leading_colon.is_none() {
            self.use_tree(&mut prefix, &u.tree, public);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if let Some(target) = self.absolute(&segments) {
                self.paths.push(target);
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if self.graph.macros == Macros::Read {
            let tokens = syn::buffer::TokenBuffer::new2(mac.tokens.clone());
            self.macro_paths(tokens.begin());
        }
        syn::visit::visit_macro(self, mac);
    }
}
