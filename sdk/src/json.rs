//! JSON field paths (`$.order.id`, `$.items[0].sku`) read straight from a payload.
//!
//! [`Path::extract`] walks the payload once and materializes only the value at the path:
//! everything else, keys included, is skipped without allocating, which matters when a hook
//! reads one field of every message in a batch.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
pub use serde_json::Value;
use std::fmt;

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

    /// The value at this path in `payload`, or `None` if the payload is not JSON or has no
    /// value there.
    pub fn extract(&self, payload: &[u8]) -> Option<Value> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let found = PathSeed(&self.segments).deserialize(&mut de).ok()?;
        de.end().ok()?;
        found
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

struct PathSeed<'p>(&'p [Segment]);

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        match self.0.first() {
            None => serde::Deserialize::deserialize(de).map(Some),
            Some(_) => de.deserialize_any(PathVisitor(self.0)),
        }
    }
}

/// Whether an object's key is the wanted field, compared where it lies in the payload:
/// reading a key allocates nothing (a `String` or `Cow` key would allocate each time).
struct KeyIs<'p>(Option<&'p str>);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(self.0 == Some(key))
    }
}

struct PathVisitor<'p>(&'p [Segment]);

impl<'de> Visitor<'de> for PathVisitor<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        loop {
            let wanted = match self.0.first() {
                Some(Segment::Field(name)) if found.is_none() => Some(name.as_str()),
                _ => None,
            };
            match map.next_key_seed(KeyIs(wanted))? {
                None => return Ok(found),
                Some(true) => found = map.next_value_seed(PathSeed(&self.0[1..]))?,
                Some(false) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0usize;
        loop {
            let hit = matches!(self.0.first(), Some(Segment::Index(n)) if *n == i);
            if hit {
                match seq.next_element_seed(PathSeed(&self.0[1..]))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    // Scalars where the path wants to go deeper: no value there.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
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
        assert_eq!(
            Path::parse("$.a").unwrap().extract(br#"{"a":1} trailing"#),
            None
        );
    }

    #[test]
    fn keys_from_values() {
        assert_eq!(value_to_key(&json!("o-1")), Some("o-1".into()));
        assert_eq!(value_to_key(&json!(7)), Some("7".into()));
        assert_eq!(value_to_key(&json!(null)), None);
        assert_eq!(value_to_key(&json!({"a":1})), Some(r#"{"a":1}"#.into()));
    }
}
