//! A sha256 digest, checked once where it enters. Its text is 64 lowercase
//! hex digits, the one form every drover file name, route, catalog and
//! report uses; inside it is 32 bytes. [`Sha256::parse`] takes exactly that
//! form; [`Sha256::parse_typed`] also takes what a person copies from a
//! tool (any case, `:` between bytes, a `sha256:` prefix).

use std::fmt;

use sha2::Digest;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Sha256 {
        Sha256(bytes)
    }

    pub const fn into_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Exactly 64 lowercase hex digits; `None` for anything else.
    pub fn parse(hex: &str) -> Option<Sha256> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(Sha256(bytes))
    }

    /// A digest as people paste it: any case, `:` separators (as
    /// `openssl x509 -fingerprint` prints), an optional `sha256:` prefix,
    /// surrounding blanks.
    pub fn parse_typed(text: &str) -> Option<Sha256> {
        let text = text.trim();
        let text = text.strip_prefix("sha256:").unwrap_or(text);
        let hex: String = text
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        Sha256::parse(&hex)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_canonical_form_round_trips_and_nothing_else_parses() {
        let sha = Sha256::parse(EMPTY).unwrap();
        assert_eq!(sha, Sha256::of(b""));
        assert_eq!(sha.to_string(), EMPTY);
        assert_eq!(Sha256::from_bytes(sha.into_bytes()), sha);
        for bad in [
            &EMPTY.to_uppercase(),
            &EMPTY[1..],
            &format!("{EMPTY}0"),
            &format!("{}g", &EMPTY[1..]),
            &format!("sha256:{EMPTY}"),
            "",
        ] {
            assert_eq!(Sha256::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn typed_digests_may_carry_case_colons_and_a_prefix() {
        let colons: String = EMPTY
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        for typed in [EMPTY, &colons, &format!(" sha256:{EMPTY}\n")] {
            assert_eq!(
                Sha256::parse_typed(typed),
                Some(Sha256::of(b"")),
                "{typed:?}"
            );
        }
        assert_eq!(Sha256::parse_typed("sha256:abc"), None);
    }
}
