//! JSON field paths (`$.order.id`, `$.items[0].sku`) read straight from a payload.
//!
//! [`Path::find`] reads a payload only as far as the value at the path and gives its place,
//! to compare or to take as text ([`Found`]); [`Path::extract`] also builds that value.
//! Everything before the value is checked as JSON but skipped without allocating (keys are
//! compared where they lie, strings passed over eight bytes at a time), and nothing after
//! it is read. That matters when a hook reads one field of every message in a batch.
//!
//! What this means for payloads: a payload that is JSON up to the value, through it and up
//! to the `,` or closing bracket that follows it gives that value even if it is not JSON
//! after that (`{"order_id":"o-1", oops` gives `"o-1"`), while a payload that is not JSON
//! before the value gives nothing. The root path `$` is the exception: its value is the
//! whole payload, which must be one JSON document. As in serde_json, strings passed over
//! are not checked for UTF-8, and nesting deeper than 128 objects and arrays is refused.

pub use serde_json::Value;
use std::fmt;

mod scan;

/// A parsed JSON field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
}

/// Why a path does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError(pub String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON path: {}", self.0)
    }
}

impl std::error::Error for PathError {}

impl Path {
    /// Parses `$`, `$.a.b`, `$.a[2].b` (the leading `$` may be omitted: `a.b`).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let rest = text.trim();
        let rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut segments = Vec::new();
        let mut chars = rest.chars().peekable();
        // Without `$`, the path starts with a field name directly.
        let mut expect_field = !text.trim().starts_with('$') && !rest.is_empty();
        loop {
            if expect_field {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                if name.is_empty() {
                    return Err(PathError(format!("empty field name in `{text}`")));
                }
                segments.push(Segment::Field(name));
                expect_field = false;
                continue;
            }
            match chars.next() {
                None => break,
                Some('.') => expect_field = true,
                Some('[') => {
                    let mut digits = String::new();
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        digits.push(c);
                    }
                    let index = digits
                        .parse()
                        .map_err(|_| PathError(format!("bad index `[{digits}]` in `{text}`")))?;
                    segments.push(Segment::Index(index));
                }
                Some(c) => return Err(PathError(format!("unexpected `{c}` in `{text}`"))),
            }
        }
        Ok(Self { segments })
    }

    /// The value at this path in `payload`, or `None` if the payload has no value there or
    /// is not JSON up to the `,` or bracket after that value (see the [module docs](self):
    /// what follows is not read).
    pub fn extract(&self, payload: &[u8]) -> Option<Value> {
        self.find(payload)?.value()
    }

    /// Where the value at this path is in `payload`, found as [`Path::extract`] finds it,
    /// but not built: for hooks that only compare it or take it as text.
    pub fn find<'p>(&self, payload: &'p [u8]) -> Option<Found<'p>> {
        let (range, escaped) = scan::find(payload, &self.segments)?;
        Some(Found {
            text: &payload[range],
            escaped,
        })
    }
}

/// A value found in a payload by [`Path::find`]: its JSON text, checked as JSON except for
/// the UTF-8 of its strings, which is checked where text is read ([`Found::plain_str`],
/// [`Found::value`], [`Found::to_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<'p> {
    text: &'p [u8],
    /// A string with escapes (`\n`, `\u00e9`...): its text is not its value.
    escaped: bool,
}

impl<'p> Found<'p> {
    /// The value's JSON text, as it stands in the payload (strings with their quotes).
    pub fn json(&self) -> &'p [u8] {
        self.text
    }

    pub fn is_null(&self) -> bool {
        self.text == b"null"
    }

    pub fn is_string(&self) -> bool {
        self.text.first() == Some(&b'"')
    }

    /// The string, if the value is one without escapes and is UTF-8: borrowed from the
    /// payload.
    pub fn plain_str(&self) -> Option<&'p str> {
        if self.escaped || !self.is_string() {
            return None;
        }
        std::str::from_utf8(&self.text[1..self.text.len() - 1]).ok()
    }

    /// Whether the value is the string `s` (escapes in the payload decoded). Allocates
    /// nothing.
    pub fn is_str(&self, s: &str) -> bool {
        if !self.is_string() {
            return false;
        }
        let inner = &self.text[1..self.text.len() - 1];
        if self.escaped {
            scan::unescaped_eq(inner, s.as_bytes())
        } else {
            crate::headers::eq_bytes(inner, s.as_bytes())
        }
    }

    /// The value, built; `None` where its strings are not UTF-8, or for what JSON allows
    /// but [`Value`] cannot hold (a `\ud800` without its other half, a number beyond `f64`).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_slice(self.text).ok()
    }

    /// The value as a key, as [`value_to_key`] renders it.
    pub fn to_key(&self) -> Option<String> {
        match self.plain_str() {
            Some(plain) => Some(plain.to_owned()),
            None => value_to_key(&self.value()?),
        }
    }
}

/// Renders a value as a key: strings as they are, numbers and booleans as JSON text, `null`
/// as nothing, arrays and objects as compact JSON.
pub fn value_to_key(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_paths() {
        assert_eq!(Path::parse("$").unwrap().segments, vec![]);
        assert_eq!(
            Path::parse("$.order.id").unwrap(),
            Path::parse("order.id").unwrap()
        );
        assert_eq!(
            Path::parse("$.items[2].sku").unwrap().segments,
            vec![
                Segment::Field("items".into()),
                Segment::Index(2),
                Segment::Field("sku".into())
            ]
        );
        assert!(Path::parse("$.").is_err());
        assert!(Path::parse("$.a[x]").is_err());
        assert!(Path::parse("$a").is_err());
    }

    #[test]
    fn extracts_only_the_path() {
        let doc = br#"{"skip":{"deep":[1,2,{"x":"y"}]},"order":{"id":42,"tags":["a","b"]},"s":"t\"q","e\u0073c":"aped","s":"second"}"#;
        let at = |p: &str| Path::parse(p).unwrap().extract(doc);
        assert_eq!(at("$.order.id"), Some(json!(42)));
        assert_eq!(at("$.order.tags[1]"), Some(json!("b")));
        assert_eq!(at("$.order.tags[5]"), None);
        // Of two equal keys, the first counts.
        assert_eq!(at("$.s"), Some(json!("t\"q")));
        assert_eq!(at("$.esc"), Some(json!("aped")), "escaped key");
        assert_eq!(at("$.missing"), None);
        assert_eq!(at("$.s.deeper"), None);
        assert_eq!(at("$").map(|v| v["order"]["id"].clone()), Some(json!(42)));
        assert_eq!(Path::parse("$.a").unwrap().extract(b"not json"), None);
    }

    fn extract(path: &str, doc: &str) -> Option<Value> {
        Path::parse(path).unwrap().extract(doc.as_bytes())
    }

    #[test]
    fn escaped_keys_and_values() {
        let doc = r#"{"q\"k":1,"b\\k":2,"\u00e9t\u00E9":3,"\ud83d\ude00":4,"v":"a\"b\\c\u0041"}"#;
        assert_eq!(extract("$.q\"k", doc), Some(json!(1)), "quote in a key");
        assert_eq!(extract("$.b\\k", doc), Some(json!(2)), "backslash in a key");
        assert_eq!(
            extract("$.été", doc),
            Some(json!(3)),
            "unicode escapes in a key"
        );
        assert_eq!(
            extract("$.😀", doc),
            Some(json!(4)),
            "surrogate pair in a key"
        );
        assert_eq!(extract("$.v", doc), Some(json!("a\"b\\cA")));
        assert_eq!(extract("$.qk", doc), None);
        // A key that only ends like the name, or only starts like it, is another key.
        assert_eq!(extract("$.k", doc), None);
        assert_eq!(extract("$.b", doc), None);
        // A name with a quote is never taken from the payload as it stands.
        assert_eq!(extract("$.q\"k", r#"{"q"k":1}"#), None);
        assert_eq!(extract("$.b\\k", r#"{"b\k":1}"#), None);
    }

    #[test]
    fn skips_arrays_and_objects_before_the_field() {
        let doc =
            r#"{"a":[{"x":[1,{"y":"]}"}]},[],{}],"o":{"order_id":"inner"},"order_id":"outer"}"#;
        assert_eq!(extract("$.order_id", doc), Some(json!("outer")));
        assert_eq!(extract("$.o.order_id", doc), Some(json!("inner")));
        assert_eq!(extract("$.a[0].x[1].y", doc), Some(json!("]}")));
        assert_eq!(extract("$.a[2]", doc), Some(json!({})));
        assert_eq!(extract("$.a[3]", doc), None);
        // Into a value of another kind: nothing there.
        assert_eq!(extract("$.a.x", doc), None);
        assert_eq!(extract("$.o[0]", doc), None);
        assert_eq!(extract("$.order_id.x", doc), None);
    }

    #[test]
    fn what_the_payload_holds_around_the_field() {
        // Absent, null and found.
        assert_eq!(extract("$.id", r#"{"other":1}"#), None);
        assert_eq!(extract("$.id", r#"{}"#), None);
        assert_eq!(extract("$.id", r#"{"id":null}"#), Some(Value::Null));
        assert_eq!(
            extract("$.id", r#" { "id" : [1, 2] } "#),
            Some(json!([1, 2]))
        );
        // Not JSON before the field: nothing, even if the field follows.
        assert_eq!(extract("$.id", r#"{"x":nul,"id":1}"#), None);
        assert_eq!(extract("$.id", r#"{"x":"a" "id":1}"#), None);
        assert_eq!(extract("$.id", "{\"x\":\"a\u{1}\",\"id\":1}"), None);
        // Not JSON after the field: not read, the value counts.
        assert_eq!(extract("$.id", r#"{"id":"o-1", oops"#), Some(json!("o-1")));
        assert_eq!(extract("$.id", r#"{"id":7}} trailing"#), Some(json!(7)));
        // ... but the value itself must be JSON, followed by what may follow it there.
        assert_eq!(extract("$.id", r#"{"id":12"#), None, "a number cut short?");
        assert_eq!(extract("$.id", r#"{"id":"x" "y":1}"#), None);
        assert_eq!(extract("$.id", r#"{"id":"x"]"#), None);
        assert_eq!(extract("$[0]", r#"[1 }"#), None);
        assert_eq!(extract("$[0]", "[1\n]"), Some(json!(1)));
        assert_eq!(extract("$.id", r#"{"id":"unterminated"#), None);
        assert_eq!(extract("$.id", r#"{"id":[1,}"#), None);
        assert_eq!(
            extract("$.id", r#"{"id":"\ud800"}"#),
            None,
            "lone surrogate"
        );
        // Documents that are not objects.
        for doc in ["[1]", "\"id\"", "12", "null", "true", "", "  ", "not json"] {
            assert_eq!(extract("$.id", doc), None, "{doc}");
        }
        assert_eq!(extract("$[1]", "[0,[2]]"), Some(json!([2])));
        // The root is the whole payload, which must be one document.
        assert_eq!(extract("$", r#"{"a":1} "#), Some(json!({"a":1})));
        assert_eq!(extract("$", r#"{"a":1} trailing"#), None);
    }

    /// The value serde_json finds at `path` in a document it parses whole.
    fn pointer(path: &str, doc: &Value) -> Option<Value> {
        let pointer = path
            .trim_start_matches('$')
            .replace(['.', '['], "/")
            .replace(']', "");
        doc.pointer(&pointer).cloned()
    }

    #[test]
    fn agrees_with_serde_json_on_every_one_byte_change() {
        let doc = br#"{"order_id":"o-1","customer":{"id":12,"tier":"gold"},"lines":[{"sku":"A\"1","qty":-2.5e3},[],true,null],"note":"x\u00e9"}"#;
        let paths = [
            "$.order_id",
            "$.customer.tier",
            "$.lines[0].qty",
            "$.lines[1]",
            "$.lines[3]",
            "$.note",
            "$.absent",
        ];
        let replacements = b"\"\\,:{}[]01-.eE tn\x01";
        let mut checked = 0;
        for i in 0..doc.len() {
            let mut variants: Vec<Vec<u8>> = replacements
                .iter()
                .map(|&b| {
                    let mut d = doc.to_vec();
                    d[i] = b;
                    d
                })
                .collect();
            let mut removed = doc.to_vec();
            removed.remove(i);
            variants.push(removed);
            variants.push(doc[..i].to_vec());
            for variant in &variants {
                let Ok(whole) = serde_json::from_slice::<Value>(variant) else {
                    continue;
                };
                for path in paths {
                    let path_ = Path::parse(path).unwrap();
                    let want = pointer(path, &whole);
                    let doc = String::from_utf8_lossy(variant);
                    assert_eq!(path_.extract(variant), want, "{path} in {doc}");
                    let found = path_.find(variant);
                    assert_eq!(
                        found.and_then(|f| f.to_key()),
                        want.as_ref().and_then(value_to_key),
                        "{path} in {doc}"
                    );
                    if let Some(Value::String(s)) = &want {
                        assert!(found.is_some_and(|f| f.is_str(s)), "{path} in {doc}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "only {checked} valid variants");
        // A document cut short anywhere gives the value or nothing, never another value.
        let whole: Value = serde_json::from_slice(doc).unwrap();
        for i in 0..doc.len() {
            for path in paths {
                if let Some(got) = Path::parse(path).unwrap().extract(&doc[..i]) {
                    assert_eq!(Some(got), pointer(path, &whole), "{path} in {i} bytes");
                }
            }
        }
    }

    #[test]
    fn found_values_compare_without_being_built() {
        let doc =
            br#"{"plain":"gold","esc":"g\u006fld","quote":"a\"b","n":12.5,"z":null,"o":{"a":[1]}}"#;
        let find = |p: &str| Path::parse(p).unwrap().find(doc).unwrap();
        assert_eq!(find("$.plain").plain_str(), Some("gold"));
        assert!(find("$.plain").is_str("gold") && !find("$.plain").is_str("gol"));
        assert_eq!(find("$.esc").plain_str(), None);
        assert!(find("$.esc").is_str("gold"));
        assert!(find("$.quote").is_str("a\"b"));
        assert_eq!(find("$.esc").json(), br#""g\u006fld""#);
        assert!(!find("$.n").is_str("12.5") && !find("$.n").is_string());
        assert_eq!(find("$.n").json(), b"12.5");
        assert!(find("$.z").is_null());
        assert_eq!(find("$.o").json(), br#"{"a":[1]}"#);
        // Keys: strings as they are, escapes decoded; null is no key.
        assert_eq!(find("$.plain").to_key(), Some("gold".into()));
        assert_eq!(find("$.esc").to_key(), Some("gold".into()));
        assert_eq!(find("$.quote").to_key(), Some("a\"b".into()));
        assert_eq!(find("$.n").to_key(), Some("12.5".into()));
        assert_eq!(find("$.z").to_key(), None);
        assert_eq!(find("$.o").to_key(), Some(r#"{"a":[1]}"#.into()));
        // Not UTF-8: no text, no value, no key; but no valid string is equal to it either.
        let bad = Path::parse("$.a")
            .unwrap()
            .find(b"{\"a\":\"\xff\"}")
            .unwrap();
        assert_eq!(
            (bad.plain_str(), bad.value(), bad.to_key()),
            (None, None, None)
        );
        assert!(!bad.is_str("\u{fffd}") && bad.is_string());
    }

    #[test]
    fn keys_from_values() {
        assert_eq!(value_to_key(&json!("o-1")), Some("o-1".into()));
        assert_eq!(value_to_key(&json!(7)), Some("7".into()));
        assert_eq!(value_to_key(&json!(null)), None);
        assert_eq!(value_to_key(&json!({"a":1})), Some(r#"{"a":1}"#.into()));
    }
}
