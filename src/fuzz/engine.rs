//! The one mutation engine: a seeded PRNG, a mutator over a seed corpus, and a runner that
//! feeds every input to a parser with no panic allowed and each call timed.
//!
//! Deterministic: the same seed and count give the same inputs on every machine, so a failure
//! is reproduced by its seed (printed) alone. No dependency, no nightly.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutants per target instead of its default (the big run: `1000000`).
const ITERS_ENV: &str = "SHUTDOWN_FORENSICS_FUZZ_ITERS";
/// The PRNG seed instead of the fixed one (a number, decimal or `0x` hex).
const SEED_ENV: &str = "SHUTDOWN_FORENSICS_FUZZ_SEED";

/// No single call may take this long. A call over a quarter of it is timed three more times
/// and the fastest counts: a busy machine may stall one call, a quadratic parser stalls every
/// time. The bound is for
/// optimised code (the big run is `--release`); unoptimised iterator code is some 30 times
/// slower, and `cargo test` runs the targets side by side.
const CALL_LIMIT: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(1)
} else {
    Duration::from_millis(100)
};

/// Values that sit on parsers' edges: integer limits, float oddities, encodings, separators.
const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-0",
    b"-1",
    b"1",
    b"255",
    b"256",
    b"65535",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"1e309",
    b"-1e309",
    b"1e-400",
    b"NaN",
    b"inf",
    b"0.0000001",
    b"1.",
    b".",
    b"0x",
    b"0xffffffffffffffff",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xce\xbc",
    b"\xf0\x9f\x98\x80",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"(",
    b")",
    b":",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"\\",
    b",",
    b"@",
    b"/",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"[]",
    b"{}",
];

/// Single bytes worth planting: separators, the ends of the ASCII and UTF-8 ranges.
const INTERESTING_BYTES: &[u8] = b"\0\x01\x7f\x80\xbf\xc0\xff\n\r\t :()[]{}\"\\,-+.=/@0129";

/// splitmix64: tiny, fast, and good enough to pick mutations.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            return 0;
        }
        (self.next_u64() % bound as u64) as usize
    }
}

/// Mutants of a seed corpus: each a seed with 1–4 stacked edits (sometimes up to 16), never
/// longer than `max_len`.
pub(crate) struct Mutator<'a> {
    seeds: &'a [Vec<u8>],
    dict: &'a [&'a [u8]],
    max_len: usize,
    rng: Rng,
}

impl<'a> Mutator<'a> {
    pub(crate) fn new(
        seeds: &'a [Vec<u8>],
        dict: &'a [&'a [u8]],
        max_len: usize,
        seed: u64,
    ) -> Self {
        assert!(!seeds.is_empty(), "a mutator needs at least one seed");
        Self {
            seeds,
            dict,
            max_len,
            rng: Rng::new(seed),
        }
    }

    /// The next mutant, written into `out`.
    pub(crate) fn next_into(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let seed = &self.seeds[self.rng.below(self.seeds.len())];
        out.extend_from_slice(&seed[..seed.len().min(self.max_len)]);
        let edits = if self.rng.below(8) == 0 {
            1 + self.rng.below(16)
        } else {
            1 + self.rng.below(4)
        };
        for _ in 0..edits {
            self.edit(out);
            out.truncate(self.max_len);
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let n = INTERESTING.len() + self.dict.len();
        let i = self.rng.below(n);
        if i < INTERESTING.len() {
            INTERESTING[i]
        } else {
            self.dict[i - INTERESTING.len()]
        }
    }

    /// A range `start..end` inside `len`, at most `max` long (empty when `len` is 0).
    fn range(&mut self, len: usize, max: usize) -> (usize, usize) {
        let start = self.rng.below(len + 1);
        let end = (start + 1 + self.rng.below(max)).min(len);
        (start, end)
    }

    fn edit(&mut self, m: &mut Vec<u8>) {
        let len = m.len();
        let at = self.rng.below(len + 1);
        // Weights out of 64: small edits most of the time, a huge repeat rarely (it is slow).
        match self.rng.below(64) {
            0..=7 if len > 0 => {
                let i = at.min(len - 1);
                m[i] ^= 1 << self.rng.below(8);
            }
            8..=12 if len > 0 => {
                let i = at.min(len - 1);
                m[i] = self.rng.next_u64() as u8;
            }
            13..=19 if len > 0 => {
                let i = at.min(len - 1);
                m[i] = INTERESTING_BYTES[self.rng.below(INTERESTING_BYTES.len())];
            }
            20..=24 => {
                let n = 1 + self.rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                m.splice(at..at, bytes);
            }
            25..=31 => {
                // Delete: mostly a few bytes, sometimes a large part.
                let max = if self.rng.below(4) == 0 {
                    len.max(1)
                } else {
                    16
                };
                let (s, e) = self.range(len, max);
                m.drain(s..e);
            }
            32..=35 => {
                // Duplicate a chunk in place.
                let (s, e) = self.range(len, 64);
                let chunk = m[s..e].to_vec();
                m.splice(s..s, chunk);
            }
            36..=41 => {
                // Splice: a chunk of another seed, inserted or overwriting our tail.
                let other = &self.seeds[self.rng.below(self.seeds.len())];
                let (s, e) = self.range(other.len(), 256);
                if self.rng.below(2) == 0 {
                    m.splice(at..at, other[s..e].iter().copied());
                } else {
                    m.truncate(at);
                    m.extend_from_slice(&other[s..]);
                }
            }
            42..=49 => {
                let token = self.token();
                m.splice(at..at, token.iter().copied());
            }
            50..=55 => {
                // Replace the number (or word) around `at` with an interesting value.
                let token = self.token();
                let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-';
                let start = m[..at].iter().rposition(|b| !word(b)).map_or(0, |i| i + 1);
                let end = m[at..]
                    .iter()
                    .position(|b| !word(b))
                    .map_or(len, |i| at + i);
                m.splice(start..end, token.iter().copied());
            }
            56..=59 => m.truncate(at),
            60..=61 => {
                // Repeat a chunk or a token: a few times, or up to the length cap.
                let chunk = if len > 0 && self.rng.below(2) == 0 {
                    let (s, e) = self.range(len, 64);
                    m[s..e.max(s + 1).min(len)].to_vec()
                } else {
                    self.token().to_vec()
                };
                if !chunk.is_empty() {
                    // Mostly a few repeats; one time in four, up to the cap (a slow input).
                    let room = if self.rng.below(4) == 0 {
                        self.max_len.saturating_sub(len)
                    } else {
                        16 * chunk.len()
                    };
                    let times = self.rng.below(room / chunk.len() + 1);
                    let repeated = chunk.repeat(times);
                    m.splice(at..at, repeated);
                }
            }
            _ => {
                // Swap two bytes.
                if len > 1 {
                    let j = self.rng.below(len);
                    m.swap(at.min(len - 1), j);
                }
            }
        }
    }
}

/// One fuzz target: its corpus folder (`fuzz/corpus/<name>/`), its default count, the length
/// cap of its inputs (the bound of the read that feeds the real parser), and extra tokens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) name: &'static str,
    pub(crate) default_iters: usize,
    pub(crate) max_len: usize,
    pub(crate) dict: &'a [&'a [u8]],
}

/// What a run did, for the summary line and the caller's own checks.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) inputs: usize,
    pub(crate) accepted: usize,
    pub(crate) slowest: Duration,
    pub(crate) elapsed: Duration,
}

pub(crate) fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name)
}

/// The committed seeds of `name`, in file-name order.
pub(crate) fn load_corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "corpus {} is empty", dir.display());
    seeds
}

fn env_number(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{key}={v}: {e}")))
}

/// FNV-1a of the target's name: a fixed default seed per target.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs `target`'s seeds, then its mutants, through `check`, which returns whether the parser
/// accepted the input (for the summary). Fails on the first panic (the input is saved and named)
/// and when a call takes [`CALL_LIMIT`] or more (the fastest of four).
pub(crate) fn fuzz(target: Target<'_>, mut check: impl FnMut(&[u8]) -> bool) -> Summary {
    let seeds = load_corpus(target.name);
    let iters = env_number(ITERS_ENV).map_or(target.default_iters, |n| n as usize);
    let seed = env_number(SEED_ENV).unwrap_or_else(|| name_seed(target.name));
    let mut mutator = Mutator::new(&seeds, target.dict, target.max_len, seed);
    let started = Instant::now();
    let mut summary = Summary {
        inputs: 0,
        accepted: 0,
        slowest: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    let mut slowest_input = Vec::new();
    let mut input = Vec::with_capacity(target.max_len);
    for i in 0..seeds.len() + iters {
        if i < seeds.len() {
            input.clear();
            input.extend_from_slice(&seeds[i]);
        } else {
            mutator.next_into(&mut input);
        }
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let mut took = t0.elapsed();
        match outcome {
            Ok(accepted) => summary.accepted += usize::from(accepted),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(not a string)");
                let saved = std::env::temp_dir().join(format!(
                    "shutdown-forensics-fuzz-{}-{seed:#x}-{i}",
                    target.name
                ));
                let _ = std::fs::write(&saved, &input);
                panic!(
                    "fuzz {}: input #{i} (seed {seed:#x}) panicked: {message}\ninput ({} bytes, \
                     saved to {}): {}\nfix it, then add the input to fuzz/corpus/{}/ as a \
                     regression seed",
                    target.name,
                    input.len(),
                    saved.display(),
                    input
                        .escape_ascii()
                        .to_string()
                        .chars()
                        .take(600)
                        .collect::<String>(),
                    target.name,
                );
            }
        }
        summary.inputs += 1;
        if took >= CALL_LIMIT / 4 {
            // Timed again: a stall of the machine does not repeat, a slow parser does.
            for _ in 0..3 {
                let t0 = Instant::now();
                check(&input);
                took = took.min(t0.elapsed());
            }
        }
        if took > summary.slowest {
            summary.slowest = took;
            slowest_input.clone_from(&input);
        }
    }
    summary.elapsed = started.elapsed();
    assert!(
        summary.slowest < CALL_LIMIT,
        "fuzz {}: an input of {} bytes takes {:?} a call, fastest of four (limit {CALL_LIMIT:?}): {}",
        target.name,
        slowest_input.len(),
        summary.slowest,
        slowest_input
            .escape_ascii()
            .to_string()
            .chars()
            .take(600)
            .collect::<String>(),
    );
    println!(
        "fuzz {}: {} inputs ({} seeds + {iters} mutants, seed {seed:#x}) in {:.2?}: 0 panics, \
         slowest call {:.2?} (fastest of 4 when over {:.0?}), {} accepted",
        target.name,
        summary.inputs,
        seeds.len(),
        summary.elapsed,
        summary.slowest,
        CALL_LIMIT / 4,
        summary.accepted,
    );
    summary
}

/// Mutants of `fixtures` with the engine's default seed: for the small no-panic checks beside
/// each `/proc` parser (`sys/task.rs`, `sys/fd.rs`, `sys/net.rs`).
pub(crate) fn mutants(fixtures: &[&[u8]], count: usize, mut f: impl FnMut(&[u8])) {
    let seeds: Vec<Vec<u8>> = fixtures.iter().map(|f| f.to_vec()).collect();
    let max_len = 4 * seeds.iter().map(Vec::len).max().unwrap_or(0) + 64;
    let mut mutator = Mutator::new(&seeds, &[], max_len, 0x9E37_79B9_7F4A_7C15);
    let mut m = Vec::new();
    for _ in 0..count {
        mutator.next_into(&mut m);
        f(&m);
    }
}
