//! The SHA-1 GUID that names a message everywhere: in `cyrus.index`, on the
//! wire (`DONE <name> <sha1>`) and in the store (`files/<sha1>`).

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// A 20-byte SHA-1 digest. Displayed and parsed as 40 lowercase hex digits,
/// the form Cyrus and the Perl tools compare case-sensitively.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 20]);

impl Guid {
    /// The all-zero GUID: what Cyrus 2.3 stores when `guid_mode` is off.
    pub const NULL: Guid = Guid([0; 20]);

    /// The SHA-1 of `bytes`.
    pub fn of(bytes: &[u8]) -> Guid {
        Guid(Sha1::digest(bytes).into())
    }

    pub fn is_null(&self) -> bool {
        *self == Guid::NULL
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<Sha1> for Guid {
    fn from(hasher: Sha1) -> Guid {
        Guid(hasher.finalize().into())
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.to_hex())
    }
}

/// A string that is not 40 hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a 40-hex-digit SHA-1: {0:?}")]
pub struct BadGuid(pub String);

impl FromStr for Guid {
    type Err = BadGuid;

    /// Accepts upper or lower case; Cyrus writes lower.
    fn from_str(s: &str) -> Result<Guid, BadGuid> {
        let mut out = [0u8; 20];
        if s.len() != 40 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(BadGuid(s.chars().take(80).collect()));
        }
        Ok(Guid(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_of_empty_input_is_the_well_known_digest() {
        assert_eq!(
            Guid::of(b"").to_hex(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn parses_both_cases_and_displays_lowercase() {
        let g: Guid = "B7ED6E137FCF82FF937612F65D33D19029B20AEB".parse().unwrap();
        assert_eq!(g.to_string(), "b7ed6e137fcf82ff937612f65d33d19029b20aeb");
        assert!("b7ed".parse::<Guid>().is_err());
        assert!("zz".repeat(20).parse::<Guid>().is_err());
    }
}
