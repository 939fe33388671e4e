//! Subjects: dot-separated tokens; in filters `*` matches one token and a final `>`
//! matches one or more. Names (streams, groups) are plain identifiers.

use crate::limits::NAME_BYTES_MAX;

/// Why a subject or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Empty, or longer than the limit.
    #[error("{what} must be 1..=1024 bytes")]
    Length { what: &'static str },
    /// A token is empty (leading, trailing or double dot).
    #[error("subject {0:?} has an empty token")]
    EmptyToken(String),
    /// A token contains whitespace or a wildcard character mixed with others.
    #[error("subject {0:?} has an invalid token")]
    InvalidToken(String),
    /// A concrete subject (publish) contains a wildcard.
    #[error("subject {0:?} contains a wildcard; publish to a concrete subject")]
    Wildcard(String),
    /// `>` is only allowed as the last token.
    #[error("subject {0:?}: '>' must be the last token")]
    TailNotLast(String),
    /// A name contains characters outside `[A-Za-z0-9_-]`.
    #[error("{what} {name:?} may contain only letters, digits, '_' and '-'")]
    InvalidName { what: &'static str, name: String },
}

fn check_tokens(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
    if subject.is_empty() || subject.len() > NAME_BYTES_MAX {
        return Err(SubjectError::Length { what: "subject" });
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty() {
            return Err(SubjectError::EmptyToken(subject.to_owned()));
        }
        if !token_chars_ok(t) {
            return Err(SubjectError::InvalidToken(subject.to_owned()));
        }
        let wild = t == "*" || t == ">";
        if !wild && (t.contains('*') || t.contains('>')) {
            return Err(SubjectError::InvalidToken(subject.to_owned()));
        }
        if wild && !wildcards {
            return Err(SubjectError::Wildcard(subject.to_owned()));
        }
        if t == ">" && tokens.peek().is_some() {
            return Err(SubjectError::TailNotLast(subject.to_owned()));
        }
    }
    Ok(())
}

/// No whitespace or control characters (checked on bytes; text beyond ASCII by `char`).
fn token_chars_ok(t: &str) -> bool {
    if t.is_ascii() {
        // ASCII whitespace and controls are the bytes up to the space, and DEL.
        t.bytes().all(|b| b > b' ' && b != 0x7f)
    } else {
        !t.chars().any(|c| c.is_whitespace() || c.is_control())
    }
}

/// Check a subject a message is published to (no wildcards).
pub fn validate_subject(subject: &str) -> Result<(), SubjectError> {
    check_tokens(subject, false)
}

/// Check a subject filter (wildcards allowed).
pub fn validate_filter(filter: &str) -> Result<(), SubjectError> {
    check_tokens(filter, true)
}

/// Check a stream or group name.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), SubjectError> {
    if name.is_empty() || name.len() > 128 {
        return Err(SubjectError::Length { what });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(SubjectError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Whether concrete `subject` matches `filter`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some concrete subject matches both filters.
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every subject matching `inner` also matches `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_fast_path_agrees_with_the_char_rule() {
        for b in 0u8..128 {
            let c = b as char;
            let by_char = !(c.is_whitespace() || c.is_control());
            assert_eq!(token_chars_ok(&c.to_string()), by_char, "byte {b:#x}");
        }
        assert!(!token_chars_ok("a\u{2003}b"), "em space");
        assert!(token_chars_ok("é"));
    }

    #[test]
    fn validation() {
        assert!(validate_subject("orders.eu.1").is_ok());
        assert!(validate_subject("orders.*").is_err());
        assert!(validate_subject("orders..x").is_err());
        assert!(validate_subject("").is_err());
        assert!(validate_subject("a b").is_err());
        assert!(validate_filter("orders.>").is_ok());
        assert!(validate_filter("orders.>.x").is_err());
        assert!(validate_filter("orders.a*").is_err());
        assert!(validate_name("stream", "orders-1_x").is_ok());
        assert!(validate_name("stream", "orders.x").is_err());
    }

    #[test]
    fn matching() {
        assert!(matches("orders.>", "orders.eu.1"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("orders.*.1", "orders.eu.1"));
        assert!(!matches("orders.*", "orders.eu.1"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
    }

    #[test]
    fn overlap_and_cover() {
        assert!(overlaps("orders.>", "orders.eu.*"));
        assert!(overlaps("orders.*", "*.eu"));
        assert!(!overlaps("orders.*", "orders.eu.x"));
        assert!(!overlaps("a.>", "b.>"));
        assert!(covers("orders.>", "orders.eu.*"));
        assert!(!covers("orders.*", "orders.>"));
        assert!(covers("orders.*", "orders.eu"));
        assert!(!covers("orders.eu", "orders.*"));
    }
}
