//! Subject patterns, as the node understands them: dot-separated tokens, `*` matches one
//! token, a final `>` matches one or more.

/// Whether `subject` matches `pattern`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut pattern_tokens = pattern.split('.').peekable();
    while let Some(p) = pattern_tokens.next() {
        if p == ">" && pattern_tokens.peek().is_none() {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if p == "*" || p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_star_and_tail() {
        assert!(matches("orders.eu.created", "orders.eu.created"));
        assert!(!matches("orders.eu.created", "orders.eu"));
        assert!(matches("orders.*.created", "orders.us.created"));
        assert!(!matches("orders.*.created", "orders.us.x.created"));
        assert!(matches("orders.>", "orders.eu.created"));
        assert!(matches("orders.>", "orders.eu"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("*.eu.>", "orders.eu.created"));
        assert!(!matches("*.eu.>", "orders.us.created"));
        assert!(matches(">", "a"));
        assert!(!matches("a.>.b", "a.x.b") && matches("a.>.b", "a.>.b"));
    }
}
