//! Canonicalization rules not covered by the published vectors, the streaming
//! API, and bounded memory on large bodies.

use std::io::{self, Write};

use sealgate::wssec::c14n::{
    canonicalize_document, canonicalize_element, C14nError, Canonicalizer, Method,
};
use sealgate::wssec::xml::{Event, Limits, Reader};

fn doc(input: &str, m: &Method) -> String {
    let mut out = Vec::new();
    canonicalize_document(input.as_bytes(), &Limits::default(), m, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn elem(input: &str, m: &Method, local: &str) -> String {
    let mut out = Vec::new();
    canonicalize_element(
        input.as_bytes(),
        &Limits::default(),
        m,
        |e| e.local_name() == local,
        &mut out,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn escaping_and_line_endings() {
    let input = "<a b=\"&lt;&gt;&amp;&quot;'&#9;&#10;&#13;\r\n\">&lt;&gt;&amp;\"'&#13;\r\n\r<![CDATA[<&>]]></a>";
    assert_eq!(
        doc(input, &Method::inclusive()),
        "<a b=\"&lt;>&amp;&quot;'&#x9;&#xA;&#xD; \">&lt;&gt;&amp;\"'&#xD;\n\n&lt;&amp;&gt;</a>"
    );
}

#[test]
fn attribute_and_namespace_order() {
    let input = "<r xmlns:z=\"urn:a\" xmlns:b=\"urn:z\" xmlns=\"urn:d\" b:x=\"1\" z:y=\"2\" z:a=\"3\" c=\"4\" a=\"5\"/>";
    let want = "<r xmlns=\"urn:d\" xmlns:b=\"urn:z\" xmlns:z=\"urn:a\" a=\"5\" c=\"4\" z:a=\"3\" z:y=\"2\" b:x=\"1\"></r>";
    assert_eq!(doc(input, &Method::inclusive()), want);
    assert_eq!(doc(input, &Method::exclusive()), want);
}

#[test]
fn default_namespace_undeclaration() {
    let input = "<a xmlns=\"urn:x\"><b xmlns=\"\"><c xmlns=\"\"/></b><d/></a>";
    let both = "<a xmlns=\"urn:x\"><b xmlns=\"\"><c></c></b><d></d></a>";
    assert_eq!(doc(input, &Method::inclusive()), both);
    assert_eq!(doc(input, &Method::exclusive()), both);
    // As the apex, b's xmlns="" undoes nothing that was rendered.
    assert_eq!(elem(input, &Method::inclusive(), "b"), "<b><c></c></b>");
    assert_eq!(elem(input, &Method::exclusive(), "b"), "<b><c></c></b>");
    // c is unprefixed and under no default: still nothing to undo.
    let nested = "<p:a xmlns:p=\"urn:p\" xmlns=\"urn:x\"><p:b><c xmlns=\"\"/></p:b></p:a>";
    assert_eq!(
        doc(nested, &Method::exclusive()),
        "<p:a xmlns:p=\"urn:p\"><p:b><c></c></p:b></p:a>"
    );
    assert_eq!(
        doc(nested, &Method::inclusive()),
        "<p:a xmlns=\"urn:x\" xmlns:p=\"urn:p\"><p:b><c xmlns=\"\"></c></p:b></p:a>"
    );
}

#[test]
fn exclusive_renders_only_visibly_utilized() {
    let input = concat!(
        "<s:Envelope xmlns:s=\"urn:s\" xmlns:u=\"urn:u\" xmlns:unused=\"urn:x\">",
        "<s:Body u:Id=\"b\"><m:op xmlns:m=\"urn:m\"><m:v u:t=\"1\">q</m:v></m:op></s:Body></s:Envelope>"
    );
    assert_eq!(
        elem(input, &Method::exclusive(), "Body"),
        "<s:Body xmlns:s=\"urn:s\" xmlns:u=\"urn:u\" u:Id=\"b\"><m:op xmlns:m=\"urn:m\"><m:v u:t=\"1\">q</m:v></m:op></s:Body>"
    );
    // Inclusive drags in every ancestor namespace.
    assert_eq!(
        elem(input, &Method::inclusive(), "Body"),
        "<s:Body xmlns:s=\"urn:s\" xmlns:u=\"urn:u\" xmlns:unused=\"urn:x\" u:Id=\"b\"><m:op xmlns:m=\"urn:m\"><m:v u:t=\"1\">q</m:v></m:op></s:Body>"
    );
    // PrefixList: rendered where in scope and not yet rendered; unknown prefixes ignored.
    let m = Method::exclusive().with_prefix_list("unused nope #default");
    assert_eq!(
        elem(input, &m, "op"),
        "<m:op xmlns:m=\"urn:m\" xmlns:unused=\"urn:x\"><m:v xmlns:u=\"urn:u\" u:t=\"1\">q</m:v></m:op>"
    );
}

#[test]
fn redeclared_prefix_is_rendered_again() {
    let input = "<p:a xmlns:p=\"urn:1\"><p:b xmlns:p=\"urn:2\"><p:c xmlns:p=\"urn:1\"/></p:b><p:d xmlns:p=\"urn:1\"/></p:a>";
    let want = "<p:a xmlns:p=\"urn:1\"><p:b xmlns:p=\"urn:2\"><p:c xmlns:p=\"urn:1\"></p:c></p:b><p:d></p:d></p:a>";
    assert_eq!(doc(input, &Method::inclusive()), want);
    assert_eq!(doc(input, &Method::exclusive()), want);
}

#[test]
fn inclusive_subtree_inherits_xml_attributes() {
    let input = "<a xml:lang=\"en\" xml:space=\"preserve\"><b xml:lang=\"fr\"><c xml:base=\"x/\" z=\"1\"/></b></a>";
    assert_eq!(
        elem(input, &Method::inclusive(), "c"),
        "<c z=\"1\" xml:base=\"x/\" xml:lang=\"fr\" xml:space=\"preserve\"></c>"
    );
    assert_eq!(
        elem(input, &Method::exclusive(), "c"),
        "<c z=\"1\" xml:base=\"x/\"></c>"
    );
}

#[test]
fn comments() {
    let input = "<!--a-->\r\n<r><!--b\r\nc-->x</r>\n<!--d--><!--e-->";
    assert_eq!(doc(input, &Method::inclusive()), "<r>x</r>");
    assert_eq!(
        doc(input, &Method::inclusive().with_comments()),
        "<!--a-->\n<r><!--b\nc-->x</r>\n<!--d-->\n<!--e-->"
    );
    assert_eq!(
        elem(input, &Method::exclusive().with_comments(), "r"),
        "<r><!--b\nc-->x</r>"
    );
}

#[test]
fn not_found_and_misuse() {
    let mut out = Vec::new();
    let err = canonicalize_element(
        b"<a/>",
        &Limits::default(),
        &Method::exclusive(),
        |_| false,
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "c14n_not_found");

    // Refusals after the selected subtree still fail the whole call.
    let err = canonicalize_element(
        b"<a><b/><c>&x;</c></a>",
        &Limits::default(),
        &Method::exclusive(),
        |e| e.name() == "b",
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "xml_entity");

    // A subtree canonicalizer must start at a Start event and stop at its end.
    let mut r = Reader::new(b"<a>t<b/></a>", &Limits::default()).unwrap();
    let mut c = Canonicalizer::subtree(Method::exclusive());
    r.next().unwrap();
    let text = r.next().unwrap().unwrap();
    assert!(matches!(
        c.feed(&text, &mut out),
        Err(C14nError::OutsideSubtree)
    ));
}

/// Write sink that counts bytes and keeps nothing.
#[derive(Default)]
struct Counter {
    bytes: usize,
    largest_write: usize,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len();
        self.largest_write = self.largest_write.max(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn soap_with_body(items: usize, text: &str) -> String {
    let mut s = String::from(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header/><s:Body><op xmlns=\"urn:app\">",
    );
    for i in 0..items {
        s.push_str(&format!(
            "<item n=\"{i}\" xmlns:p=\"urn:p{}\"><p:v>{text} &amp; {i}</p:v></item>",
            i % 7
        ));
    }
    s.push_str("</op></s:Body></s:Envelope>");
    s
}

/// Streams the Body through a counting sink; returns (canonical bytes, peak
/// reader buffers, peak canonicalizer buffers, bytes written when half the
/// input had been read).
fn stream_body(input: &str) -> (usize, usize, usize, usize) {
    let limits = Limits {
        max_bytes: 64 << 20,
        ..Limits::default()
    };
    let mut r = Reader::new(input.as_bytes(), &limits).unwrap();
    let mut c: Option<Canonicalizer> = None;
    let mut sink = Counter::default();
    let (mut peak_r, mut peak_c, mut at_half) = (0, 0, None);
    while let Some(ev) = r.next().unwrap() {
        let span_end = match &ev {
            Event::Start(e) => e.span().end,
            Event::End(e) => e.span().end,
            Event::Text(t) | Event::Comment(t) => t.span().end,
        };
        match &mut c {
            None => {
                if matches!(&ev, Event::Start(e) if e.local_name() == "Body") {
                    let mut sub = Canonicalizer::subtree(Method::exclusive());
                    sub.feed(&ev, &mut sink).unwrap();
                    c = Some(sub);
                }
            }
            Some(sub) if !sub.is_done() => sub.feed(&ev, &mut sink).unwrap(),
            Some(_) => {}
        }
        if at_half.is_none() && span_end >= input.len() / 2 {
            at_half = Some(sink.bytes);
        }
        peak_c = peak_c.max(c.as_ref().map_or(0, |c| c.buffered_capacity()));
        let _ = ev;
        peak_r = peak_r.max(r.buffered_capacity());
    }
    (sink.bytes, peak_r, peak_c, at_half.unwrap())
}

#[test]
fn large_body_is_canonicalized_incrementally() {
    let small = soap_with_body(1_000, "value");
    let large = soap_with_body(100_000, "value");
    let (n_small, r_small, c_small, _) = stream_body(&small);
    let (n_large, r_large, c_large, half) = stream_body(&large);
    assert!(n_large > 50 * n_small);
    // Output flowed while reading, not at the end.
    assert!(
        half > n_large / 3,
        "only {half} of {n_large} bytes written by mid-input"
    );
    // Buffers depend on the shape of one element, not on the body's size.
    assert_eq!(r_small, r_large);
    assert_eq!(c_small, c_large);
    assert!(
        r_large < 4096 && c_large < 4096,
        "reader {r_large}, canonicalizer {c_large}"
    );
}

#[test]
fn large_text_nodes_stay_out_of_memory() {
    // Plain text is borrowed from the input; text with CR LF line ends or
    // references goes through a fixed-size chunk buffer.
    let plain = "x".repeat(6 << 20);
    let crlf = format!("{}\r\n", "QUJD".repeat(19)).repeat(80_000);
    let refs = "a&amp;&#x42;<![CDATA[c]]>".repeat(500_000);
    for text in [plain, crlf, refs] {
        let input = soap_with_body(1, &text);
        let (n, peak_r, peak_c, _) = stream_body(&input);
        assert!(n > text.len() / 4, "{n} bytes out");
        assert!(peak_r < 32 << 10, "reader buffered {peak_r} bytes");
        assert!(peak_c < 4096, "canonicalizer buffered {peak_c} bytes");
    }
}

#[test]
fn chunked_text_canonicalizes_like_whole_text() {
    // Long runs split around CRs, references and CDATA must still give the
    // same bytes as the text written out in one piece.
    let body = format!(
        "{}\r\n{}&amp;<![CDATA[{}\r]]>\r{}",
        "a".repeat(700),
        "b".repeat(9000),
        "c".repeat(600),
        "d".repeat(20)
    );
    let input = format!("<r>{body}</r>");
    let want = format!(
        "<r>{}\n{}&amp;{}\n\n{}</r>",
        "a".repeat(700),
        "b".repeat(9000),
        "c".repeat(600),
        "d".repeat(20)
    );
    assert_eq!(doc(&input, &Method::exclusive()), want);
    // Spans of the pieces tile the content exactly.
    let mut r = Reader::new(input.as_bytes(), &Limits::default()).unwrap();
    let mut spans = Vec::new();
    while let Some(ev) = r.next().unwrap() {
        if let Event::Text(t) = ev {
            spans.push(t.span());
        }
    }
    assert!(spans.len() > 2);
    assert_eq!(spans[0].start, 3);
    assert_eq!(spans.last().unwrap().end, input.len() - 4);
    assert!(
        spans.windows(2).all(|w| w[0].end == w[1].start),
        "{spans:?}"
    );
}
