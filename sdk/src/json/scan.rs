//! Finds where the value at a path starts in a JSON document, without building anything
//! it passes over.
//!
//! Everything before the wanted value is checked as JSON (structure, string escapes and
//! control characters, numbers, literals) but not built: keys are compared where they lie,
//! and strings are skipped eight bytes at a time. Nothing after the start of the wanted
//! value and the byte after it is read. Like serde_json, the scanner does not check that the
//! strings it skips are UTF-8.

use super::Segment;
use std::ops::Range;

/// Deepest nesting of objects and arrays the scanner passes through or over (serde_json's
/// limit for what it parses is also 128). Skipping recurses once per level, so this bounds
/// the guest's stack use on hostile payloads.
pub(super) const NESTING_DEPTH_MAX: usize = 128;

/// Where the value at `path` lies in `doc`, and whether it is a string with escapes; or
/// `None` if `doc` has no value there or is not JSON up to the `,` or bracket after it (to
/// the end, for the root).
pub(super) fn find(doc: &[u8], path: &[Segment]) -> Option<(Range<usize>, bool)> {
    let mut scan = Scanner { doc, pos: 0 };
    scan.whitespace();
    for (depth, segment) in (1..).zip(path) {
        match segment {
            Segment::Field(name) => scan.enter_field(name.as_bytes(), depth)?,
            Segment::Index(index) => scan.enter_element(*index, depth)?,
        }
    }
    let start = scan.pos;
    let escaped = if scan.peek() == Some(b'"') {
        scan.string()?
    } else {
        scan.value(path.len())?;
        false
    };
    let end = scan.pos;
    // What must come next: also tells a number from one cut short.
    scan.whitespace();
    let next_is_fine = match (path.last(), scan.peek()) {
        (None, next) => next.is_none(),
        (Some(_), Some(b',')) => true,
        (Some(Segment::Field(_)), next) => next == Some(b'}'),
        (Some(Segment::Index(_)), next) => next == Some(b']'),
    };
    next_is_fine.then_some((start..end, escaped))
}

struct Scanner<'a> {
    doc: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.pos += usize::from(next);
        next
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// At an object: moves to the value of its first member named `name`.
    fn enter_field(&mut self, name: &[u8], depth: usize) -> Option<()> {
        if depth > NESTING_DEPTH_MAX || !self.eat(b'{') {
            return None;
        }
        self.whitespace();
        if self.peek() == Some(b'}') {
            return None;
        }
        loop {
            if self.peek() != Some(b'"') {
                return None;
            }
            let start = self.pos + 1;
            let after = start + name.len();
            // The wanted key as it stands, most often: no need to look for its end.
            let found = if self
                .doc
                .get(start..after)
                .is_some_and(|key| crate::headers::eq_bytes(key, name))
                && self.doc.get(after) == Some(&b'"')
                && is_plain(name)
            {
                self.pos = after + 1;
                true
            } else {
                // Otherwise it is the key only if it spells it with escapes.
                self.string()? && unescaped_eq(&self.doc[start..self.pos - 1], name)
            };
            self.whitespace();
            if !self.eat(b':') {
                return None;
            }
            self.whitespace();
            if found {
                return Some(());
            }
            self.value(depth)?;
            self.whitespace();
            // `}`: the object has no such member.
            if !self.eat(b',') {
                return None;
            }
            self.whitespace();
        }
    }

    /// At an array: moves to its element number `index`.
    fn enter_element(&mut self, index: usize, depth: usize) -> Option<()> {
        if depth > NESTING_DEPTH_MAX || !self.eat(b'[') {
            return None;
        }
        self.whitespace();
        if self.peek() == Some(b']') {
            return None;
        }
        for _ in 0..index {
            self.value(depth)?;
            self.whitespace();
            // `]`: the array is shorter.
            if !self.eat(b',') {
                return None;
            }
            self.whitespace();
        }
        Some(())
    }

    /// Skips one value; `depth` is the nesting of the container holding it.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > NESTING_DEPTH_MAX {
            return None;
        }
        self.pos += 1;
        self.whitespace();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return None;
            }
            self.string()?;
            self.whitespace();
            if !self.eat(b':') {
                return None;
            }
            self.whitespace();
            self.value(depth)?;
            self.whitespace();
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
            self.whitespace();
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > NESTING_DEPTH_MAX {
            return None;
        }
        self.pos += 1;
        self.whitespace();
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.value(depth)?;
            self.whitespace();
            if self.eat(b']') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
            self.whitespace();
        }
    }

    /// Skips a string from its opening quote; returns whether it holds escapes.
    fn string(&mut self) -> Option<bool> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos = string_stop(self.doc, self.pos)?;
            match self.doc[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None, // a control character: not allowed in JSON strings
            }
        }
    }

    /// Skips the escape at a backslash. Any four hex digits pass after `\u`: whether they
    /// make a valid character matters only to a string that is read (as serde_json does).
    fn escape(&mut self) -> Option<()> {
        match self.doc.get(self.pos + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
            b'u' => {
                hex4(self.doc.get(self.pos + 2..self.pos + 6)?)?;
                self.pos += 6;
            }
            _ => return None,
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.doc[self.pos..].starts_with(word) {
            return None;
        }
        self.pos += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') && !self.at_least_one_digit() {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.at_least_one_digit() {
                return None;
            }
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> bool {
        let start = self.pos;
        self.digits();
        self.pos > start
    }
}

/// The first `"`, `\` or control character (below 0x20) at or after `from`: the bytes a
/// string scan has to stop at. Looks at eight bytes at a time.
fn string_stop(doc: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    let mut i = from;
    while let Some(chunk) = doc.get(i..i + 8) {
        // Invariant: `chunk` has exactly eight bytes.
        let word = u64::from_le_bytes(chunk.try_into().expect("an 8-byte chunk"));
        // `x - 1` sets a byte's high bit, and `& !x` keeps it, only where the byte of `x`
        // is 0 (for `word - 0x20`: below 0x20), or above a byte that is. The lowest set high
        // bit is therefore exactly the first byte to stop at (little-endian: the first in
        // memory).
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(SPACES) & !word);
        let stops = stops & HIGHS;
        if stops != 0 {
            return Some(i + (stops.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    doc.get(i..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|n| i + n)
}

/// Whether `name` stands for itself inside a JSON string: the payload may hold it as it is.
fn is_plain(name: &[u8]) -> bool {
    !name.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// The value of four hex digits.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

/// Whether the JSON string contents `raw` (between the quotes, with escapes checked by
/// [`Scanner::escape`]) stand for `name`. Compares as it decodes, without allocating.
pub(super) fn unescaped_eq(raw: &[u8], name: &[u8]) -> bool {
    let (mut r, mut n) = (0, 0);
    while r < raw.len() {
        if raw[r] != b'\\' {
            if name.get(n) != Some(&raw[r]) {
                return false;
            }
            r += 1;
            n += 1;
            continue;
        }
        let c = match raw[r + 1] {
            b'u' => {
                let Some(unit) = raw.get(r + 2..r + 6).and_then(hex4) else {
                    return false;
                };
                r += 6;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate: only with a low one after it is it a character.
                        let low = raw
                            .get(r..r + 2)
                            .filter(|esc| esc == b"\\u")
                            .and_then(|_| raw.get(r + 2..r + 6))
                            .and_then(hex4);
                        match low {
                            Some(low @ 0xDC00..=0xDFFF) => {
                                r += 6;
                                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                            }
                            _ => None,
                        }
                    }
                    _ => char::from_u32(unit),
                }
            }
            other => {
                r += 2;
                Some(match other {
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    // `"`, `\` and `/` stand for themselves.
                    _ => char::from(other),
                })
            }
        };
        // A lone surrogate is no character, so no name.
        let Some(c) = c else {
            return false;
        };
        let mut buf = [0; 4];
        let c = c.encode_utf8(&mut buf).as_bytes();
        if !name[n..].starts_with(c) {
            return false;
        }
        n += c.len();
    }
    n == name.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Segment {
        Segment::Field(name.into())
    }

    /// The text of the value at `path` in `doc`.
    fn at<'d>(doc: &'d str, path: &[Segment]) -> Option<&'d str> {
        find(doc.as_bytes(), path).map(|(range, _)| &doc[range])
    }

    #[test]
    fn string_stops_at_quotes_backslashes_and_control_characters() {
        let stop = |s: &str| string_stop(s.as_bytes(), 0);
        assert_eq!(stop(r#"abc"def"#), Some(3));
        assert_eq!(stop(r#"0123456789abcdef\"#), Some(16), "past whole words");
        assert_eq!(stop("01234567\u{1f}"), Some(8));
        assert_eq!(
            stop("é ü \u{7f} ~ \u{80}\"x"),
            Some(12),
            "non-ASCII and DEL pass"
        );
        assert_eq!(stop("0123456789"), None);
        assert_eq!(stop(""), None);
        for len in 0..20 {
            let mut s = "a".repeat(len);
            s.push('"');
            s.push_str("\\\\\\\\\\\\\\\\");
            assert_eq!(stop(&s), Some(len));
        }
    }

    #[test]
    fn keys_compare_decoded() {
        let eq = |raw: &str, name: &str| unescaped_eq(raw.as_bytes(), name.as_bytes());
        assert!(eq(r#"a\"b"#, "a\"b"));
        assert!(eq(r#"a\\b\/"#, "a\\b/"));
        assert!(eq(r#"\n\t\r\b\f"#, "\n\t\r\u{8}\u{c}"));
        assert!(eq(r#"\u0041\u00e9"#, "Aé"));
        assert!(eq(r#"\ud83d\ude00!"#, "😀!"));
        assert!(!eq(r#"\ud83d"#, "\u{fffd}"), "a lone surrogate is no name");
        assert!(!eq(r#"\u0041"#, "AB"));
        assert!(!eq(r#"\u0041B"#, "A"));
        assert!(!eq(r#"\u0042"#, "A"));
    }

    #[test]
    fn skips_values_before_the_field() {
        let doc =
            r#" { "a" : [1, -2.5e+3, {"x": [true, false, null]}, "s\"}"], "b":{"c":{}} , "k": 7 }"#;
        assert_eq!(at(doc, &[field("k")]), Some("7"));
        assert_eq!(at(doc, &[field("b"), field("c")]), Some("{}"));
        assert_eq!(at(doc, &[field("a"), Segment::Index(3)]), Some(r#""s\"}""#));
        assert_eq!(at(doc, &[field("a"), Segment::Index(4)]), None);
        assert_eq!(at(doc, &[field("zz")]), None);
    }

    #[test]
    fn stops_at_the_value() {
        // Whatever follows the value and the byte after it is not read.
        assert_eq!(at(r#"{"a":1,"#, &[field("a")]), Some("1"));
        assert_eq!(
            at(r#"{"a":"x" }}}} not json"#, &[field("a")]),
            Some(r#""x""#)
        );
        assert_eq!(at(r#"{"a":1"#, &[field("a")]), None, "cut short?");
        assert_eq!(at(r#"{"a":1]"#, &[field("a")]), None);
        assert_eq!(at(r#"[1}"#, &[Segment::Index(0)]), None);
        assert_eq!(at(r#"[0, 1 ]"#, &[Segment::Index(1)]), Some("1"));
        // The root is the whole document.
        assert_eq!(at(" [1] ", &[]), Some("[1]"));
        assert_eq!(at("[1] [2]", &[]), None);
        assert_eq!(at("12", &[]), Some("12"));
        // Strings say whether they hold escapes.
        let doc = br#"{"a":"x\"y","b":"xy"}"#;
        assert_eq!(find(doc, &[field("a")]), Some((5..11, true)));
        assert_eq!(find(doc, &[field("b")]), Some((16..20, false)));
    }

    #[test]
    fn refuses_invalid_json_before_the_value() {
        let bad = [
            r#"{"s":"ctl"#.to_string() + "\u{1}\",\"a\":1}",
            r#"{"s":"\x","a":1}"#.into(),
            r#"{"s":"\u12g4","a":1}"#.into(),
            r#"{"n":01,"a":1}"#.into(),
            r#"{"n":1.,"a":1}"#.into(),
            r#"{"n":1e,"a":1}"#.into(),
            r#"{"n":-,"a":1}"#.into(),
            r#"{"n":+1,"a":1}"#.into(),
            r#"{"t":tru,"a":1}"#.into(),
            r#"{"l":[1 2],"a":1}"#.into(),
            r#"{"l":[1,],"a":1}"#.into(),
            r#"{"o":{"x" 1},"a":1}"#.into(),
            r#"{"o":{1:2},"a":1}"#.into(),
            r#"{"o":{"x":1,},"a":1}"#.into(),
            r#"{"x":1 "a":1}"#.into(),
            r#"{"x":1,,"a":1}"#.into(),
            r#"{"x" "a":1}"#.into(),
            r#"{"s":"unterminated"#.into(),
            r#"{"o":{"x":1,"a":1}"#.into(),
        ];
        for doc in &bad {
            assert_eq!(at(doc, &[field("a")]), None, "{doc}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| {
            format!(
                r#"{{"x":{}{},"a":1}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        assert_eq!(at(&deep(NESTING_DEPTH_MAX - 1), &[field("a")]), Some("1"));
        assert_eq!(at(&deep(NESTING_DEPTH_MAX), &[field("a")]), None);
        assert_eq!(at(&deep(100_000), &[field("a")]), None);
    }
}
