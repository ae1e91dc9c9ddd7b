//! The crate's internal imports flow one way (ARCHITECTURE.md): no module imports one that
//! imports it back, and no top-level folder imports one that imports it back.
//!
//! This reads `src/` as text: every `crate::`, `super::` and `self::` path in code (not in
//! comments or strings) and every relative `use child::...`, resolved to the file module that
//! defines the item, following `pub use` re-exports (so a facade `mod.rs` that only re-exports
//! is not mistaken for a dependency). Unit-test modules (`#[cfg(test)] mod x { .. }` and
//! `tests.rs` files) are left out: a test may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

/// One source file: its module path and what it refers to.
struct SourceFile {
    module: ModPath,
    /// `(inline module path inside the file, path as written)`, e.g. `([], ["crate","sys","proc","X"])`.
    paths: Vec<(ModPath, Vec<String>)>,
    /// Names re-exported by `pub use` / `pub(crate) use` at the file's top level, with the path
    /// they come from (as written).
    reexports: Vec<(String, Vec<String>)>,
    /// Child modules declared with `mod name;` or `mod name {`.
    children: BTreeSet<String>,
}

fn main_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn module_of(rel: &Path) -> Option<ModPath> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    match stem {
        "lib" if parts.is_empty() => {}
        "mod" => {}
        other => parts.push(other.to_owned()),
    }
    Some(parts)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Source text with comments, string and char literals blanked out (newlines kept).
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !b
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                if b.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(j) => {
                    out.push_str("' '");
                    i = j + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Sep, // ::
    Punct(char),
}

fn tokens(code: &str) -> Vec<Tok> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphabetic() || c == '_' || c == '$' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$') {
                i += 1;
            }
            out.push(Tok::Ident(b[s..i].iter().collect()));
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Tok::Sep);
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Parses a use tree starting at `toks[i]`; pushes every leaf path (prefix + segments).
/// Returns the index after the tree.
fn use_tree(toks: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) => {
                if s == "as" {
                    // `x as y`: the alias does not change what is imported.
                    i += 2;
                    out.push(path.clone());
                    return i;
                }
                path.push(s.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => i = use_tree(toks, i, &path, out),
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push(path);
                return i + 1;
            }
            _ => {
                if !path.is_empty() {
                    out.push(path);
                }
                return i;
            }
        }
    }
}

fn parse(text: &str, module: ModPath) -> SourceFile {
    let code = strip(text);
    let toks = tokens(&code);
    let mut file = SourceFile {
        module,
        paths: Vec::new(),
        reexports: Vec::new(),
        children: BTreeSet::new(),
    };
    // Inline module stack: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut cfg_test = false;
    let mut skip_until_depth: Option<usize> = None;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        match t {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
                continue;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if skip_until_depth == Some(depth) {
                    skip_until_depth = None;
                }
                if inline.last().is_some_and(|(_, d)| *d == depth + 1) {
                    inline.pop();
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        if skip_until_depth.is_some() {
            i += 1;
            continue;
        }
        // #[cfg(test)]
        if t == &Tok::Punct('#')
            && toks.get(i + 1) == Some(&Tok::Punct('['))
            && toks.get(i + 2) == Some(&Tok::Ident("cfg".into()))
            && toks.get(i + 3) == Some(&Tok::Punct('('))
            && toks.get(i + 4) == Some(&Tok::Ident("test".into()))
            && toks.get(i + 5) == Some(&Tok::Punct(')'))
        {
            cfg_test = true;
            i += 7;
            continue;
        }
        if let Tok::Ident(word) = t {
            if word == "mod" {
                if let Some(Tok::Ident(name)) = toks.get(i + 1) {
                    let opens = toks.get(i + 2) == Some(&Tok::Punct('{'));
                    if inline.is_empty() {
                        file.children.insert(name.clone());
                    }
                    if opens {
                        if cfg_test {
                            skip_until_depth = Some(depth);
                        } else {
                            inline.push((name.clone(), depth + 1));
                        }
                        depth += 1;
                        cfg_test = false;
                        i += 3;
                        continue;
                    }
                }
                cfg_test = false;
                i += 2;
                continue;
            }
            if word == "use" {
                let public = i > 0 && matches!(&toks[i - 1], Tok::Ident(p) if p == "pub")
                    || i > 3 && matches!(&toks[i - 4], Tok::Ident(p) if p == "pub");
                let mut leaves = Vec::new();
                let next = use_tree(&toks, i + 1, &[], &mut leaves);
                let here: ModPath = inline.iter().map(|(n, _)| n.clone()).collect();
                for leaf in leaves {
                    // A re-export is transparent: paths through it resolve to where the item
                    // lives, and the facade itself does not depend on what it re-exports.
                    if public && inline.is_empty() {
                        if let Some(name) = leaf.last() {
                            if name != "self" {
                                file.reexports.push((name.clone(), leaf.clone()));
                            }
                        }
                        continue;
                    }
                    file.paths.push((here.clone(), leaf));
                }
                cfg_test = false;
                i = next;
                continue;
            }
            let starts_path = matches!(word.as_str(), "crate" | "super" | "self")
                && toks.get(i + 1) == Some(&Tok::Sep)
                && !matches!(toks.get(i.wrapping_sub(1)), Some(Tok::Sep));
            // `pub(in crate::x)` names a scope, not a dependency.
            let visibility = i >= 3
                && toks[i - 1] == Tok::Ident("in".into())
                && toks[i - 2] == Tok::Punct('(')
                && toks[i - 3] == Tok::Ident("pub".into());
            if starts_path && !visibility {
                let mut leaves = Vec::new();
                let next = use_tree(&toks, i, &[], &mut leaves);
                let here: ModPath = inline.iter().map(|(n, _)| n.clone()).collect();
                for leaf in leaves {
                    file.paths.push((here.clone(), leaf));
                }
                i = next;
                continue;
            }
        }
        if !matches!(t, Tok::Punct('#') | Tok::Punct('[') | Tok::Punct(']')) {
            cfg_test = false;
        }
        i += 1;
    }
    file
}

struct Crate {
    files: BTreeMap<ModPath, SourceFile>,
}

impl Crate {
    fn load() -> Self {
        let src = main_src();
        let mut paths = Vec::new();
        walk(&src, &mut paths);
        let mut files = BTreeMap::new();
        for p in paths {
            let rel = p.strip_prefix(&src).unwrap();
            if rel.file_name().is_some_and(|f| f == "tests.rs") {
                continue;
            }
            let Some(module) = module_of(rel) else {
                continue;
            };
            let text = std::fs::read_to_string(&p).unwrap();
            files.insert(module.clone(), parse(&text, module));
        }
        Self { files }
    }

    /// The file module that defines what `path` (absolute segments) names.
    fn resolve(&self, path: &[String], hops: usize) -> Option<ModPath> {
        let mut module: ModPath = Vec::new();
        for (k, seg) in path.iter().enumerate() {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.files.contains_key(&next) {
                module = next;
                continue;
            }
            // Not a file module: an item of `module`, maybe re-exported from elsewhere.
            if hops < 8 {
                if let Some(file) = self.files.get(&module) {
                    if let Some((_, from)) = file.reexports.iter().find(|(n, _)| n == seg) {
                        if let Some(abs) = self.absolute(&module, &[], from) {
                            let mut rest = abs;
                            rest.extend(path[k + 1..].iter().cloned());
                            return self.resolve(&rest, hops + 1);
                        }
                    }
                }
            }
            return Some(module);
        }
        Some(module)
    }

    /// Turns a path as written in `module` (inside inline modules `inline`) into an absolute
    /// one; `None` for paths into other crates.
    fn absolute(
        &self,
        module: &ModPath,
        inline: &[String],
        path: &[String],
    ) -> Option<Vec<String>> {
        let mut base: Vec<String> = module.iter().chain(inline).cloned().collect();
        let mut rest = path;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let file = self.files.get(module)?;
                // A relative path names a child module declared in this file's top level.
                if !inline.is_empty() || !file.children.contains(first) {
                    return None;
                }
            }
            None => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (module, file) in &self.files {
            let out = edges.entry(module.clone()).or_default();
            for (inline, path) in &file.paths {
                let Some(abs) = self.absolute(module, inline, path) else {
                    continue;
                };
                if let Some(target) = self.resolve(&abs, 0) {
                    if &target != module {
                        out.insert(target);
                    }
                }
            }
        }
        edges
    }
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

/// Every cycle found by a depth-first search (one per back edge).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    fn visit(
        n: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        stack: &mut Vec<ModPath>,
        done: &mut BTreeSet<ModPath>,
        found: &mut Vec<Vec<ModPath>>,
    ) {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(n.clone());
            found.push(cycle);
            return;
        }
        if done.contains(n) {
            return;
        }
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, stack, done, found);
        }
        stack.pop();
        done.insert(n.clone());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(n, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn render(cycles: &[Vec<ModPath>]) -> String {
    cycles
        .iter()
        .map(|c| c.iter().map(show).collect::<Vec<_>>().join(" -> "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let krate = Crate::load();
    let edges = krate.edges();
    // The crate root only declares modules and re-exports: it may import everything, and
    // nothing resolves to it (paths through its re-exports resolve to where items live).
    let edges: BTreeMap<_, _> = edges.into_iter().filter(|(m, _)| !m.is_empty()).collect();
    for (m, out) in &edges {
        assert!(
            !out.contains(&Vec::new()),
            "{} refers to an item defined in lib.rs; lib.rs holds only docs, `mod` and `pub use`",
            show(m)
        );
    }
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "import cycles between modules:\n{}",
        render(&found)
    );
    let count: usize = edges.values().map(BTreeSet::len).sum();
    println!("{} modules, {count} import edges, no cycle", edges.len());
}

#[test]
fn no_top_level_folder_imports_one_that_imports_it_back() {
    let krate = Crate::load();
    let mut folders: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (m, out) in krate.edges() {
        let Some(top) = m.first() else { continue };
        let entry = folders.entry(vec![top.clone()]).or_default();
        for t in out {
            if let Some(t_top) = t.first() {
                if t_top != top {
                    entry.insert(vec![t_top.clone()]);
                }
            }
        }
    }
    let found = cycles(&folders);
    assert!(
        found.is_empty(),
        "import cycles between folders:\n{}",
        render(&found)
    );
    for (f, out) in &folders {
        println!(
            "{} -> {}",
            show(f),
            out.iter().map(show).collect::<Vec<_>>().join(", ")
        );
    }
}

#[test]
fn the_checker_finds_a_cycle_and_follows_reexports() {
    // The checker itself: a planted cycle is found, a facade's re-export is not one.
    let mut files = BTreeMap::new();
    let a = parse(
        "use crate::b::Thing;\npub(crate) fn f() {}\n#[cfg(test)]\nmod tests { use crate::c::X; }\n",
        vec!["a".into()],
    );
    let b = parse(
        "pub(crate) struct Thing;\nfn g() { crate::a::f(); }\n",
        vec!["b".into()],
    );
    let c = parse("mod inner;\npub use inner::X;\n", vec!["c".into()]);
    let inner = parse(
        "pub struct X;\nfn h() { let _ = \"crate::a::f\"; } // crate::a::f\nuse super::super::b::Thing;",
        vec!["c".into(), "inner".into()],
    );
    for f in [a, b, c, inner] {
        files.insert(f.module.clone(), f);
    }
    let krate = Crate { files };
    let edges = krate.edges();
    assert_eq!(
        edges[&vec!["a".to_owned()]],
        BTreeSet::from([vec!["b".to_owned()]]),
        "test modules, strings and comments are not imports"
    );
    let found = cycles(&edges);
    assert_eq!(render(&found), "a -> b -> a");
    assert_eq!(
        krate.resolve(&["c".into(), "X".into()], 0),
        Some(vec!["c".to_owned(), "inner".to_owned()])
    );
    assert_eq!(
        edges[&vec!["c".to_owned(), "inner".to_owned()]],
        BTreeSet::from([vec!["b".to_owned()]])
    );
}
