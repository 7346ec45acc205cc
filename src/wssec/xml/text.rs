//! Character data: text, CDATA and references gathered into runs handed out
//! in bounded pieces, line ends normalized, characters checked.

use super::lex::Tok;
use super::{malformed, Reader, Ready, Span, XmlError};

impl<'a> Reader<'a> {
    /// Emits the next chunk of the current run of text, CDATA and references.
    /// Long runs without CR, and a run that is one short piece (most text
    /// between tags), are handed out borrowed from the input; otherwise short
    /// pieces, resolved references and normalized line ends are gathered in
    /// `st.text`, flushed every `CHUNK` bytes, so memory stays constant
    /// whatever the text size. Returns `None` when the run ended with nothing
    /// left to emit.
    pub(super) fn text_step(&mut self) -> Result<Option<Ready<'a>>, XmlError> {
        const BORROW: usize = 512;
        const CHUNK: usize = 8 << 10;
        self.st.text.clear();
        let mut start = None;
        let mut end = 0;
        // A short piece not copied yet: if nothing joins it, it goes out as is.
        let mut held: Option<&'a str> = None;
        loop {
            if self.run.rest.is_empty() {
                let (ev, span) = match self.pending.take() {
                    Some(p) => p,
                    None => self.read_raw()?,
                };
                let at = span.start;
                let (cr, content, offset) = match ev {
                    Tok::Text(t) => (check_text(t, at)?, t, 0),
                    Tok::CData(c) => (check_chars(c, at)?, c, "<![CDATA[".len()),
                    Tok::Ref(r) => {
                        // A resolved reference is never line-end normalized (`&#xD;` stays CR).
                        let c = resolve_ref(r, at)?;
                        self.run_grow(c.len_utf8(), at)?;
                        if let Some(h) = held.take() {
                            self.st.text.push_str(h);
                        }
                        self.st.text.push(c);
                        start.get_or_insert(at);
                        end = span.end;
                        if self.st.text.len() >= CHUNK {
                            break;
                        }
                        continue;
                    }
                    other => {
                        self.pending = Some((other, span));
                        self.run.active = false;
                        break;
                    }
                };
                self.run_grow(content.len(), at)?;
                self.run.rest = content;
                self.run.pos = span.start;
                self.run.offset = span.start + offset;
                self.run.end = span.end;
                self.run.cr = cr;
                if content.is_empty() {
                    start.get_or_insert(span.start);
                    end = span.end;
                    continue;
                }
            }
            let rest = self.run.rest;
            let n = match self.run.cr {
                true => memchr::memchr(b'\r', rest.as_bytes()).unwrap_or(rest.len()),
                false => rest.len(),
            };
            if n >= BORROW {
                if !self.st.text.is_empty() || held.is_some() {
                    break;
                }
                let from = self.run.pos;
                let seg = rest.get(..n).unwrap_or_default();
                self.consume(n);
                return Ok(Some(Ready::Text(
                    Span {
                        start: from,
                        end: self.run.pos,
                    },
                    Some(seg),
                )));
            }
            start.get_or_insert(self.run.pos);
            let seg = rest.get(..n).unwrap_or_default();
            let cr_follows = rest.get(n..).is_some_and(|r| r.starts_with('\r'));
            if self.st.text.is_empty() && held.is_none() && !cr_follows {
                held = Some(seg);
            } else {
                if let Some(h) = held.take() {
                    self.st.text.push_str(h);
                }
                self.st.text.push_str(seg);
            }
            let mut used = n;
            if cr_follows {
                self.st.text.push('\n');
                used += if rest.get(n + 1..).is_some_and(|r| r.starts_with('\n')) {
                    2
                } else {
                    1
                };
            }
            self.consume(used);
            end = self.run.pos;
            if self.st.text.len() >= CHUNK {
                break;
            }
        }
        // `held` is taken whenever anything joins it, so it is then alone.
        Ok(start.map(|start| Ready::Text(Span { start, end }, held)))
    }

    fn consume(&mut self, n: usize) {
        self.run.rest = self.run.rest.get(n..).unwrap_or_default();
        self.run.offset += n;
        self.run.pos = if self.run.rest.is_empty() {
            self.run.end
        } else {
            self.run.offset
        };
    }

    fn run_grow(&mut self, n: usize, at: usize) -> Result<(), XmlError> {
        self.run.len += n;
        if self.run.len > self.limits.max_text_len {
            return Err(XmlError::TextTooLong {
                at,
                limit: self.limits.max_text_len,
            });
        }
        Ok(())
    }
}

/// Refuses characters outside XML 1.0's `Char`; returns whether a CR is present.
pub(super) fn check_chars(s: &str, at: usize) -> Result<bool, XmlError> {
    scan_chars(s.as_bytes(), at, false)
}

/// `check_chars` for character data, which may not hold `]]>` either.
pub(super) fn check_text(s: &str, at: usize) -> Result<bool, XmlError> {
    scan_chars(s.as_bytes(), at, true)
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `w` is zero (exact, not just likely).
fn has_zero(w: u64) -> bool {
    w.wrapping_sub(ONES) & !w & HIGHS != 0
}

/// Whether any byte of `w` is below 0x20 (exact for bounds up to 0x80).
fn has_control(w: u64) -> bool {
    w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0
}

/// Which bytes `scan_chars` must look at one by one: 1 for a control
/// character (TAB, LF and CR among them) and the lead byte of U+FFFE and
/// U+FFFF, 2 for `]` (only text may not hold `]]>`).
const LOOK: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = 1;
        c += 1;
    }
    t[0xEF] = 1;
    t[b']' as usize] = 2;
    t
};

fn scan_chars(b: &[u8], at: usize, text: bool) -> Result<bool, XmlError> {
    let look = if text { 3 } else { 1 };
    let mut cr = false;
    let mut i = 0;
    while i < b.len() {
        // Eight bytes at once while none needs a look: no control
        // character, no lead byte of U+FFFE/U+FFFF, no `]` in text.
        while let Some(w) = b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            let w = u64::from_ne_bytes(w);
            if has_control(w)
                || has_zero(w ^ (ONES * 0xEF))
                || (text && has_zero(w ^ (ONES * u64::from(b']'))))
            {
                break;
            }
            i += 8;
        }
        let stop = (i + 8).min(b.len());
        while i < stop {
            let c = b.get(i).copied().unwrap_or(b' ');
            if LOOK[usize::from(c)] & look == 0 {
                i += 1;
                continue;
            }
            match c {
                b'\r' => cr = true,
                b'\t' | b'\n' => {}
                0..=0x1F => return Err(XmlError::InvalidChar { at }),
                // U+FFFE and U+FFFF are EF BF BE / EF BF BF.
                0xEF if b.get(i + 1) == Some(&0xBF)
                    && matches!(b.get(i + 2), Some(0xBE | 0xBF)) =>
                {
                    return Err(XmlError::InvalidChar { at });
                }
                b']' if text && b.get(i + 1..i + 3) == Some(b"]>") => {
                    return Err(malformed(at, "']]>' in text"));
                }
                _ => {}
            }
            i += 1;
        }
    }
    Ok(cr)
}

pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Resolves the name inside `&...;`: the five predefined entities or a character reference.
pub(super) fn resolve_ref(name: &str, at: usize) -> Result<char, XmlError> {
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let Some(num) = name.strip_prefix('#') else {
                return Err(XmlError::Entity { at });
            };
            let (digits, radix) = match num.strip_prefix('x') {
                Some(h) => (h, 16),
                None => (num, 10),
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return Err(malformed(at, "bad character reference"));
            }
            u32::from_str_radix(digits, radix)
                .ok()
                .and_then(char::from_u32)
                .filter(|&c| is_xml_char(c))
                .ok_or(XmlError::InvalidChar { at })?
        }
    };
    Ok(c)
}

/// Appends `s` with CR LF and lone CR turned into LF (XML 1.0 §2.11).
pub(super) fn push_eol_normalized(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.find('\r') {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('\n') {
            rest = r;
        }
    }
    out.push_str(rest);
}

/// Appends the normalized value of a raw attribute value: references resolved,
/// literal whitespace (after line-end normalization) turned into spaces.
pub(super) fn push_attr_value(out: &mut String, raw: &str, at: usize) -> Result<(), XmlError> {
    let mut rest = raw;
    // Searched by bytes (all are ASCII): a search by chars decodes each one.
    while let Some(i) = rest
        .bytes()
        .position(|b| matches!(b, b'&' | b'<' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        rest = match rest.as_bytes()[i] {
            b'<' => return Err(malformed(at, "'<' in attribute value")),
            b'&' => {
                let semi = tail
                    .find(';')
                    .ok_or_else(|| malformed(at, "unterminated reference"))?;
                out.push(resolve_ref(&tail[..semi], at)?);
                &tail[semi + 1..]
            }
            b'\r' => {
                out.push(' ');
                tail.strip_prefix('\n').unwrap_or(tail)
            }
            _ => {
                out.push(' ');
                tail
            }
        };
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `check_chars`/`check_text` must say, by characters.
    fn by_chars(s: &str, text: bool) -> Result<bool, ()> {
        if !s.chars().all(is_xml_char) || (text && s.contains("]]>")) {
            return Err(());
        }
        Ok(s.contains('\r'))
    }

    /// The word-at-a-time pass must never step over what a byte-by-byte
    /// reading refuses: every piece at every offset around word boundaries,
    /// and random mixtures of them.
    #[test]
    fn the_word_at_a_time_check_agrees_with_reading_by_characters() {
        let pieces = [
            "a",
            "\u{1}",
            "\u{1f}",
            "\t",
            "\n",
            "\r",
            "]",
            "]]>",
            "]]",
            ">",
            "\u{FFFE}",
            "\u{FFFF}",
            "\u{FFFD}",
            "\u{EFFF}",
            "ü",
            "€",
            "\u{10000}",
            " ",
            "\u{7f}",
        ];
        let mut cases: Vec<String> = Vec::new();
        for piece in pieces {
            for before in 0..20 {
                for after in [0, 1, 7, 9] {
                    cases.push(format!(
                        "{}{piece}{}",
                        "x".repeat(before),
                        "y".repeat(after)
                    ));
                }
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            cases.push(s);
        }
        for s in &cases {
            for text in [false, true] {
                let got = scan_chars(s.as_bytes(), 0, text).map_err(|_| ());
                assert_eq!(got, by_chars(s, text), "{s:?} as text: {text}");
            }
        }
    }
}
