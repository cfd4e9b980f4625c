//! Deterministic mutations of corpus inputs: what the bounded run in `make test` feeds the
//! targets, and half of what the libFuzzer binaries try (the other half is libFuzzer's own byte
//! mutations).
//!
//! Random bytes almost never make JSON, so most mutations are structure-aware: the input is
//! parsed, one to three nodes are changed (a field removed, added, renamed or retyped, a value
//! swapped for a boundary value, a control character, a look-alike, an oversize string) and the
//! document is written back. A quarter are byte-level (bit flips, inserted words, cuts, splices),
//! which reach the JSON reader's error paths and the signature check.

use serde_json::{Map, Number, Value};

/// A small deterministic random number generator (SplitMix64): the same seed gives the same
/// cases on every machine and every Rust release.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Words every parser here cares about: field names of the contract, ids, ARNs, enum values.
pub const COMMON_WORDS: &[&str] = &[
    "CustomKeyStoreId",
    "cks-1234567890abcdef0",
    "cks-0fedcba0987654321",
    "ConfirmCustomKeyStoreName",
    "ExampleCloudHsmStore",
    "DryRun",
    "PendingWindowInDays",
    "AllowOrphanedKeyMaterial",
    "RequestedBy",
    "Reason",
    "TicketId",
    "CHG-1234",
    "MinDaysSinceLastUse",
    "RequireApproval",
    "Trigger",
    "tag",
    "webhook",
    "QuarantineDays",
    "DecommissionExecutionArn",
    "arn:aws:states:us-east-1:123456789012:execution:decommission:run-1",
    "arn:aws:states:us-east-1:123456789012:stateMachine:decommission",
    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "arn:aws:cloudhsm:us-east-1:123456789012:cluster/cluster-1a23b4cdefg",
    "arn:aws:iam::123456789012:role/KeyAdmin",
    "arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice",
    "cluster-1a23b4cdefg",
    "2026-11-28T10:00:00Z",
    "2026-11-28T10:00:00.123Z",
    "alice@example.com",
];

/// Values at and beyond the edges of what the parsers accept.
fn interesting_value(rng: &mut Rng, words: &[&str]) -> Value {
    match rng.below(8) {
        0 => match rng.below(4) {
            0 => Value::Null,
            1 => Value::Bool(true),
            2 => Value::Bool(false),
            _ => Value::String(String::new()),
        },
        1 | 2 => {
            let ints: &[i64] = &[
                0,
                1,
                -1,
                6,
                7,
                8,
                29,
                30,
                31,
                89,
                90,
                91,
                255,
                256,
                257,
                364,
                365,
                366,
                i64::from(i32::MAX),
                i64::from(i32::MAX) + 1,
                i64::from(i32::MIN),
                i64::MAX,
                i64::MIN,
                1_795_860_000,
            ];
            match rng.below(6) {
                0 => Value::Number(Number::from(u64::MAX)),
                1 => {
                    let floats = [0.5, -0.0, 7.0, 30.0, 1e308, -1e308, 1.5e-300, 90.000_000_1];
                    Number::from_f64(*rng.pick(&floats)).map_or(Value::Null, Value::Number)
                }
                _ => Value::Number(Number::from(*rng.pick(ints))),
            }
        }
        3 | 4 => Value::String(interesting_string(rng, words)),
        5 => Value::String((*rng.pick(words)).to_owned()),
        6 => match rng.below(3) {
            0 => Value::Array(Vec::new()),
            1 => Value::Object(Map::new()),
            _ => Value::Array(vec![Value::String((*rng.pick(words)).to_owned())]),
        },
        _ => Value::String((*rng.pick(COMMON_WORDS)).to_owned()),
    }
}

/// Strings that break rules: control and invisible characters, look-alikes, lengths at and over
/// the limits, numbers and booleans spelt as text, timestamps at the edges of the calendar.
fn interesting_string(rng: &mut Rng, words: &[&str]) -> String {
    let word = (*rng.pick(words)).to_owned();
    match rng.below(20) {
        0 => "a\nb".into(),
        1 => "\u{0}".into(),
        2 => format!("{word}\u{7f}"),
        3 => format!("\u{202e}{word}"),
        4 => format!("{word}\u{200b}"),
        5 => "сks-1234567890abcdef0".into(), // Cyrillic es
        6 => "CKS-1234567890ABCDEF0".into(),
        7 => "x".repeat(256),
        8 => "x".repeat(257),
        9 => "é".repeat(256),
        10 => "x".repeat(17_000),
        11 => (*rng.pick(&["true", "false", "30", "null", "7.0", "-1"])).into(),
        12 => (*rng.pick(&[
            "2026-02-30T10:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2026-11-28T10:00:00+01:00",
            "2026-11-28T10:00:60Z",
            "2026-11-28",
            "+275760-09-13T00:00:00Z",
        ]))
        .into(),
        13 => " ".into(),
        14 => format!(" {word} "),
        15 => word.to_uppercase(),
        16 => word.to_lowercase(),
        17 => format!("{word}{word}"),
        18 => (*rng.pick(&[
            "arn:", ":::::", "*", "?", "arn:*", "cks-", "cks-../x", "../",
        ]))
        .into(),
        _ => {
            let cut = rng.below(word.chars().count() + 1);
            word.chars().take(cut).collect()
        }
    }
}

/// A change to one string: cut, grown, a character inserted or replaced, its case changed.
fn mutate_string(rng: &mut Rng, text: &str, words: &[&str]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = rng.below(chars.len() + 1);
    let specials = [
        '\n',
        '\t',
        '\u{0}',
        '\u{7f}',
        '\u{85}',
        '\u{a0}',
        '\u{200b}',
        '\u{2028}',
        '\u{feff}',
        ':',
        '/',
        '*',
        '?',
        '"',
        '\\',
        ' ',
        'é',
        'с',
        '\u{1F600}',
    ];
    match rng.below(8) {
        0 => chars[..at].iter().collect(),
        1 => {
            let mut out: String = chars[..at].iter().collect();
            out.push(*rng.pick(&specials));
            out.extend(&chars[at..]);
            out
        }
        2 if at < chars.len() => {
            let mut out: String = chars[..at].iter().collect();
            out.push(*rng.pick(&specials));
            out.extend(&chars[at + 1..]);
            out
        }
        3 => {
            let mut out: String = chars[..at].iter().collect();
            let word = *rng.pick(words);
            out.push_str(word);
            out.extend(&chars[at..]);
            out
        }
        4 => text.to_uppercase(),
        5 => text.repeat(1 + rng.below(40)),
        6 => interesting_string(rng, words),
        _ => (*rng.pick(words)).to_owned(),
    }
}

/// A different spelling of a field name: case, a typo, a look-alike, a neighbour.
fn rename(rng: &mut Rng, key: &str, words: &[&str]) -> String {
    match rng.below(5) {
        0 => key.to_lowercase(),
        1 => {
            let mut chars: Vec<char> = key.chars().collect();
            if let Some(first) = chars.first_mut() {
                *first = if first.is_uppercase() {
                    first.to_ascii_lowercase()
                } else {
                    first.to_ascii_uppercase()
                };
            }
            chars.into_iter().collect()
        }
        2 => format!("{key} "),
        3 => mutate_string(rng, key, words),
        _ => (*rng.pick(words)).to_owned(),
    }
}

/// Every node of `value` as a JSON pointer (at most 256 of them).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    if out.len() >= 256 {
        return;
    }
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One structural change at a random node of `root`.
fn mutate_node(rng: &mut Rng, root: &mut Value, words: &[&str]) {
    let mut all = Vec::new();
    pointers(root, String::new(), &mut all);
    let pointer = rng.pick(&all).clone();
    let Some(node) = root.pointer_mut(&pointer) else {
        return;
    };
    if rng.one_in(4) {
        *node = interesting_value(rng, words);
        return;
    }
    match node {
        Value::Object(map) => match rng.below(5) {
            0 | 1 if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                map.remove(&key);
            }
            2 if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                if let Some(value) = map.remove(&key) {
                    map.insert(rename(rng, &key, words), value);
                }
            }
            _ => {
                let key = (*rng.pick(words)).to_owned();
                map.insert(key, interesting_value(rng, words));
            }
        },
        Value::Array(items) => match rng.below(4) {
            0 if !items.is_empty() => {
                items.remove(rng.below(items.len()));
            }
            1 if !items.is_empty() => {
                let copy = items[rng.below(items.len())].clone();
                items.push(copy);
            }
            2 => items.clear(),
            _ => items.push(interesting_value(rng, words)),
        },
        Value::String(text) => {
            *text = mutate_string(rng, text, words);
        }
        Value::Number(n) => {
            let v = n.as_i64().unwrap_or(0);
            *node = match rng.below(6) {
                0 => Value::from(v.wrapping_add(1)),
                1 => Value::from(v.wrapping_sub(1)),
                2 => Value::from(v.wrapping_neg()),
                3 => Number::from_f64(v as f64 + 0.5).map_or(Value::Null, Value::Number),
                4 => Value::String(n.to_string()),
                _ => Value::from(v.wrapping_mul(1000)),
            };
        }
        Value::Bool(b) => {
            *node = if rng.one_in(2) {
                Value::Bool(!*b)
            } else {
                Value::String(b.to_string())
            };
        }
        Value::Null => *node = interesting_value(rng, words),
    }
    if rng.one_in(16) {
        // Wrap the node: a scalar where a structure is expected, and the reverse.
        if let Some(node) = root.pointer_mut(&pointer) {
            let inner = node.take();
            *node = Value::Array(vec![inner]);
        }
    }
}

/// Byte-level changes: bits, bytes, inserted words, cuts, repeats, splices with `others`.
pub fn mutate_bytes(rng: &mut Rng, data: &[u8], others: &[Vec<u8>], words: &[&str]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 if at < out.len() => {
                out[at] = *rng.pick(b"\x00\xff\"\\{}[]:,\n\r\t 0-9aZ\x7f\xc3\xe2");
            }
            2 => {
                let word = rng.pick(words).as_bytes();
                out.splice(at..at, word.iter().copied());
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                if at < end {
                    out.drain(at..end);
                }
            }
            4 => out.truncate(at),
            5 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let copy = out[at.min(end)..end].to_vec();
                out.splice(at..at, copy);
            }
            6 if !others.is_empty() => {
                let other = rng.pick(others);
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.insert(at.min(out.len()), rng.below(256) as u8),
        }
    }
    out
}

/// The standard mutation of a JSON input: structure-aware three times in four when it parses,
/// byte-level otherwise.
pub fn mutate_json(rng: &mut Rng, data: &[u8], others: &[Vec<u8>], words: &[&str]) -> Vec<u8> {
    if !rng.one_in(4) {
        if let Ok(mut value) = serde_json::from_slice::<Value>(data) {
            for _ in 0..=rng.below(3) {
                mutate_node(rng, &mut value, words);
            }
            return write_json(rng, &value);
        }
    }
    mutate_bytes(rng, data, others, words)
}

/// One structural change to a JSON value (for targets that mutate JSON inside their input).
pub fn mutate_value(rng: &mut Rng, value: &mut Value, words: &[&str]) {
    for _ in 0..=rng.below(3) {
        mutate_node(rng, value, words);
    }
}

/// `value` as compact or pretty JSON.
pub fn write_json(rng: &mut Rng, value: &Value) -> Vec<u8> {
    let written = if rng.one_in(4) {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    written.unwrap_or_default()
}

/// A mutation of a text input such as an ARN: one `:`-separated part changed, dropped or
/// repeated, or the whole text changed as one string.
pub fn mutate_string_input(rng: &mut Rng, data: &[u8], words: &[&str], more: &[&str]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut parts: Vec<String> = text.split(':').map(str::to_owned).collect();
    let i = rng.below(parts.len());
    match rng.below(4) {
        0 => parts[i] = mutate_string(rng, &parts[i], words),
        1 if parts.len() > 1 => {
            parts.remove(i);
        }
        2 => {
            let copy = parts[i].clone();
            parts.insert(i, copy);
        }
        _ => {
            let words = if rng.one_in(2) { words } else { more };
            return mutate_string(rng, &text, words).into_bytes();
        }
    }
    parts.join(":").into_bytes()
}
