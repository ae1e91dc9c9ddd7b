//! Every fenced block of `README.md` and `docs/*.md` is proven. Rust blocks are doc-tests
//! (`src/doc_blocks.rs`); here the others: every block names its language; the unit-file block
//! is the shipped `examples/gateway.service` and both pass `systemd-analyze verify`; the
//! manifest block is the shipped `examples/kubernetes/gateway.yaml`; JSON blocks parse; every
//! gateway flag a block uses is one the gateway knows; and a sample output marked
//! `<!-- sample: gateway ARGS -->` has the shape of what the gateway prints when run with ARGS.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::gateway_support::{gateway_bin, Gateway};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A fenced block: where it is, its tag (` ```rust,no_run ` -> `rust,no_run`), its text, and
/// the HTML comment on the line before it, if any.
#[derive(Debug)]
struct Block {
    at: String,
    tag: String,
    body: String,
    comment: Option<String>,
}

/// `README.md` and every `docs/*.md`.
fn documents() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| (read(&n), n))
        .map(|(t, n)| (n, t))
        .collect()
}

fn blocks_of(name: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(tag) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let comment = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!--"))
            .and_then(|c| c.strip_suffix("-->"))
            .map(|c| c.trim().to_owned());
        let start = i + 1;
        let end = (start..lines.len())
            .find(|&j| lines[j].trim_start() == "```")
            .unwrap_or_else(|| panic!("{name}:{}: a block that never ends", i + 1));
        out.push(Block {
            at: format!("{name}:{}", i + 1),
            tag: tag.trim().to_owned(),
            body: lines[start..end].iter().map(|l| format!("{l}\n")).collect(),
            comment,
        });
        i = end + 1;
    }
    out
}

fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|(name, text)| blocks_of(name, text))
        .collect()
}

fn blocks_tagged(tag: &str) -> Vec<Block> {
    all_blocks().into_iter().filter(|b| b.tag == tag).collect()
}

#[test]
fn every_block_names_a_language_that_is_checked() {
    // rust: doc-tests; toml: tests/readme_quick_start.rs; ini, yaml, json: below; sh: its
    // gateway flags below; text: output and formats, shown as captured.
    let checked = [
        "rust",
        "rust,no_run",
        "toml",
        "ini",
        "yaml",
        "json",
        "sh",
        "text",
    ];
    let blocks = all_blocks();
    assert!(blocks.len() > 10, "{blocks:?}");
    for b in &blocks {
        assert!(
            checked.contains(&b.tag.as_str()),
            "{}: a block tagged {:?} (untagged blocks are Rust doc-tests; `ignore` proves nothing)",
            b.at,
            b.tag
        );
    }
}

/// The directives of a unit file: its lines without comments and blank lines.
fn directives(unit: &str) -> Vec<&str> {
    unit.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect()
}

const SHIPPED_UNIT: &str = "examples/gateway.service";

#[test]
fn the_unit_block_is_the_shipped_unit_without_its_comments() {
    let shipped = read(SHIPPED_UNIT);
    let blocks = blocks_tagged("ini");
    assert_eq!(blocks.len(), 1, "one unit file in the docs: {blocks:?}");
    for b in &blocks {
        assert_eq!(
            directives(&b.body),
            directives(&shipped),
            "{}: not {SHIPPED_UNIT}",
            b.at
        );
    }
}

/// What `systemd-analyze verify` says about `unit` (its `ExecStart=` binary made one that
/// exists here), or `None` when there is no `systemd-analyze`.
fn systemd_verify(unit: &str) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let text = unit.replace("/opt/gateway/gateway", exe.to_str().unwrap());
    let path = dir.path().join("gateway.service");
    std::fs::write(&path, text).unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("systemd-analyze: {e}"),
    };
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // It exits 0 even when it ignores a line it cannot parse: what it says counts.
    let mut complaints: Vec<String> = said
        .lines()
        .filter(|l| l.contains("gateway.service") || l.contains("ignoring"))
        .map(str::to_owned)
        .collect();
    if !out.status.success() {
        complaints.push(format!("exit status {}: {said}", out.status));
    }
    Some(complaints)
}

#[test]
fn the_shipped_unit_and_the_unit_block_pass_systemd_analyze_verify() {
    let mut units = vec![(SHIPPED_UNIT.to_owned(), read(SHIPPED_UNIT))];
    units.extend(blocks_tagged("ini").into_iter().map(|b| (b.at, b.body)));
    for (at, unit) in &units {
        let Some(complaints) = systemd_verify(unit) else {
            assert_ne!(
                std::env::var("SHUTDOWN_FORENSICS_REQUIRE_SYSTEMD").as_deref(),
                Ok("1"),
                "no systemd-analyze, and SHUTDOWN_FORENSICS_REQUIRE_SYSTEMD=1"
            );
            println!("SKIPPED: no systemd-analyze here");
            return;
        };
        assert!(complaints.is_empty(), "{at}: {complaints:#?}");
    }
    // The check catches what the README's unit once had: a comment after a value.
    let commented = read(SHIPPED_UNIT).replace(
        "Type=notify\n",
        "Type=notify          # READY=1 from forensics.ready()\n",
    );
    let complaints = systemd_verify(&commented).unwrap();
    assert!(
        complaints
            .iter()
            .any(|c| c.contains("Failed to parse service type")),
        "{complaints:#?}"
    );
}

#[test]
fn the_manifest_block_is_the_shipped_manifest() {
    let shipped = read("examples/kubernetes/gateway.yaml");
    let blocks = blocks_tagged("yaml");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    for b in &blocks {
        assert_eq!(
            b.body, shipped,
            "{}: not examples/kubernetes/gateway.yaml",
            b.at
        );
    }
}

#[test]
fn json_blocks_parse() {
    let blocks = blocks_tagged("json");
    assert!(!blocks.is_empty());
    for b in &blocks {
        for line in b.body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", b.at));
            assert!(v.is_object(), "{}: {line}", b.at);
        }
    }
}

/// The flags a line passes to the gateway: after `cargo run --example gateway --`, or after a
/// program named `.../gateway` (a unit's `ExecStart=`).
fn gateway_flags(line: &str) -> Vec<String> {
    let line = line.split(" #").next().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    let args = if let Some(i) = words
        .windows(3)
        .position(|w| w == ["--example", "gateway", "--"])
    {
        &words[i + 3..]
    } else if let Some(i) = words
        .iter()
        .position(|w| w.trim_start_matches("ExecStart=").ends_with("/gateway"))
    {
        &words[i + 1..]
    } else {
        &[]
    };
    args.iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| (*w).to_owned())
        .collect()
}

#[test]
fn every_gateway_flag_in_a_block_is_one_the_gateway_knows() {
    let help = Command::new(gateway_bin()).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let known: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| w.starts_with("--"))
        .collect();
    let mut used = Vec::new();
    for b in all_blocks() {
        if ["sh", "ini"].contains(&b.tag.as_str()) {
            for line in b.body.lines() {
                used.extend(gateway_flags(line).into_iter().map(|f| (b.at.clone(), f)));
            }
        }
    }
    // The manifest's args: ["--wait", "--log-dir", ...]
    let manifest = read("examples/kubernetes/gateway.yaml");
    let args = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("args:"))
        .expect("args in the manifest");
    let args: Vec<String> = serde_json::from_str(args.trim()).unwrap();
    used.extend(
        args.into_iter()
            .filter(|a| a.starts_with("--"))
            .map(|a| ("examples/kubernetes/gateway.yaml".to_owned(), a)),
    );
    assert!(used.len() >= 8, "{used:?}");
    for (at, flag) in &used {
        assert!(
            known.contains(&flag.as_str()),
            "{at}: {flag} is not in `gateway --help`:\n{help}"
        );
    }
}

/// A line's shape: timestamp cut, bars of `█` (whose length is timing) dropped, words split
/// outside quotes, `key=value` reduced to `key=`, runs of digits to `#`.
fn shape(line: &str) -> Vec<String> {
    let line = match line.find("Z ") {
        Some(i) if line.starts_with(|c: char| c.is_ascii_digit()) && i < 40 => &line[i + 2..],
        _ => line,
    };
    let mut words = Vec::new();
    let (mut word, mut quoted, mut escaped) = (String::new(), false, false);
    for c in line.chars().map(|c| if c == '█' { ' ' } else { c }) {
        if c.is_whitespace() && !quoted {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c == '"' && !escaped {
            quoted = !quoted;
        }
        escaped = c == '\\' && !escaped;
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .map(|w| {
            let key = w.split_once('=').map(|(k, _)| k).filter(|k| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
            let w = match key {
                Some(k) => format!("{k}="),
                None => w,
            };
            let mut out = String::new();
            for c in w.chars() {
                let c = if c.is_ascii_digit() { '#' } else { c };
                let last = out.chars().last();
                if c == '#' && last == Some(c) {
                    continue;
                }
                out.push(c);
            }
            out
        })
        .collect()
}

/// `sample` (a line of a sample block, `…` where it was cut) is the shape of `real`: the same
/// first word, and the rest in order (a cut line or an optional field left out still fits).
fn fits(sample: &[String], real: &[String]) -> bool {
    let sample: Vec<&String> = sample.iter().filter(|w| *w != "…").collect();
    let Some((first, rest)) = sample.split_first() else {
        return true;
    };
    if real.first() != Some(*first) {
        return false;
    }
    let mut it = real.iter().skip(1);
    rest.iter().all(|w| it.any(|r| r == *w))
}

#[test]
fn the_sample_outputs_are_shaped_like_a_real_run_of_the_gateway() {
    let samples: Vec<(Block, Vec<String>)> = all_blocks()
        .into_iter()
        .filter_map(|b| {
            let args = b.comment.as_deref()?.strip_prefix("sample: gateway")?;
            let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
            Some((b, args))
        })
        .collect();
    assert!(samples.len() >= 2, "the README's samples are marked");
    for (block, args) in samples {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut gw = Gateway::start(dir.path(), &args);
        let status = gw.wait_exit(Duration::from_secs(120));
        assert!(status.success(), "{status:?}\n{}", gw.seen.join("\n"));
        let real: Vec<Vec<String>> = gw.seen.iter().map(|l| shape(l)).collect();
        for line in block.body.lines() {
            let want = shape(line);
            if want.iter().all(|w| w == "…") {
                continue;
            }
            assert!(
                real.iter().any(|r| fits(&want, r)),
                "{}: no line of `gateway {}` is shaped like\n{line}\n{want:?}\nit printed:\n{}",
                block.at,
                args.join(" "),
                gw.seen.join("\n")
            );
        }
    }
}

#[test]
fn the_shape_of_a_line_keeps_words_and_keys_and_drops_values() {
    let a = shape(
        r#"2026-12-06T19:04:37.555618Z  INFO shutdown: +0.00s notify done (0.00s) adapters=3 oldest_abandoned="request{a=1 b} age 2.0s" phase=notify"#,
    );
    assert_eq!(
        a,
        [
            "INFO",
            "shutdown:",
            "+#.#s",
            "notify",
            "done",
            "(#.#s)",
            "adapters=",
            "oldest_abandoned=",
            "phase="
        ]
    );
    let sample = shape(" INFO shutdown: +1.00s notify done (0.00s) adapters=3 …");
    assert!(fits(&sample, &a));
    assert!(!fits(
        &shape(" INFO shutdown: +1.00s drain done (0.00s) …"),
        &a
    ));
    assert!(!fits(&shape(" WARN shutdown: +1.00s notify done …"), &a));
    // The over-budget mark sits at the budget's column, after the bar or apart from it.
    let bar = ["+#.#s", "drain", "!", "#.#s"];
    assert_eq!(shape(" +0.00s  drain  ██████!   3.00s"), bar);
    assert_eq!(shape(" +0.00s  drain  ████  !   3.31s"), bar);
}
