//! Request paths are normalised once, before routing, and the normalised form
//! is what the upstream receives: the route that matched is the resource
//! served, however the client spelled it. Configured path prefixes go through
//! the same function, so a prefix and a request are compared in one form.

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// `.` or `..` segments (also when percent-encoded).
    DotSegment,
    /// `%2F` or `%5C`: a slash the router cannot see.
    EncodedSlash,
    /// A raw backslash, which some servers read as a slash.
    Backslash,
    /// `//`: an empty segment that upstreams disagree about.
    EmptySegment,
    /// `%25` escaping `.`, `/`, `\\` or `%`: a second decoding (which some
    /// upstreams and frameworks apply) would reveal a dot segment or a slash.
    DoubleEncoded,
    /// `%` not followed by two hex digits, or a control character.
    Malformed,
}

impl std::fmt::Display for BadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadPath::DotSegment => "a \".\" or \"..\" segment",
            BadPath::EncodedSlash => "an escaped slash or backslash",
            BadPath::Backslash => "a backslash",
            BadPath::EmptySegment => "an empty segment",
            BadPath::DoubleEncoded => "a double-encoded escape",
            BadPath::Malformed => "a malformed escape or a control character",
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 normalisation of a path: percent-encoded unreserved characters are
/// decoded (`%61` is `a`), other escapes keep their (upper-case) form. Paths that
/// different servers would resolve differently are refused rather than guessed.
pub fn normalize(path: &str) -> Result<String, BadPath> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadPath::Malformed);
            };
            let v = h * 16 + l;
            if v == b'%' {
                let next = (
                    b.get(i + 3).copied().and_then(hex),
                    b.get(i + 4).copied().and_then(hex),
                );
                if let (Some(h2), Some(l2)) = next {
                    if matches!(h2 * 16 + l2, b'.' | b'/' | b'\\' | b'%') {
                        return Err(BadPath::DoubleEncoded);
                    }
                }
            }
            match v {
                b'/' | b'\\' => return Err(BadPath::EncodedSlash),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(v as char)
                }
                _ => {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                }
            }
            i += 3;
            continue;
        }
        if c == b'\\' {
            return Err(BadPath::Backslash);
        }
        if c < 0x20 || c == 0x7f {
            return Err(BadPath::Malformed);
        }
        out.push(c as char);
        i += 1;
    }
    if !out.starts_with('/') {
        return Err(BadPath::Malformed);
    }
    let segments: Vec<&str> = out[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (n, s) in segments.iter().enumerate() {
        // Tomcat, Jetty and Spring drop `;parameters` before resolving dot
        // segments, so `..;x` climbs like `..` does there.
        let (name, params) = match s.split_once(';') {
            Some((name, _)) => (name, true),
            None => (*s, false),
        };
        if name == "." || name == ".." {
            return Err(BadPath::DotSegment);
        }
        // A trailing slash is an empty last segment, and fine.
        if name.is_empty() && (n != last || params) {
            return Err(BadPath::EmptySegment);
        }
    }
    Ok(out)
}

/// A normalised path without its `;parameters` (`/a;x/b` is `/a/b`): routes
/// match on it, as servers that strip parameters would resolve the path.
pub fn without_params(normalized: &str) -> std::borrow::Cow<'_, str> {
    if !normalized.contains(';') {
        return std::borrow::Cow::Borrowed(normalized);
    }
    let mut out = String::with_capacity(normalized.len());
    for (i, seg) in normalized.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split(';').next().unwrap_or(""));
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_pass_and_unreserved_escapes_are_decoded() {
        assert_eq!(
            normalize("/services/Soap/u/60.0").unwrap(),
            "/services/Soap/u/60.0"
        );
        assert_eq!(normalize("/api/%61dmin/").unwrap(), "/api/admin/");
        assert_eq!(normalize("/a%20b/%c3%a9").unwrap(), "/a%20b/%C3%A9");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/.hidden/b..c").unwrap(), "/a/.hidden/b..c");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(normalize("/public/../admin"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/public/%2e%2e/admin"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/public/.%2E"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/a/./b"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/a%2fb"), Err(BadPath::EncodedSlash));
        assert_eq!(normalize("/a%5Cb"), Err(BadPath::EncodedSlash));
        assert_eq!(normalize("/a\\b"), Err(BadPath::Backslash));
        assert_eq!(normalize("//a"), Err(BadPath::EmptySegment));
        assert_eq!(normalize("/a//b"), Err(BadPath::EmptySegment));
        assert_eq!(normalize("/a%zz"), Err(BadPath::Malformed));
        assert_eq!(normalize("/a%2"), Err(BadPath::Malformed));
    }

    #[test]
    fn parameters_and_double_encoding_cannot_hide_a_climb() {
        assert_eq!(normalize("/public/..;/admin/x"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/public/.;x/admin"), Err(BadPath::DotSegment));
        assert_eq!(
            normalize("/public/%2e%2e;jsessionid=1/a"),
            Err(BadPath::DotSegment)
        );
        assert_eq!(normalize("/public/;x/admin"), Err(BadPath::EmptySegment));
        assert_eq!(
            normalize("/public/%252e%252e/admin"),
            Err(BadPath::DoubleEncoded)
        );
        assert_eq!(normalize("/a%252Fb"), Err(BadPath::DoubleEncoded));
        assert_eq!(normalize("/a%255cb"), Err(BadPath::DoubleEncoded));
        assert_eq!(normalize("/a%25252e"), Err(BadPath::DoubleEncoded));
        // A literal percent sign before other text is fine.
        assert_eq!(normalize("/a%2541").unwrap(), "/a%2541");
        assert_eq!(normalize("/a;v=1/b").unwrap(), "/a;v=1/b");
        assert_eq!(without_params("/a;v=1/b;x"), "/a/b");
        assert_eq!(without_params("/a/b"), "/a/b");
    }
}
