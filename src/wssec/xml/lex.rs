//! The tokenizer under the reader: it tells markup and character data
//! apart in input already validated as UTF-8, and finds where each piece
//! ends. Names, values, characters and structure are the reader's to judge.
//!
//! Markup that only leads to a refusal (a DOCTYPE, a processing instruction)
//! is reported as soon as it is recognised, however it ends, so a window of a
//! message that ends inside one is refused the same way.

use memchr::{memchr, memchr2, memchr3, memmem};

use super::{is_space, malformed, XmlError};

/// One piece of the input. Text borrows the input as is (references and
/// line ends are the reader's to resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// `<?xml ...?>`: the pseudo-attributes' text after `<?xml`.
    Decl(&'a str),
    Pi,
    Doctype,
    /// A start tag: its name, and the text between name and `>`.
    Start {
        name: &'a str,
        attrs: &'a str,
    },
    /// An empty-element tag, as `Start` up to its `/>`. A variant of its
    /// own, not a flag beside the name: a token moves through memory on
    /// every read, and a byte beside the tag is copied in unaligned pieces
    /// that stall on the stores that wrote them.
    Empty {
        name: &'a str,
        attrs: &'a str,
    },
    End(&'a str),
    Comment(&'a str),
    Text(&'a str),
    CData(&'a str),
    /// `&name;`: the name.
    Ref(&'a str),
    Eof,
}

/// Tokens of one input, read in order.
pub(super) struct Lexer<'a> {
    s: &'a str,
    pos: usize,
    /// Offset of `s` in the message, for the offsets in errors.
    base: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(s: &'a str, base: usize) -> Lexer<'a> {
        Lexer { s, pos: 0, base }
    }

    /// A lexer of `s` (at `base` in the message) that goes on from byte `pos`.
    pub(super) fn at(s: &'a str, base: usize, pos: usize) -> Lexer<'a> {
        Lexer { s, pos, base }
    }

    /// The whole text this lexer reads.
    pub(super) fn text(&self) -> &'a str {
        self.s
    }

    /// Offset in the message where the next token starts.
    pub(super) fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes().get(self.pos..).unwrap_or_default()
    }

    fn str(&self, from: usize, to: usize) -> &'a str {
        self.s.get(from..to).unwrap_or_default()
    }

    fn fail(&self, detail: &str) -> XmlError {
        malformed(self.offset(), detail)
    }

    #[inline(always)]
    pub(super) fn next(&mut self) -> Result<Tok<'a>, XmlError> {
        let rest = self.bytes();
        let p = self.pos;
        let tok = match rest.first() {
            None => return Ok(Tok::Eof),
            Some(b'<') => return self.markup(rest),
            Some(b'&') => {
                // A reference ends at `;`, before any other markup.
                match rest
                    .get(1..)
                    .and_then(|r| memchr3(b';', b'<', b'&', r))
                    .map(|k| k + 1)
                {
                    Some(k) if rest.get(k) == Some(&b';') => {
                        self.pos = p + k + 1;
                        Tok::Ref(self.str(p + 1, p + k))
                    }
                    _ => return Err(self.fail("unterminated reference")),
                }
            }
            Some(_) => {
                let k = memchr2(b'<', b'&', rest).unwrap_or(rest.len());
                self.pos = p + k;
                Tok::Text(self.str(p, p + k))
            }
        };
        Ok(tok)
    }

    fn markup(&mut self, rest: &'a [u8]) -> Result<Tok<'a>, XmlError> {
        let p = self.pos;
        // Where `close` is found after `skip` bytes: the content between, and
        // the position past `close`.
        let until = |skip: usize, close: &[u8]| {
            let body = rest.get(skip..)?;
            memmem::find(body, close).map(|k| (p + skip, p + skip + k, p + skip + k + close.len()))
        };
        if rest.starts_with(b"<!--") {
            // `--` may only end a comment (XML 1.0 §2.5).
            let (from, to, _) = until(4, b"--").ok_or_else(|| self.fail("unclosed comment"))?;
            if self.s.as_bytes().get(to + 2) != Some(&b'>') {
                return Err(self.fail("'--' in a comment"));
            }
            self.pos = to + 3;
            return Ok(Tok::Comment(self.str(from, to)));
        }
        if rest.starts_with(b"<![CDATA[") {
            let (from, to, end) = until(9, b"]]>").ok_or_else(|| self.fail("unclosed CDATA"))?;
            self.pos = end;
            return Ok(Tok::CData(self.str(from, to)));
        }
        if rest.starts_with(b"<!")
            && rest
                .get(2..9)
                .is_some_and(|d| d.eq_ignore_ascii_case(b"DOCTYPE"))
        {
            return Ok(Tok::Doctype);
        }
        if rest.starts_with(b"<!") {
            return Err(self.fail("markup declaration outside a DTD"));
        }
        if rest.starts_with(b"<?") {
            let target_end = rest
                .iter()
                .skip(2)
                .position(|&b| is_space(b) || b == b'?')
                .map_or(rest.len(), |k| k + 2);
            if rest.get(2..target_end) != Some(b"xml") {
                return Ok(Tok::Pi);
            }
            if rest.get(5) == Some(&b'?') && rest.get(6) != Some(&b'>') {
                return Err(self.fail("malformed XML declaration"));
            }
            let (from, to, end) =
                until(5, b"?>").ok_or_else(|| self.fail("unclosed XML declaration"))?;
            self.pos = end;
            return Ok(Tok::Decl(self.str(from, to)));
        }
        if rest.starts_with(b"</") {
            // A quote is no part of a name: the tag is refused there.
            let name_end = rest
                .iter()
                .skip(2)
                .position(|&b| is_space(b) || matches!(b, b'>' | b'"' | b'\''))
                .map_or(rest.len(), |k| k + 2);
            let mut i = name_end;
            while rest.get(i).copied().is_some_and(is_space) {
                i += 1;
            }
            if rest.get(i) != Some(&b'>') {
                return Err(self.fail("malformed end tag"));
            }
            self.pos = p + i + 1;
            return Ok(Tok::End(self.str(p + 2, p + name_end)));
        }
        let name_end = rest
            .iter()
            .skip(1)
            .position(|&b| is_space(b) || b == b'>' || b == b'/')
            .map_or(rest.len(), |k| k + 1);
        // The tag ends at the first `>` outside quotes (a quote in the name
        // too opens one: the name is refused later, whatever follows).
        let mut i = 1;
        let gt = loop {
            let Some(k) = rest.get(i..).and_then(|r| memchr3(b'>', b'"', b'\'', r)) else {
                return Err(self.fail("unclosed tag"));
            };
            let at = i + k;
            match rest.get(at).copied() {
                Some(b'>') => break at,
                Some(q) => match rest.get(at + 1..).and_then(|r| memchr(q, r)) {
                    Some(c) => i = at + 1 + c + 1,
                    None => return Err(self.fail("unclosed attribute value")),
                },
                None => return Err(self.fail("unclosed tag")),
            }
        };
        let empty = gt > name_end && rest.get(gt - 1) == Some(&b'/');
        let attrs_end = if empty { gt - 1 } else { gt };
        self.pos = p + gt + 1;
        let name = self.str(p + 1, p + name_end);
        let attrs = self.str(p + name_end, p + attrs_end);
        Ok(if empty {
            Tok::Empty { name, attrs }
        } else {
            Tok::Start { name, attrs }
        })
    }
}

/// The attributes of a start tag (or the pseudo-attributes of an XML
/// declaration): `(name, raw value)` pairs, each after whitespace
/// (XML 1.0 §3.1: `<r a="1"b="2"/>` is not XML).
pub(super) struct Attrs<'a> {
    s: &'a str,
    i: usize,
    at: usize,
}

impl<'a> Attrs<'a> {
    /// `at` is where the tag starts, for errors.
    pub(super) fn new(s: &'a str, at: usize) -> Attrs<'a> {
        Attrs { s, i: 0, at }
    }

    fn skip_space(&mut self) -> bool {
        let b = self.s.as_bytes();
        let from = self.i;
        while b.get(self.i).copied().is_some_and(is_space) {
            self.i += 1;
        }
        self.i > from
    }

    fn attribute(&mut self) -> Result<(&'a str, &'a str), XmlError> {
        let b = self.s.as_bytes();
        let from = self.i;
        while b
            .get(self.i)
            .is_some_and(|&c| !is_space(c) && c != b'=' && c != b'"' && c != b'\'')
        {
            self.i += 1;
        }
        let name = self.s.get(from..self.i).unwrap_or_default();
        if name.is_empty() {
            return Err(malformed(self.at, "attribute without a name"));
        }
        self.skip_space();
        if b.get(self.i) != Some(&b'=') {
            return Err(malformed(self.at, "attribute without a value"));
        }
        self.i += 1;
        self.skip_space();
        let q = match b.get(self.i).copied() {
            Some(q @ (b'"' | b'\'')) => q,
            _ => return Err(malformed(self.at, "attribute value not quoted")),
        };
        let start = self.i + 1;
        let len = b
            .get(start..)
            .and_then(|r| memchr(q, r))
            .ok_or_else(|| malformed(self.at, "unclosed attribute value"))?;
        self.i = start + len + 1;
        Ok((name, self.s.get(start..start + len).unwrap_or_default()))
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(&'a str, &'a str), XmlError>;

    fn next(&mut self) -> Option<Self::Item> {
        let spaced = self.skip_space();
        if self.i >= self.s.len() {
            return None;
        }
        if !spaced {
            self.i = self.s.len();
            return Some(Err(malformed(
                self.at,
                "attributes not separated by whitespace",
            )));
        }
        let r = self.attribute();
        if r.is_err() {
            self.i = self.s.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token as both readings can state it: kind, content, span.
    type Piece = (&'static str, String, usize, usize);

    /// Our reading, or the detail of our refusal.
    fn ours(s: &str) -> Result<Vec<Piece>, String> {
        let mut lx = Lexer::new(s, 0);
        let mut out = Vec::new();
        loop {
            let from = lx.offset();
            let t = lx.next().map_err(|e| match e {
                XmlError::Malformed { detail, .. } => detail,
                other => other.to_string(),
            })?;
            let to = lx.offset();
            let (kind, content) = match t {
                Tok::Eof => return Ok(out),
                // Refused as soon as seen: nothing after it matters.
                Tok::Pi | Tok::Doctype => return Err("refused markup".into()),
                Tok::Decl(d) => ("decl", d.to_string()),
                Tok::Start { name, attrs } => ("start", format!("{name}{attrs}")),
                Tok::Empty { name, attrs } => ("empty", format!("{name}{attrs}")),
                Tok::End(n) => ("end", n.to_string()),
                Tok::Comment(c) => ("comment", c.to_string()),
                Tok::Text(t) => ("text", t.to_string()),
                Tok::CData(c) => ("cdata", c.to_string()),
                Tok::Ref(r) => ("ref", r.to_string()),
            };
            out.push((kind, content, from, to));
        }
    }

    fn theirs(s: &str) -> Result<Vec<Piece>, usize> {
        use quick_xml::events::Event as Q;
        let mut r = quick_xml::Reader::from_str(s);
        let cfg = r.config_mut();
        cfg.check_comments = true;
        cfg.check_end_names = false;
        cfg.allow_unmatched_ends = true;
        cfg.expand_empty_elements = false;
        cfg.trim_text(false);
        fn text(b: &str) -> String {
            b.to_string()
        }
        let mut out = Vec::new();
        loop {
            let from = r.buffer_position() as usize;
            let ev = r.read_event().map_err(|_| r.error_position() as usize)?;
            let to = r.buffer_position() as usize;
            let (kind, content) = match ev {
                Q::Eof => return Ok(out),
                Q::PI(_) | Q::DocType(_) => return Err(from),
                Q::Decl(d) => ("decl", text(d.get(3..).unwrap_or_default())),
                Q::Start(e) => ("start", text(&e)),
                Q::Empty(e) => ("empty", text(&e)),
                Q::End(e) => ("end", text(e.name().as_ref())),
                Q::Comment(c) => ("comment", text(&c)),
                Q::Text(t) => ("text", text(&t)),
                Q::CData(c) => ("cdata", text(&c)),
                Q::GeneralRef(g) => ("ref", text(&g)),
            };
            out.push((kind, content, from, to));
        }
    }

    /// Inputs: every conformance vector and interop message, and copies of
    /// them broken at many places with the bytes markup turns on.
    fn corpus() -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(s) = std::fs::read_to_string(&p) {
                    out.push(s);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"),
            &mut files,
        );
        assert!(files.len() > 40, "the vectors are missing");
        files.retain(|f| !f.starts_with('\u{feff}'));
        let marks = [
            "<", ">", "&", ";", "\"", "'", "/", "=", "!", "?", "-", "]", " ", "",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = files.clone();
        for f in &files {
            for _ in 0..300 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % (f.len() as u64 + 1)) as usize;
                let Some(at) = (at..=f.len()).find(|&i| f.is_char_boundary(i)) else {
                    continue;
                };
                let mark = marks[(seed >> 40) as usize % marks.len()];
                let mut end = at;
                if seed & 1 == 0 {
                    // Replace one character instead of inserting.
                    end = (at + 1..=f.len())
                        .find(|&i| f.is_char_boundary(i))
                        .unwrap_or(f.len());
                }
                out.push(format!("{}{mark}{}", &f[..at], &f[end..]));
            }
        }
        for s in [
            "<a/>",
            "<a b='1'/>",
            "<a b = \"1\" />",
            "<a\tb=\"x>y\"\nc='\"'></a >",
            "<!----><a/>",
            "<![CDATA[]]>",
            "<![CDATA[a]b]]c]]>",
            "&amp;&#x41;&#65;",
            "<?xml version='1.0'?><a/>",
            "<a b=\"1\"c=\"2\"/>",
            "<!-- a --->",
            "<!-- a -- b -->",
            "<a b=\"1/>",
            "<a",
            "</a",
            "&amp",
            "&a<b>;",
            "&a&b;",
            "<a></a b>",
            "<a></a\t>",
            "<?xml?><a/>",
            "<?xml? version='1.0'?><a/>",
            "<?xml-stylesheet href='a'?><a/>",
        ] {
            out.push(s.to_string());
        }
        out
    }

    /// What our tokenizer reads, quick-xml reads the same way: every token
    /// with its kind, content and span. Where the two differ, ours is the
    /// stricter: it refuses, and only for what XML 1.0 does not allow.
    #[test]
    fn the_tokenizer_reads_as_quick_xml_does_or_refuses() {
        // Our refusals of what quick-xml reads, each against the grammar:
        let stricter_by_design = [
            "malformed end tag", // §3.1: `</` Name S? `>`, not `</a b>`
        ];
        let mut stricter = std::collections::BTreeMap::<String, usize>::new();
        for s in corpus() {
            match (ours(&s), theirs(&s)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{s:?}"),
                (Ok(_), Err(at)) => panic!(
                    "only ours reads {s:?}: quick-xml fails at {at}, at {:?}",
                    s.get(at.saturating_sub(40)..(at + 40).min(s.len()))
                ),
                (Err(why), Ok(_)) => {
                    assert!(
                        stricter_by_design.contains(&why.as_str()),
                        "only quick-xml reads {s:?} (ours: {why})"
                    );
                    *stricter.entry(why).or_default() += 1;
                }
                (Err(_), Err(_)) => {}
            }
        }
        eprintln!("stricter: {stricter:?}");
        // The handwritten cases hold one of each.
        assert_eq!(stricter.len(), stricter_by_design.len(), "{stricter:?}");
    }
}
