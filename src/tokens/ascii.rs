//! A fast, exact `o200k_base` count for ASCII text.
//!
//! `tiktoken-rs` splits text into pieces with a backtracking regex (about a
//! microsecond per piece) before it merges each piece's bytes. For ASCII text
//! the split is simple enough to do by hand, byte by byte, and the count of a
//! piece never depends on its neighbours, so counts of pieces already seen are
//! remembered (per thread, bounded). A typical English or code prompt then
//! costs a hash look-up per word instead of a regex match.
//!
//! The split follows `o200k_base`'s pattern (tiktoken's `O200K_BASE_PAT_STR`),
//! restricted to ASCII, where its Unicode classes become: letters
//! `[A-Za-z]` (upper- and lower-case), digits `[0-9]`, white space
//! `[\t\n\x0B\x0C\r ]`. Its alternatives, tried in order at each position:
//!
//! 1. and 2. `[^\r\n\p{L}\p{N}]?` + upper-case run + lower-case run + an
//!    optional contraction (`'s 't 're 've 'm 'll 'd`, any case) — the first
//!    alternative needs a lower-case letter, the second an upper-case one, so
//!    together they take one optional prefix byte, the upper-case run, the
//!    lower-case run and a contraction;
//! 3. one to three digits;
//! 4. an optional space, a run of bytes that are neither white space, letters
//!    nor digits, then any `\r`, `\n` and `/`;
//! 5. white space up to and including its last `\r` or `\n`;
//! 6. and 7. other white space: all of it at the end of the text, otherwise all
//!    but its last byte (which then starts the next piece), or the single byte.
//!
//! The property test below checks the whole count against `tiktoken-rs` on
//! random ASCII text.

use std::cell::RefCell;
use std::collections::HashMap;

/// Pieces remembered per thread before the memory is cleared: at most about
/// 300 KB per thread, which matters because large prompts are counted on the
/// blocking pool, whose threads can be many.
const CACHE_ENTRIES: usize = 4_096;
/// Pieces longer than this are counted without being remembered.
const CACHE_MAX_PIECE: usize = 32;

thread_local! {
    static PIECES: RefCell<HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

fn is_letter(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// `[^\r\n\p{L}\p{N}]`: the optional byte before a word.
fn is_word_prefix(b: u8) -> bool {
    !(b == b'\r' || b == b'\n' || b.is_ascii_alphanumeric())
}

/// `[^\s\p{L}\p{N}]`: punctuation, symbols and control bytes.
fn is_symbol(b: u8) -> bool {
    !(is_space(b) || b.is_ascii_alphanumeric())
}

fn run(text: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while i < text.len() && f(text[i]) {
        i += 1;
    }
    i
}

/// The end of a contraction starting at `i`, if one does.
fn contraction(text: &[u8], i: usize) -> Option<usize> {
    if text.get(i) != Some(&b'\'') {
        return None;
    }
    let lower = |k: usize| text.get(i + k).map(u8::to_ascii_lowercase);
    match (lower(1)?, lower(2)) {
        (b's' | b't' | b'm' | b'd', _) => Some(i + 2),
        (b'r', Some(b'e')) | (b'v', Some(b'e')) | (b'l', Some(b'l')) => Some(i + 3),
        _ => None,
    }
}

/// The end of the piece that starts at `i` (`i < text.len()`).
fn piece_end(text: &[u8], i: usize) -> usize {
    let b = text[i];
    // 1 and 2: a word, with at most one prefix byte.
    let word_start = if is_letter(b) {
        Some(i)
    } else if is_word_prefix(b) && text.get(i + 1).is_some_and(|&c| is_letter(c)) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(start) = word_start {
        let upper = run(text, start, |c| c.is_ascii_uppercase());
        let lower = run(text, upper, |c| c.is_ascii_lowercase());
        return contraction(text, lower).unwrap_or(lower);
    }
    // 3: up to three digits.
    if b.is_ascii_digit() {
        return run(text, i, |c| c.is_ascii_digit()).min(i + 3);
    }
    // 4: symbols, with an optional space before and line ends after.
    let symbols = if is_symbol(b) {
        Some(i)
    } else if b == b' ' && text.get(i + 1).is_some_and(|&c| is_symbol(c)) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(start) = symbols {
        let end = run(text, start, is_symbol);
        return run(text, end, |c| matches!(c, b'\r' | b'\n' | b'/'));
    }
    // What is left starts with white space.
    let end = run(text, i, is_space);
    // 5: up to the last line end in the run.
    if let Some(last) = text[i..end].iter().rposition(|&c| c == b'\r' || c == b'\n') {
        return i + last + 1;
    }
    // 6 and 7.
    if end == text.len() || end - i == 1 {
        end
    } else {
        end - 1
    }
}

/// The pieces of ASCII `text`, in order.
pub(crate) fn pieces(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= text.len() {
            return None;
        }
        let end = piece_end(text, i);
        let piece = &text[i..end];
        i = end;
        Some(piece)
    })
}

/// Tokens of ASCII `text` under `o200k_base`; `bpe_count` counts one piece
/// the slow way (a piece never re-splits, so counting it alone is exact).
pub(crate) fn count(text: &str, bpe_count: impl Fn(&str) -> u64) -> u64 {
    debug_assert!(text.is_ascii());
    PIECES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let mut n = 0;
        for piece in pieces(text.as_bytes()) {
            if let Some(&c) = cache.get(piece) {
                n += u64::from(c);
                continue;
            }
            // An ASCII slice of a str is a str.
            let s = std::str::from_utf8(piece).unwrap_or_default();
            let c = bpe_count(s);
            if piece.len() <= CACHE_MAX_PIECE {
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(piece.into(), u32::try_from(c).unwrap_or(u32::MAX));
            }
            n += c;
        }
        n
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<&str> {
        pieces(text.as_bytes())
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn splits_like_the_o200k_pattern() {
        assert_eq!(
            split("Say hello in one short sentence."),
            ["Say", " hello", " in", " one", " short", " sentence", "."]
        );
        assert_eq!(split("HelloWorld ABCdef"), ["Hello", "World", " ABCdef"]);
        assert_eq!(split("I'm don't THEY'LL"), ["I'm", " don't", " THEY'LL"]);
        assert_eq!(split("12345 x"), ["123", "45", " x"]);
        assert_eq!(
            split("  hi\n\n  there  "),
            [" ", " hi", "\n\n", " ", " there", "  "]
        );
        assert_eq!(
            split(" ...Hello (x) a/b\n/"),
            [" ...", "Hello", " (", "x", ")", " a", "/b", "\n", "/"]
        );
        assert_eq!(split("\tfoo  \nbar"), ["\tfoo", "  \n", "bar"]);
        assert_eq!(split(" 1"), [" ", "1"]);
    }

    #[cfg(feature = "tiktoken")]
    mod against_tiktoken {
        use super::super::count;
        use proptest::prelude::*;

        fn tiktoken(text: &str) -> u64 {
            tiktoken_rs::o200k_base_singleton()
                .encode_ordinary(text)
                .len() as u64
        }

        // Letters, digits, spaces of every kind, line ends, apostrophes and
        // symbols, weighted towards the boundaries the pattern cares about.
        fn ascii_text() -> impl Strategy<Value = String> {
            let atoms = prop_oneof![
                "[a-z]{1,8}",
                "[A-Z]{1,4}",
                "[A-Za-z]{1,6}",
                "[0-9]{1,5}",
                Just(" ".to_owned()),
                Just("  ".to_owned()),
                "[ \t\n\r\x0B\x0C]{1,4}",
                "'(s|t|re|ve|m|ll|d|S|T|RE|Ve|M|LL|D|x)",
                "[!-/:-@\\[-`{-~]{1,3}",
                "[\x00-\x7f]{1,3}",
            ];
            proptest::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]
            #[test]
            fn counts_match_tiktoken(text in ascii_text()) {
                prop_assert_eq!(count(&text, tiktoken), tiktoken(&text), "text {:?}", text);
            }
        }

        #[test]
        fn counts_match_tiktoken_on_recorded_prompts() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
            let mut checked = 0;
            for entry in walk(std::path::Path::new(dir)) {
                let Ok(text) = std::fs::read_to_string(&entry) else {
                    continue;
                };
                let ascii: String = text.chars().filter(char::is_ascii).collect();
                assert_eq!(
                    count(&ascii, tiktoken),
                    tiktoken(&ascii),
                    "{}",
                    entry.display()
                );
                checked += 1;
            }
            assert!(checked > 0, "no files under {dir}");
        }

        fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
            out
        }
    }
}
