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
    let b = subject.as_bytes();
    if plain(b) {
        return Ok(());
    }
    let mut start = 0;
    loop {
        // One pass over the token's bytes finds its end and what it holds.
        let (mut end, mut control, mut wild_chars, mut beyond_ascii) = (start, false, false, false);
        while let Some(&c) = b.get(end).filter(|&&c| c != b'.') {
            control |= c <= b' ' || c == 0x7f;
            wild_chars |= c == b'*' || c == b'>';
            beyond_ascii |= !c.is_ascii();
            end += 1;
        }
        let t = &b[start..end];
        let last = end == b.len();
        if t.is_empty() {
            return Err(SubjectError::EmptyToken(subject.to_owned()));
        }
        // A token ends at a dot or at the end, so it starts and ends on char boundaries.
        let chars_ok = if beyond_ascii {
            subject.get(start..end).is_some_and(token_chars_ok)
        } else {
            !control
        };
        if !chars_ok {
            return Err(SubjectError::InvalidToken(subject.to_owned()));
        }
        let wild = t == b"*" || t == b">";
        if !wild && wild_chars {
            return Err(SubjectError::InvalidToken(subject.to_owned()));
        }
        if wild && !wildcards {
            return Err(SubjectError::Wildcard(subject.to_owned()));
        }
        if t == b">" && !last {
            return Err(SubjectError::TailNotLast(subject.to_owned()));
        }
        if last {
            return Ok(());
        }
        start = end + 1;
    }
}

/// Bytes a token of a plain subject never holds: controls, space and DEL, the wildcards,
/// and bytes beyond ASCII (which need the rule on chars).
static NOT_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = c <= b' ' as usize || c >= 0x7f || c == b'*' as usize || c == b'>' as usize;
        c += 1;
    }
    t
};

/// Whether `b` is a valid subject with no wildcard and only printable ASCII: what nearly
/// every subject is, told in one pass without branches per byte.
fn plain(b: &[u8]) -> bool {
    let (mut special, mut empty, mut after_dot) = (false, false, true);
    for &c in b {
        let dot = c == b'.';
        empty |= dot & after_dot;
        after_dot = dot;
        special |= NOT_PLAIN[usize::from(c)];
    }
    !special && !empty && !after_dot
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

pub use crate::subject_match::matches;

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

    /// The rule token by token, as it reads in the docs: what the one-pass check must agree with.
    fn check_by_tokens(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
        if subject.is_empty() || subject.len() > NAME_BYTES_MAX {
            return Err(SubjectError::Length { what: "subject" });
        }
        let mut tokens = subject.split('.').peekable();
        while let Some(t) = tokens.next() {
            let err = |e: fn(String) -> SubjectError| Err(e(subject.to_owned()));
            if t.is_empty() {
                return err(SubjectError::EmptyToken);
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return err(SubjectError::InvalidToken);
            }
            let wild = t == "*" || t == ">";
            if !wild && (t.contains('*') || t.contains('>')) {
                return err(SubjectError::InvalidToken);
            }
            if wild && !wildcards {
                return err(SubjectError::Wildcard);
            }
            if t == ">" && tokens.peek().is_some() {
                return err(SubjectError::TailNotLast);
            }
        }
        Ok(())
    }

    /// Matching on split tokens, as the docs state it.
    fn matches_by_tokens(filter: &str, subject: &str) -> bool {
        let mut s = subject.split('.');
        let mut f = filter.split('.').peekable();
        while let Some(t) = f.next() {
            if t == ">" && f.peek().is_none() {
                return s.next().is_some();
            }
            match s.next() {
                Some(x) if t == "*" || t == x => {}
                _ => return false,
            }
        }
        s.next().is_none()
    }

    proptest::proptest! {
        #[test]
        fn matching_in_place_agrees_with_split_tokens(
            filter in "[ab.*>]{0,8}",
            subject in "[ab.]{0,8}",
        ) {
            proptest::prop_assert_eq!(
                matches(&filter, &subject),
                matches_by_tokens(&filter, &subject)
            );
        }

        #[test]
        fn the_one_pass_check_agrees_with_the_token_rule(
            subject in "[ab.*> \t\u{7f}é\u{2003}]{0,12}",
            wildcards: bool,
        ) {
            proptest::prop_assert_eq!(
                check_tokens(&subject, wildcards),
                check_by_tokens(&subject, wildcards)
            );
        }
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
