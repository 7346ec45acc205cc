//! Masks secrets and operator-named fields in text that may carry message
//! content — a log line, `wssec verify --explain` output, a probe report —
//! before it leaves the process. One scanner covers the shapes such content
//! takes: an XML element (`<ns:Password ...>x</ns:Password>`, nested content
//! included), an attribute or query/matrix parameter (`name="x"`, `name=x`),
//! a JSON member (`"name": "x"`, escaped or not) and a header line
//! (`Authorization: Bearer x`). Names match ASCII case-insensitively as whole
//! tokens, with or without a namespace prefix.
//!
//! Credentials are always masked whole; names the operator adds in
//! `[log] redact` keep their last `keep_last` characters, as portals show
//! card numbers.

use std::borrow::Cow;

/// Masked whatever the configuration says: credentials that must never be
/// written anywhere.
pub const ALWAYS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "password",
    "passwd",
    "sessionid",
    "session_id",
    "jsessionid",
    "sid",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "api_key",
    "apikey",
    "x-api-key",
];

/// What a masked value becomes (no quote, backslash or markup, so it is
/// safe inside XML text, a JSON string and an attribute).
pub const MASK: &str = "[redacted]";

/// The most names `[log] redact` may list, and the longest.
const MAX_NAMES: usize = 256;
const MAX_NAME: usize = 128;
/// Card numbers show four; more than this is no longer masking.
const MAX_KEEP: usize = 8;

#[derive(Clone)]
struct Name {
    lower: Vec<u8>,
    keep_last: usize,
}

/// The names to mask, compiled once.
#[derive(Clone)]
pub struct Redactor {
    names: Vec<Name>,
    /// First bytes (lower-cased) any name starts with: a cheap pre-filter.
    first: [bool; 256],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("names", &self.names.len())
            .finish()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::build(std::iter::empty(), 0)
    }
}

/// Why a `[log] redact` entry cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedactError {
    #[error("{0:?} is not an element, attribute or field name (letters, digits, '_', '-', '.')")]
    BadName(String),
    #[error("more than {MAX_NAMES} names")]
    TooMany,
    #[error("keep_last {0} is more than {MAX_KEEP}")]
    KeepTooMany(usize),
}

impl Redactor {
    /// The credentials in [`ALWAYS`], plus `extra` (keeping `keep_last`
    /// characters of those).
    pub fn new(extra: &[String], keep_last: usize) -> Result<Redactor, RedactError> {
        if extra.len() > MAX_NAMES {
            return Err(RedactError::TooMany);
        }
        if keep_last > MAX_KEEP {
            return Err(RedactError::KeepTooMany(keep_last));
        }
        for n in extra {
            let ok = !n.is_empty()
                && n.len() <= MAX_NAME
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
                && n.bytes().next().is_some_and(|b| !b"-.".contains(&b));
            if !ok {
                return Err(RedactError::BadName(n.clone()));
            }
        }
        Ok(Redactor::build(extra.iter().map(String::as_str), keep_last))
    }

    fn build<'a>(extra: impl Iterator<Item = &'a str>, keep_last: usize) -> Redactor {
        let mut names: Vec<Name> = ALWAYS
            .iter()
            .map(|n| Name {
                lower: n.as_bytes().to_vec(),
                keep_last: 0,
            })
            .collect();
        for n in extra {
            let lower = n.to_ascii_lowercase().into_bytes();
            if !names.iter().any(|m| m.lower == lower) {
                names.push(Name { lower, keep_last });
            }
        }
        // Longest first, so `set-cookie` is not taken for `cookie`.
        names.sort_by_key(|n| std::cmp::Reverse(n.lower.len()));
        let mut first = [false; 256];
        for n in &names {
            if let Some(b) = n.lower.first() {
                first[usize::from(*b)] = true;
            }
        }
        Redactor { names, first }
    }

    /// `s` with every named value masked; borrowed when nothing matched.
    pub fn text<'s>(&self, s: &'s str) -> Cow<'s, str> {
        match self.bytes(s.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(s),
            // Masks start and end on ASCII delimiters or char boundaries.
            Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// Like [`Redactor::text`] on bytes (canonical XML, say).
    pub fn bytes<'s>(&self, s: &'s [u8]) -> Cow<'s, [u8]> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut i = 0;
        while i < s.len() {
            let Some((name, end)) = self.name_at(s, i) else {
                i += 1;
                continue;
            };
            match value_span(s, i, end) {
                Some(spans) if spans.iter().any(|(a, b)| b > a) => {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(s.len()));
                    let mut last = end;
                    for (a, b) in spans.iter().copied().filter(|(a, b)| b > a) {
                        o.extend_from_slice(&s[copied..a]);
                        o.extend_from_slice(masked_str(&s[a..b], name.keep_last).as_bytes());
                        copied = b;
                        last = b;
                    }
                    i = last.max(end);
                }
                Some(spans) => {
                    i = spans.iter().map(|(_, b)| *b).max().unwrap_or(end).max(end);
                }
                None => i = end,
            }
        }
        match out {
            None => Cow::Borrowed(s),
            Some(mut o) => {
                o.extend_from_slice(&s[copied..]);
                Cow::Owned(o)
            }
        }
    }

    /// Masks a JSON value in place: members with a listed name lose their
    /// value, strings elsewhere are scanned as text.
    pub fn json(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match self.named(k.as_bytes()) {
                        Some(n) => {
                            let keep = n.keep_last;
                            *v = match v {
                                Value::String(s) => Value::String(masked_str(s.as_bytes(), keep)),
                                Value::Number(x) => {
                                    Value::String(masked_str(x.to_string().as_bytes(), keep))
                                }
                                Value::Null => Value::Null,
                                _ => Value::String(MASK.into()),
                            };
                        }
                        None => self.json(v),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| self.json(v)),
            Value::String(s) => {
                if let Cow::Owned(t) = self.text(s) {
                    *s = t;
                }
            }
            _ => {}
        }
    }

    /// Whether any listed name appears in `s` at all, token or not: a cheap
    /// test before the work of masking a JSON line member by member.
    pub fn mentions(&self, s: &[u8]) -> bool {
        s.iter().enumerate().any(|(i, b)| {
            self.first[usize::from(b.to_ascii_lowercase())]
                && self.names.iter().any(|n| {
                    s.get(i..i + n.lower.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(&n.lower))
                })
        })
    }

    fn named(&self, key: &[u8]) -> Option<&Name> {
        let local = key.rsplit(|b| *b == b':').next().unwrap_or(key);
        self.names
            .iter()
            .find(|n| n.lower.eq_ignore_ascii_case(local))
    }

    /// A listed name starting at `i` as a whole token, and where it ends.
    fn name_at(&self, s: &[u8], i: usize) -> Option<(&Name, usize)> {
        if !self.first[usize::from(s[i].to_ascii_lowercase())] {
            return None;
        }
        // A token starts after a non-name byte, a `.` (`user.password`) or
        // an escaped line break or tab (`\nAuthorization:` in JSON text).
        let escaped = i > 1 && s[i - 2] == b'\\' && matches!(s[i - 1], b'n' | b'r' | b't');
        if i > 0 && is_name_byte(s[i - 1]) && s[i - 1] != b'.' && !escaped {
            return None;
        }
        self.names.iter().find_map(|n| {
            let end = i + n.lower.len();
            let hit = s.get(i..end)?.eq_ignore_ascii_case(&n.lower)
                && !s.get(end).copied().is_some_and(is_name_byte);
            hit.then_some((n, end))
        })
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// The byte ranges holding the value of the name at `start..end`, when what
/// surrounds it makes it an element, attribute, parameter, member or header.
fn value_span(s: &[u8], start: usize, end: usize) -> Option<Vec<(usize, usize)>> {
    // An element: `<name` or `<prefix:name`.
    let mut p = start;
    if p > 0 && s[p - 1] == b':' {
        p -= 1;
        while p > 0 && is_name_byte(s[p - 1]) {
            p -= 1;
        }
    }
    if p > 0 && s[p - 1] == b'<' {
        return element_content(s, start, end);
    }
    // An end tag's name is no value.
    if p > 1 && s[p - 1] == b'/' && s[p - 2] == b'<' {
        return None;
    }
    let mut j = end;
    // The closing quote of a quoted key: `"name"`, `\"name\"`, `'name'`.
    if s.get(j) == Some(&b'\\') && s.get(j + 1) == Some(&b'"') {
        j += 2;
    } else if matches!(s.get(j), Some(b'"' | b'\'')) {
        j += 1;
    }
    while matches!(s.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    let sep = *s.get(j)?;
    if sep != b'=' && sep != b':' {
        return None;
    }
    j += 1;
    while matches!(s.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    let a = j;
    let span = match s.get(j) {
        None => return None,
        Some(b'\\') if s.get(j + 1) == Some(&b'"') => {
            let v = j + 2;
            let b = find_from(s, v, b"\\\"").unwrap_or(s.len());
            (v, b)
        }
        Some(q @ (b'"' | b'\'')) => {
            let v = j + 1;
            let mut b = v;
            while b < s.len() && s[b] != *q {
                b += if s[b] == b'\\' { 2 } else { 1 };
            }
            (v, b.min(s.len()))
        }
        Some(b'{' | b'[') => (j, matching_bracket(s, j)),
        // A header line's value runs to the end of the line, quotes and
        // all (`Cookie: s="x"`, `Authorization: Digest response="x"`).
        Some(_) if sep == b':' => {
            let b = (a..s.len())
                .find(|k| {
                    matches!(s[*k], b'\r' | b'\n')
                        || (s[*k] == b'\\' && matches!(s.get(k + 1), Some(b'r' | b'n')))
                })
                .unwrap_or(s.len());
            (a, b)
        }
        Some(_) => {
            let b = (a..s.len())
                .find(|k| {
                    matches!(
                        s[*k],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'&'
                            | b'?'
                            | b';'
                            | b','
                            | b'"'
                            | b'\''
                            | b'<'
                            | b'>'
                            | b'}'
                            | b']'
                            | b'\\'
                    )
                })
                .unwrap_or(s.len());
            (a, b)
        }
    };
    (span.1 > span.0).then(|| vec![span])
}

/// The content of the element whose start tag names `start..end`, up to
/// its matching end tag: all of it, nested markup and CDATA included, so
/// nothing inside (an attribute of a child, a CDATA section) survives. An
/// element or tag never closed is masked to the end, which also keeps the
/// scan linear.
fn element_content(s: &[u8], start: usize, end: usize) -> Option<Vec<(usize, usize)>> {
    let local = &s[start..end];
    let Some(open_end) = tag_end(s, end) else {
        return Some(vec![(end, s.len())]);
    };
    if s[open_end - 1] == b'/' {
        return None;
    }
    let from = open_end + 1;
    let mut depth = 0usize;
    let mut i = from;
    while i < s.len() {
        if s[i] != b'<' {
            i += 1;
            continue;
        }
        let Some(close) = tag_end(s, i + 1) else {
            return Some(vec![(from, s.len())]);
        };
        let tag = &s[i + 1..close];
        let (is_end, name) = match tag.strip_prefix(b"/") {
            Some(n) => (true, n),
            None => (false, tag),
        };
        let name_len = name.iter().position(|b| !is_name_byte(*b) && *b != b':');
        let qname = &name[..name_len.unwrap_or(name.len())];
        let tag_local = qname.rsplit(|b| *b == b':').next().unwrap_or(qname);
        if tag_local.eq_ignore_ascii_case(local) {
            if is_end && depth == 0 {
                return Some(vec![(from, i)]);
            } else if is_end {
                depth -= 1;
            } else if !tag.ends_with(b"/") {
                depth += 1;
            }
        }
        i = close + 1;
    }
    Some(vec![(from, s.len())])
}

/// The `>` closing the tag that goes on at `from`, past quoted attributes.
fn tag_end(s: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (k, b) in s.iter().enumerate().skip(from) {
        match (quote, *b) {
            (None, b'"' | b'\'') => quote = Some(*b),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => return Some(k),
            (None, b'<') => return None,
            _ => {}
        }
    }
    None
}

fn find_from(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Just past the bracket closing the one at `open` (quotes respected).
fn matching_bracket(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut k = open;
    while k < s.len() {
        match s[k] {
            b'\\' if in_str => k += 1,
            b'"' => in_str = !in_str,
            b'{' | b'[' if !in_str => depth += 1,
            b'}' | b']' if !in_str => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
        k += 1;
    }
    s.len()
}

/// The mask for `value`, ending in its last `keep` characters when it is
/// more than twice that long (a short value is masked whole).
fn masked_str(value: &[u8], keep: usize) -> String {
    let text = String::from_utf8_lossy(value);
    let chars = text.chars().count();
    if keep == 0 || chars <= keep * 2 {
        return MASK.into();
    }
    let tail: String = text.chars().skip(chars - keep).collect();
    // The kept tail must not reopen a quote or markup.
    if tail.contains(['"', '\\', '<', '>', '&', '\'']) {
        return MASK.into();
    }
    format!("{MASK}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(extra: &[&str], keep: usize) -> Redactor {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Redactor::new(&extra, keep).unwrap_or_default()
    }

    #[test]
    fn elements_with_prefix_attributes_and_nesting() {
        let red = r(&["SessionHeader"], 0);
        let x = r#"<s:Header><wsse:Password Type="urn:x#PasswordText">hunter2</wsse:Password><SessionHeader xmlns="urn:p"><sessionId>00Dx!AQ</sessionId><x>y</x></SessionHeader></s:Header>"#;
        let out = red.text(x);
        assert!(!out.contains("hunter2") && !out.contains("00Dx") && !out.contains(">y<"));
        assert!(
            out.contains(r#"<wsse:Password Type="urn:x#PasswordText">[redacted]</wsse:Password>"#)
        );
        // A named element is masked whole, its children with it.
        assert!(
            out.contains(r#"<SessionHeader xmlns="urn:p">[redacted]</SessionHeader>"#),
            "{out}"
        );
        assert_eq!(
            r(&[], 0).text("<sessionId>00Dx</sessionId>"),
            "<sessionId>[redacted]</sessionId>"
        );
    }

    #[test]
    fn members_parameters_and_headers() {
        let red = r(&["ssn"], 0);
        for (input, secret) in [
            (r#"{"ssn": "123-45-6789"}"#, "123-45-6789"),
            (r#"{\"ssn\":\"123-45-6789\"}"#, "123-45-6789"),
            ("/a;jsessionid=ABCDEF?x=1", "ABCDEF"),
            (
                "Authorization: Bearer eyJhbGciOi.x.y\r\nHost: a",
                "eyJhbGciOi",
            ),
            ("set-cookie: sid=42; Path=/", "sid=42"),
            ("<a ssn='123456789'/>", "123456789"),
            ("{\"ssn\":123456789}", "123456789"),
        ] {
            let out = red.text(input);
            assert!(!out.contains(secret), "{input} -> {out}");
            assert!(out.contains(MASK), "{input} -> {out}");
        }
        assert!(red.text("/a;jsessionid=ABCDEF?x=1").ends_with("?x=1"));
        assert!(red.text("Host: a").contains("Host: a"));
    }

    #[test]
    fn whole_tokens_only() {
        let red = r(&[], 0);
        for s in [
            "reason=token_unavailable",
            "bad UsernameToken: Password Type",
            "</wsse:Password>",
            "no Password",
            "passwords: none",
        ] {
            assert_eq!(red.text(s), s);
        }
    }

    #[test]
    fn keep_last_applies_to_operator_names_only() {
        let red = r(&["creditCard"], 4);
        let out =
            red.text("<CreditCard>4111111111111111</CreditCard><Password>abcdefghij</Password>");
        assert!(
            out.contains("<CreditCard>[redacted]1111</CreditCard>"),
            "{out}"
        );
        assert!(out.contains("<Password>[redacted]</Password>"), "{out}");
        assert_eq!(red.text("creditCard=1234"), "creditCard=[redacted]");
    }

    #[test]
    fn json_values_mask_by_key_and_scan_strings() {
        let red = r(&["ssn"], 0);
        let mut v = serde_json::json!({"ssn": 5, "detail": "<Password>p</Password>", "ok": "x"});
        red.json(&mut v);
        assert_eq!(v["ssn"], MASK);
        assert_eq!(v["detail"], "<Password>[redacted]</Password>");
        assert_eq!(v["ok"], "x");
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(Redactor::new(&["a b".into()], 0).is_err());
        assert!(Redactor::new(&["".into()], 0).is_err());
        assert!(Redactor::new(&["<x>".into()], 0).is_err());
        assert!(Redactor::new(&["card_number".into()], 4).is_ok());
    }

    #[test]
    fn unclosed_and_truncated_input_is_masked_to_the_end() {
        let red = r(&[], 0);
        assert_eq!(red.text("<Password>abc"), "<Password>[redacted]");
        assert_eq!(red.text("password=\"abc"), "password=\"[redacted]");
        assert_eq!(red.text("<Password a=\"x>secret"), "<Password[redacted]");
        assert!(!red
            .text("<Password>ab<\" x>secret</Password>")
            .contains("secret"));
    }

    #[test]
    fn shapes_the_review_found() {
        let red = r(&["ssn"], 0);
        for (input, secret) in [
            (
                "<wsse:Password><![CDATA[hunter2]]></wsse:Password>",
                "hunter2",
            ),
            ("<sid><x password=\"S3\"/>b</sid>", "S3"),
            ("Cookie: session=\"SECRET\"", "SECRET"),
            (
                "Authorization: Digest username=\"bob\", response=\"R9R9\"",
                "R9R9",
            ),
            ("x\\nAuthorization: Bearer TOK1", "TOK1"),
            ("x\\npassword=PW22", "PW22"),
            ("user.password=PW33", "PW33"),
        ] {
            let out = red.text(input);
            assert!(!out.contains(secret), "{input} -> {out}");
        }
        // A JSON line whose only mention follows an escaped newline.
        let line = br#"{"detail":"Host: a\r\nAuthorization: Bearer SECRETTOK"}"#;
        let out = crate::telemetry::logging::redacted(line, &red, true);
        assert!(!String::from_utf8_lossy(&out).contains("SECRETTOK"));
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn hostile_input_costs_linear_time() {
        let red = r(&[], 0);
        let line = "<sid>".repeat(20_000);
        let t = std::time::Instant::now();
        let _ = red.text(&line);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        let red = r(&[], 0);
        let line = "<password \"".repeat(20_000);
        let t = std::time::Instant::now();
        let out = red.text(&line);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        assert!(out.len() < line.len());
    }
}
