//! Where a message that arrives in pieces may be cut for the reader: right
//! after the `>` that closes a tag, comment, CDATA section or processing
//! instruction, never inside markup or text.
//!
//! This lexer only proposes cuts; the reader still judges every byte. A cut
//! it got wrong on malformed input leaves markup open at a window's end,
//! which the reader refuses, so a bad guess fails closed.

use memchr::{memchr, memchr3, memrchr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Lex {
    #[default]
    Content,
    /// A `<` seen; what follows tells which markup it opens.
    Open,
    /// Inside a start or end tag, within quotes when set.
    Tag(Option<u8>),
    Comment,
    CData,
    Pi,
    /// `<!DOCTYPE` and the like: the reader refuses them, any `>` ends them.
    Declaration,
}

/// Scans what is buffered, remembering how far it got between calls.
#[derive(Debug, Default)]
pub struct Cutter {
    lex: Lex,
    /// Bytes of the buffer already scanned.
    pos: usize,
    /// Where the markup being scanned starts in the buffer (in content:
    /// where the content starts).
    start: usize,
}

impl Cutter {
    /// Scans `buf` (what is buffered, the same bytes as before plus more)
    /// and returns the last place it may be cut, if any.
    pub fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        let mut cut = None;
        let mut i = self.pos;
        while i < buf.len() {
            let rest = buf.get(i..).unwrap_or_default();
            match self.lex {
                Lex::Content => match memchr(b'<', rest) {
                    Some(k) => {
                        self.start = i + k;
                        self.lex = Lex::Open;
                        i += k + 1;
                    }
                    None => i = buf.len(),
                },
                Lex::Open => {
                    let m = buf.get(self.start..).unwrap_or_default();
                    let opens = |s: &[u8]| m.starts_with(s);
                    let could = |s: &[u8]| s.starts_with(m);
                    if opens(b"<!--") {
                        self.lex = Lex::Comment;
                        i = self.start + 4;
                    } else if opens(b"<![CDATA[") {
                        self.lex = Lex::CData;
                        i = self.start + 9;
                    } else if could(b"<!--") || could(b"<![CDATA[") {
                        // Too few bytes yet to tell.
                        i = buf.len();
                    } else if opens(b"<?") {
                        self.lex = Lex::Pi;
                        i = self.start + 2;
                    } else if opens(b"<!") {
                        self.lex = Lex::Declaration;
                        i = self.start + 2;
                    } else {
                        self.lex = Lex::Tag(None);
                        i = self.start + 1;
                    }
                }
                Lex::Tag(None) => match memchr3(b'>', b'"', b'\'', rest) {
                    Some(k) => {
                        let at = i + k;
                        match buf.get(at) {
                            Some(b'>') => {
                                self.lex = Lex::Content;
                                self.start = at + 1;
                                cut = Some(at + 1);
                            }
                            q => self.lex = Lex::Tag(q.copied()),
                        }
                        i = at + 1;
                    }
                    None => i = buf.len(),
                },
                Lex::Tag(Some(q)) => match memchr(q, rest) {
                    Some(k) => {
                        self.lex = Lex::Tag(None);
                        i += k + 1;
                    }
                    None => i = buf.len(),
                },
                Lex::Comment | Lex::CData | Lex::Pi | Lex::Declaration => {
                    let (close, opener): (&[u8], usize) = match self.lex {
                        Lex::Comment => (b"--", 4),
                        Lex::CData => (b"]]", 9),
                        Lex::Pi => (b"?", 2),
                        _ => (b"", 2),
                    };
                    match memchr(b'>', rest) {
                        Some(k) => {
                            let at = i + k;
                            let body = buf.get(self.start + opener..at).unwrap_or_default();
                            if body.ends_with(close) {
                                self.lex = Lex::Content;
                                self.start = at + 1;
                                cut = Some(at + 1);
                            }
                            i = at + 1;
                        }
                        None => i = buf.len(),
                    }
                }
            }
        }
        self.pos = i;
        cut
    }

    /// A cut inside the text that ends the buffer, for text too long to wait
    /// for its markup (a large base64 payload): at a character boundary, not
    /// after a CR (CR LF is one line end), a `]` (`]]>` is refused in text)
    /// or inside a reference. Call after `scan` over the same buffer.
    pub fn text_cut(&self, buf: &[u8]) -> Option<usize> {
        if self.lex != Lex::Content || self.pos != buf.len() {
            return None;
        }
        let lowest = buf.len().saturating_sub(16).max(self.start + 1);
        // A reference may be any length (`&#x0000000041;`): where the last
        // `&` and `;` before each candidate are, from one search back over
        // the text and a walk over the candidates.
        let text = buf.get(self.start..lowest).unwrap_or_default();
        let mut amp = memrchr(b'&', text).map(|k| self.start + k);
        let mut semi = memrchr(b';', text).map(|k| self.start + k);
        let mut cut = None;
        for p in lowest..buf.len() {
            let last = buf.get(p - 1).copied();
            match last {
                Some(b'&') => amp = Some(p - 1),
                Some(b';') => semi = Some(p - 1),
                _ => {}
            }
            // The byte after the cut is known: it tells a character's boundary.
            let boundary = buf.get(p).is_some_and(|&b| !(0x80..0xC0).contains(&b));
            let in_reference = amp.is_some_and(|a| semi.is_none_or(|s| s < a));
            if boundary && !matches!(last, Some(b'\r' | b']')) && !in_reference {
                cut = Some(p);
            }
        }
        cut
    }

    /// The first `n` bytes of the buffer were taken away (at a cut).
    pub fn drained(&mut self, n: usize) {
        self.pos = self.pos.saturating_sub(n);
        self.start = self.start.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::Cutter;

    /// Every cut proposed, feeding `doc` in pieces of `step` bytes.
    fn cuts(doc: &[u8], step: usize) -> Vec<usize> {
        let mut c = Cutter::default();
        let mut found = Vec::new();
        let mut end = 0;
        while end < doc.len() {
            end = (end + step).min(doc.len());
            if let Some(k) = c.scan(&doc[..end]) {
                if found.last() != Some(&k) {
                    found.push(k);
                }
            }
        }
        found
    }

    #[test]
    fn text_is_cut_between_characters_outside_references_and_line_ends() {
        let doc = "<a>caf\u{e9} &amp;&#x10FFFF;\r\n]]x".as_bytes();
        for end in 4..=doc.len() {
            let buf = &doc[..end];
            let mut c = Cutter::default();
            c.scan(buf);
            if let Some(p) = c.text_cut(buf) {
                let (a, b) = buf.split_at(p);
                assert!(
                    std::str::from_utf8(a).is_ok(),
                    "{end}: split inside a character"
                );
                assert!(p > 3 && !a.ends_with(b"\r") && !a.ends_with(b"]"));
                let last_amp = a.iter().rposition(|&x| x == b'&');
                let last_semi = a.iter().rposition(|&x| x == b';');
                assert!(
                    last_amp.is_none() || last_semi > last_amp,
                    "{end}: inside a reference"
                );
                let _ = b;
            }
        }
        // However long the reference: XML allows any number of leading zeros.
        let doc = b"<a>x&#x000000000000000000000041;";
        for end in 4..doc.len() {
            let mut c = Cutter::default();
            c.scan(&doc[..end]);
            let cut = c.text_cut(&doc[..end]);
            assert!(cut.is_none_or(|p| p <= 4), "{end}: cut at {cut:?}");
        }
        let mut c = Cutter::default();
        c.scan(b"<a x='");
        assert_eq!(c.text_cut(b"<a x='"), None, "never inside markup");
    }

    #[test]
    fn cuts_fall_only_after_markup_whatever_the_piece_size() {
        let doc = br#"<?xml version="1.0"?><a x="1>2" y='>'>t > u<!-- a > b -- > c --><![CDATA[ ]> ]]><b/>z</a>"#;
        let expect: Vec<usize> = {
            let s = std::str::from_utf8(doc).unwrap();
            ["?>", "'>'>", "c -->", "]> ]]>", "<b/>", "</a>"]
                .iter()
                .map(|m| s.find(m).unwrap() + m.len())
                .collect()
        };
        for step in 1..doc.len() {
            let got = cuts(doc, step);
            assert!(
                got.iter().all(|k| expect.contains(k)),
                "step {step}: {got:?} not within {expect:?}"
            );
            assert_eq!(got.last(), expect.last(), "step {step}");
        }
        assert_eq!(cuts(doc, 1), expect);
    }
}
