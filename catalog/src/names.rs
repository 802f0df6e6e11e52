//! Node names: the identity a certificate carries and every node route checks.
//!
//! A node name is a plain host name, so it can never be read as a path, a
//! glob, a header or a shell word: labels of ASCII letters, digits and `-`
//! (not at either end), joined by single dots, at most 253 bytes.

/// Longest accepted node name (a DNS name's limit).
pub const MAX_NODE_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// Why `name` is not a plain host name, or `Ok`.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a node name cannot be empty".into());
    }
    if name.len() > MAX_NODE_NAME {
        return Err(format!(
            "a node name has at most {MAX_NODE_NAME} bytes; this one has {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "node name {name:?} holds {bad:?}: a node name is a plain host name (letters, digits, `-` and `.`)"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "node name {name:?} has an empty label (a leading, trailing or doubled `.`)"
            ));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "node name {name:?} has a label longer than {MAX_LABEL} bytes"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "node name {name:?} has a label that starts or ends with `-`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_host_names_pass() {
        for name in ["web1", "web-1.example.org", "A1", "x", &"a".repeat(63)] {
            assert_eq!(check_node_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_the_reason() {
        let long = format!("{}.{}", "a".repeat(200), "b".repeat(60));
        let cases = [
            ("", "empty"),
            ("../etc", "holds '/'"),
            ("..", "empty label"),
            ("web1/..", "holds '/'"),
            ("web\\1", "holds '\\\\'"),
            ("web\u{0}1", "holds '\\0'"),
            ("web\n1", "holds '\\n'"),
            ("web 1", "holds ' '"),
            ("w*b", "holds '*'"),
            ("wéb", "holds 'é'"),
            (".web", "empty label"),
            ("web.", "empty label"),
            ("-web", "starts or ends"),
            (&long, "at most 253"),
        ];
        for (name, why) in cases {
            let err = check_node_name(name).unwrap_err();
            assert!(err.contains(why), "{name:?}: {err}");
        }
        assert!(
            check_node_name(&"a".repeat(64))
                .unwrap_err()
                .contains("longer than 63")
        );
    }
}
