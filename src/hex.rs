//! Hex text at the edges: fingerprints, serials and request ids in logs,
//! headers and configs. Inside the gateway they are bytes.

const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Upper-case hex with `sep` between bytes (`""`, `":"`).
pub fn upper(bytes: &[u8], sep: &str) -> String {
    let mut s = String::with_capacity(bytes.len() * (2 + sep.len()));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        s.push(char::from(UPPER[usize::from(b >> 4)]));
        s.push(char::from(UPPER[usize::from(b & 15)]));
    }
    s
}

/// Lower-case hex without separators.
pub fn lower(bytes: &[u8]) -> String {
    upper(bytes, "").to_ascii_lowercase()
}

/// A new random id (request ids, assertion ids, write marks): 128 bits as
/// 32 hex digits.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system RNG failing is not a reason to drop a request; fall back to time and a counter.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    lower(&b)
}

/// Decodes hex as a person writes it: either case, with `:`, `-` or spaces
/// between digit pairs. `None` for anything else (or an odd digit count).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b':' | b'-' | b' '))
        .collect();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let v = |c: u8| char::from(c).to_digit(16);
            Some((v(p[0])? * 16 + v(p[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(upper(&[0xab, 0x01], ":"), "AB:01");
        assert_eq!(lower(&[0xab, 0x01]), "ab01");
        assert_eq!(decode("AB:01"), Some(vec![0xab, 1]));
        assert_eq!(decode("ab 01"), Some(vec![0xab, 1]));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(""), None);
    }
}
