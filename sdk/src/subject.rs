//! Subject patterns, as the node understands them: dot-separated tokens, `*` matches one
//! token, a final `>` matches one or more.

/// Whether `subject` matches `pattern`.
///
/// Walks both strings once, token by token: a literal token is compared where it lies in
/// the subject, so only `*` has to look for the end of a subject token.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), subject.as_bytes());
    // Where the current token of each starts; `j == s.len() + 1` once the subject's last
    // token has been taken (a string of n dots has n + 1 tokens, some of them empty).
    let (mut i, mut j) = (0, 0);
    loop {
        let pe = token_end(p, i);
        let token = &p[i..pe];
        let last = pe == p.len();
        if token == b">" && last {
            return j <= s.len();
        }
        let Some(rest) = s.get(j..) else {
            return false;
        };
        let se = if token == b"*" {
            j + token_end(rest, 0)
        } else if rest.starts_with(token) && matches!(rest.get(token.len()), None | Some(b'.')) {
            j + token.len()
        } else {
            return false;
        };
        if last {
            return se == s.len();
        }
        (i, j) = (pe + 1, se + 1);
    }
}

/// Where the token starting at `from` ends: at the next dot, or at the end.
fn token_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'.')
        .map_or(b.len(), |k| from + k)
}

#[cfg(test)]
mod tests {
    use super::matches;

    /// The rule on split tokens, as the docs state it.
    fn by_tokens(pattern: &str, subject: &str) -> bool {
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

    #[test]
    fn agrees_with_the_rule_on_split_tokens() {
        // Every pattern and subject of up to 5 characters from a small alphabet.
        let alphabet = ['a', 'b', '.', '*', '>'];
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        let subjects: Vec<&String> = all.iter().filter(|s| s.len() <= 4).collect();
        for p in &all {
            for s in &subjects {
                assert_eq!(
                    matches(p, s),
                    by_tokens(p, s),
                    "pattern {p:?}, subject {s:?}"
                );
            }
        }
    }

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
