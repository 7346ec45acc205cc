//! The SHA-256 fingerprint of a certificate: 32 bytes everywhere inside the
//! gateway (allow rules, blocks, rate keys, pool keys, signers), rendered as
//! text only at the edges (logs, headers, `check`).

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

/// A fingerprint written in a config is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    #[error("{0:?} is not hex (write it like \"AB:CD:01:...\")")]
    NotHex(String),
    #[error("{text:?} has {digits} hex digits, a SHA-256 fingerprint has 64 (openssl x509 -noout -fingerprint -sha256)")]
    Length { text: String, digits: usize },
}

impl Fingerprint {
    /// The SHA-256 of DER bytes.
    pub fn of(der: &[u8]) -> Fingerprint {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// Parses `AB:CD:...` (colons, spaces or dashes optional, either case).
    pub fn parse(s: &str) -> Result<Fingerprint, FingerprintError> {
        let bytes = crate::hex::decode(s).ok_or_else(|| {
            let digits = s.chars().filter(char::is_ascii_hexdigit).count();
            if s.chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | ' '))
                && digits > 0
            {
                FingerprintError::Length {
                    text: s.to_owned(),
                    digits,
                }
            } else {
                FingerprintError::NotHex(s.to_owned())
            }
        })?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| FingerprintError::Length {
                text: s.to_owned(),
                digits: bytes.len() * 2,
            })?;
        Ok(Fingerprint(arr))
    }

    /// Lower-case hex without separators, as the identity header's `Hash=` carries it.
    pub fn hex(&self) -> String {
        crate::hex::lower(&self.0)
    }

    /// The first 8 bytes: unique enough to key a rate-limit bucket.
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

/// `AB:CD:...`, the form `openssl x509 -fingerprint -sha256` prints.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::upper(&self.0, ":"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(Fingerprint::parse(&fp.to_string()), Ok(fp));
        assert_eq!(Fingerprint::parse(&"ab".repeat(32)), Ok(fp));
        assert_eq!(fp.hex(), "ab".repeat(32));
        assert!(matches!(
            Fingerprint::parse("AB:CD"),
            Err(FingerprintError::Length { digits: 4, .. })
        ));
        assert!(matches!(
            Fingerprint::parse("xyz"),
            Err(FingerprintError::NotHex(_))
        ));
    }
}
