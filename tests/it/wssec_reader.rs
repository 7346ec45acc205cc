//! The hardened reader: what it refuses, hostile input, and what events carry.

use std::time::{Duration, Instant};

use sealgate::wssec::xml::{Event, Limits, Reader, XmlError, XML_NS};

/// Reads a whole document, returning the first refusal.
fn read_all(input: &[u8], limits: &Limits) -> Result<usize, XmlError> {
    let mut r = Reader::new(input, limits)?;
    let mut n = 0;
    while r.next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

#[track_caller]
fn refused(input: impl AsRef<[u8]>, reason: &str) {
    refused_with(input, &Limits::default(), reason);
}

#[track_caller]
fn refused_with(input: impl AsRef<[u8]>, limits: &Limits, reason: &str) {
    let input = input.as_ref();
    match read_all(input, limits) {
        Ok(_) => panic!(
            "accepted: {}",
            String::from_utf8_lossy(&input[..input.len().min(200)])
        ),
        Err(e) => assert_eq!(e.reason(), reason, "{e}"),
    }
}

#[track_caller]
fn accepted(input: &str) {
    if let Err(e) = read_all(input.as_bytes(), &Limits::default()) {
        panic!("refused {input:?}: {e}");
    }
}

fn attack(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/xml-attacks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

// --- Refusals -------------------------------------------------------------------

#[test]
fn doctype_and_entity_declarations() {
    refused("<!DOCTYPE a><a/>", "xml_doctype");
    refused("<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>", "xml_doctype");
    refused(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE a SYSTEM \"http://x/\"><a/>",
        "xml_doctype",
    );
    refused("<a><!ENTITY e \"x\"></a>", "xml_malformed");
}

#[test]
fn processing_instructions() {
    refused(
        "<?xml-stylesheet href=\"a\"?><a/>",
        "xml_processing_instruction",
    );
    refused("<a><?php echo 1 ?></a>", "xml_processing_instruction");
    refused("<a/><?pi?>", "xml_processing_instruction");
    // An XML declaration anywhere but at the start is a (reserved) PI.
    refused(" <?xml version=\"1.0\"?><a/>", "xml_processing_instruction");
    refused("<a/><?xml version=\"1.0\"?>", "xml_processing_instruction");
}

#[test]
fn xml_declaration_and_encodings() {
    accepted("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>");
    accepted("<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>\n<a/>");
    accepted("<?xml version='1.0'?><a/>");
    refused(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
        "xml_encoding",
    );
    refused(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a/>",
        "xml_encoding",
    );
    refused("<?xml version=\"1.1\"?><a/>", "xml_version");

    // UTF-8 BOM skipped; spans still count from the start of the input.
    let input = b"\xEF\xBB\xBF<a/>";
    let mut r = Reader::new(input, &Limits::default()).unwrap();
    match r.next().unwrap() {
        Some(Event::Start(e)) => assert_eq!((e.span().start, e.span().end), (3, 7)),
        other => panic!("{other:?}"),
    }

    // A second one is a character before the root (U+FEFF is only a BOM
    // as the first character): refused.
    refused(b"\xEF\xBB\xBF\xEF\xBB\xBF<a/>", "xml_malformed");

    let utf16le: Vec<u8> = "<a/>"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let utf16be: Vec<u8> = "<a/>"
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    refused([&[0xFF, 0xFE][..], &utf16le].concat(), "xml_not_utf8");
    refused([&[0xFE, 0xFF][..], &utf16be].concat(), "xml_not_utf8");
    refused(&utf16le, "xml_not_utf8");
    refused(&utf16be, "xml_not_utf8");
    refused(b"<a>\xC3\x28</a>", "xml_not_utf8");
    refused(b"<a b=\"\xFF\"/>", "xml_not_utf8");
    refused(b"<a\xFF/>", "xml_not_utf8");
    refused(b"<a><!-- \xFE --></a>", "xml_not_utf8");
}

#[test]
fn entity_and_character_references() {
    refused("<a>&foo;</a>", "xml_entity");
    refused("<a b=\"&foo;\"/>", "xml_entity");
    refused("<a>&amp</a>", "xml_malformed");
    refused("<a>&#0;</a>", "xml_invalid_char");
    refused("<a>&#xD800;</a>", "xml_invalid_char");
    refused("<a>&#x110000;</a>", "xml_invalid_char");
    refused("<a>&#x+41;</a>", "xml_malformed");
    refused("<a>\u{1}</a>", "xml_invalid_char");
    refused("<a>\u{FFFE}</a>", "xml_invalid_char");
    accepted(
        "<a b=\"&lt;&gt;&amp;&apos;&quot;&#65;&#x42;\">&lt;&gt;&amp;&apos;&quot;&#65;&#x1F600;</a>",
    );
}

#[test]
fn duplicate_attributes() {
    refused("<a b=\"1\" b=\"2\"/>", "xml_duplicate_attribute");
    refused(
        "<a xmlns:x=\"u\" xmlns:x=\"u\"/>",
        "xml_duplicate_attribute",
    );
    refused("<a xmlns=\"u\" xmlns=\"v\"/>", "xml_duplicate_attribute");
    // Same expanded name through two prefixes bound to one namespace.
    refused(
        "<a xmlns:x=\"urn:n\" xmlns:y=\"urn:n\" x:b=\"1\" y:b=\"2\"/>",
        "xml_duplicate_attribute",
    );
    refused(
        "<r xmlns:x=\"urn:n\"><a xmlns:y=\"urn:n\" x:b=\"1\" y:b=\"2\"/></r>",
        "xml_duplicate_attribute",
    );
    // An unprefixed attribute is in no namespace, even under a default namespace.
    accepted("<a xmlns=\"urn:n\" xmlns:x=\"urn:n\" b=\"1\" x:b=\"2\"/>");
    accepted("<a xmlns:x=\"urn:n\" xmlns:y=\"urn:m\" x:b=\"1\" y:b=\"2\"/>");
}

#[test]
fn structure() {
    refused("<a><b></a>", "xml_malformed");
    refused("<a>", "xml_malformed");
    refused("</a>", "xml_malformed");
    refused("", "xml_malformed");
    refused("  <!-- only a comment -->", "xml_malformed");
    refused("<a/><b/>", "xml_malformed");
    refused("<a/>text", "xml_malformed");
    refused("text<a/>", "xml_malformed");
    refused("<a/>&amp;", "xml_malformed");
    refused("<a/><![CDATA[x]]>", "xml_malformed");
    refused("<a>]]></a>", "xml_malformed");
    refused("<a><!-- a -- b --></a>", "xml_malformed");
    refused("<a b=\"<\"/>", "xml_malformed");
    refused("<a b/>", "xml_malformed");
    refused("<a:b:c/>", "xml_malformed");
    refused("<1a/>", "xml_malformed");
    accepted("\n<!-- before -->\n<a/>\n<!-- after -->\n\n");
}

#[test]
fn attributes_need_whitespace_and_names_need_name_characters() {
    // What a conforming parser refuses, the verifier refuses too: a lenient
    // reading here and a strict one upstream would see different documents.
    refused("<r a=\"1\"b=\"2\"/>", "xml_malformed");
    refused("<r a='1'b='2'></r>", "xml_malformed");
    accepted("<r a=\"1\" b='2'\n\tc=\"3\"/>");
    accepted("<r a=\"x'y\" b='x\"y'/>");
    for bad in [
        "<\u{B7}a/>",
        "<-a/>",
        "<.a/>",
        "<a\u{2028}b/>",
        "<r \u{300}x=\"1\"/>",
        "<a\u{FFFE}/>",
        // A colon only between two NCNames.
        "<a: xmlns:a=\"urn:a\"/>",
        "<:a/>",
        "<a:b:c xmlns:a=\"urn:a\"/>",
        "<r a:=\"1\"/>",
        "<r :a=\"1\"/>",
        "<a:\u{E9}: xmlns:a=\"urn:a\"/>",
    ] {
        refused(bad, "xml_malformed");
    }
    for good in [
        "<\u{E9}t\u{E9}/>",
        "<a\u{B7}b/>",
        "<\u{4E2D}\u{6587}/>",
        "<a-b.c_d/>",
    ] {
        accepted(good);
    }
}

#[test]
fn namespaces() {
    refused("<x:a/>", "xml_undeclared_prefix");
    refused("<a x:b=\"1\"/>", "xml_undeclared_prefix");
    refused("<a><x:b xmlns:x=\"u\"/><x:c/></a>", "xml_undeclared_prefix");
    refused("<a xmlns:x=\"\"/>", "xml_invalid_namespace");
    refused("<a xmlns:xmlns=\"u\"/>", "xml_invalid_namespace");
    refused(
        format!("<a xmlns:x=\"{XML_NS}\"/>"),
        "xml_invalid_namespace",
    );
    refused("<a xmlns:xml=\"urn:other\"/>", "xml_invalid_namespace");
    refused("<xmlns:a/>", "xml_invalid_namespace");
    accepted(&format!("<a xmlns:xml=\"{XML_NS}\" xml:lang=\"en\"/>"));
    accepted("<a xml:lang=\"en\" xmlns=\"u\"><b xmlns=\"\"/></a>");
}

#[test]
fn limits() {
    let small = Limits {
        max_bytes: 100,
        max_depth: 3,
        max_attributes: 3,
        max_ns_per_element: 2,
        max_ns_in_scope: 3,
        max_name_len: 8,
        max_text_len: 10,
        max_attr_value_len: 5,
        deadline: None,
    };
    refused_with(
        format!("<a>{}</a>", "x".repeat(100)),
        &small,
        "xml_too_large",
    );
    refused_with("<a><b><c><d/></c></b></a>", &small, "xml_too_deep");
    refused_with(
        "<a b='' c='' d='' e=''/>",
        &small,
        "xml_too_many_attributes",
    );
    refused_with(
        "<a xmlns:x='u' xmlns:y='u' xmlns='u'/>",
        &small,
        "xml_too_many_namespaces",
    );
    refused_with(
        "<a xmlns:x='u' xmlns:y='u'><b xmlns:z='u' xmlns:w='u'/></a>",
        &small,
        "xml_too_many_namespaces",
    );
    refused_with("<abcdefghi/>", &small, "xml_name_too_long");
    refused_with("<a abcdefghi='1'/>", &small, "xml_name_too_long");
    refused_with("<a>0123456789a</a>", &small, "xml_text_too_long");
    refused_with(
        "<a>0123<![CDATA[45678]]>&amp;&lt;</a>",
        &small,
        "xml_text_too_long",
    );
    refused_with("<a><!--0123456789a--></a>", &small, "xml_text_too_long");
    refused_with("<a b='123456'/>", &small, "xml_attribute_too_long");
    read_all(b"<a b='12345'><b><c>0123456789</c></b></a>", &small).unwrap();
}

// --- Hostile input --------------------------------------------------------------

#[test]
fn attack_vectors_are_refused() {
    for f in [
        "xmlbomb.xml",
        "xmlbomb2.xml",
        "quadratic.xml",
        "cyclic.xml",
        "external.xml",
        "external_file.xml",
        "dtd.xml",
    ] {
        let start = Instant::now();
        refused(attack(f), "xml_doctype");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{f} took too long"
        );
    }
    refused(attack("simple-ns.xml"), "xml_processing_instruction");
    read_all(&attack("simple.xml"), &Limits::default()).unwrap();
}

#[test]
fn deep_nesting_is_refused_early() {
    let input = "<a>".repeat(100_000);
    let start = Instant::now();
    let err = read_all(input.as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "xml_too_deep");
    // Stopped at the 101st start tag, not after scanning the rest.
    assert_eq!(
        err,
        XmlError::TooDeep {
            at: 300,
            limit: 100
        }
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn many_attributes_are_refused() {
    let mut input = String::from("<a");
    for i in 0..50_000 {
        input.push_str(&format!(" a{i}=\"v\""));
    }
    input.push_str("/>");
    let start = Instant::now();
    refused(&input, "xml_too_many_attributes");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn huge_text_node_is_refused() {
    let input = format!("<a>{}</a>", "x".repeat(10 << 20));
    let limits = Limits {
        max_bytes: 32 << 20,
        max_text_len: 1 << 20,
        ..Limits::default()
    };
    refused_with(&input, &limits, "xml_text_too_long");
    refused(&input, "xml_text_too_long"); // default text limit is 8 MiB
                                          // Text split by references and CDATA counts as one node.
    let split = format!("<a>{}</a>", "xxxxxxxxx&amp;<![CDATA[x]]>".repeat(100_000));
    let limits = Limits {
        max_text_len: 1 << 20,
        ..Limits::default()
    };
    refused_with(&split, &limits, "xml_text_too_long");
}

// --- Events -----------------------------------------------------------------------

const SOAP: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:wsu=\"urn:wsu\">",
    "<s:Header><wsse:Security xmlns:wsse=\"urn:wsse\" s:mustUnderstand=\"1\">",
    "<wsu:Timestamp wsu:Id=\"TS-1\"/></wsse:Security></s:Header>",
    "<s:Body wsu:Id=\"id-1\" xml:lang=\"en\"><m xmlns=\"urn:app\" a=\"x&#9;y\r\nz\">1 &lt; 2\r\n<![CDATA[<&>]]><!--c--></m></s:Body>",
    "</s:Envelope>"
);

#[test]
fn names_namespaces_and_attributes() {
    let mut r = Reader::new(SOAP.as_bytes(), &Limits::default()).unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = r.next().unwrap() {
        if let Event::Start(e) = ev {
            seen.push((
                e.depth(),
                e.prefix().to_owned(),
                e.local_name().to_owned(),
                e.namespace().map(str::to_owned),
            ));
            match e.local_name() {
                "Security" => {
                    let a = e.attributes().next().unwrap();
                    assert_eq!(
                        (a.prefix, a.local_name, a.value),
                        ("s", "mustUnderstand", "1")
                    );
                    assert_eq!(
                        a.namespace,
                        Some("http://schemas.xmlsoap.org/soap/envelope/")
                    );
                    let decls: Vec<_> = e.namespace_decls().map(|d| (d.prefix, d.uri)).collect();
                    assert_eq!(decls, [("wsse", "urn:wsse")]);
                    let scope: Vec<_> = e.in_scope_namespaces().map(|d| d.prefix).collect();
                    assert_eq!(scope, ["wsse", "wsu", "s"]);
                }
                "Body" => {
                    assert_eq!(e.attribute_value(Some("urn:wsu"), "Id"), Some("id-1"));
                    assert_eq!(e.attribute_value(Some(XML_NS), "lang"), Some("en"));
                }
                "m" => {
                    // Literal whitespace (CR LF counted once) becomes spaces; &#9; stays a tab.
                    assert_eq!(e.attribute_value(None, "a"), Some("x\ty z"));
                    assert_eq!(e.lookup_namespace(""), Some("urn:app"));
                    let inherited: Vec<_> = e.inherited_xml_attributes().collect();
                    assert_eq!(inherited, [("lang", "en")]);
                }
                _ => {}
            }
        }
    }
    let soap = Some("http://schemas.xmlsoap.org/soap/envelope/".to_owned());
    assert_eq!(seen[0], (1, "s".into(), "Envelope".into(), soap.clone()));
    assert_eq!(
        seen[3],
        (4, "wsu".into(), "Timestamp".into(), Some("urn:wsu".into()))
    );
    assert_eq!(seen[5], (3, "".into(), "m".into(), Some("urn:app".into())));
}

#[test]
fn text_and_comments() {
    let mut r = Reader::new(SOAP.as_bytes(), &Limits::default()).unwrap();
    let mut texts = Vec::new();
    let mut comments = Vec::new();
    while let Some(ev) = r.next().unwrap() {
        match ev {
            Event::Text(t) => texts.push(t.text().to_owned()),
            Event::Comment(c) => comments.push(c.text().to_owned()),
            _ => {}
        }
    }
    // References resolved, CR LF normalized, CDATA merged into one text node.
    assert_eq!(texts, ["1 < 2\n<&>"]);
    assert_eq!(comments, ["c"]);

    let mut r = Reader::new(b"<a>x&#xD;&#10;\ry\r\n</a>", &Limits::default()).unwrap();
    r.next().unwrap();
    match r.next().unwrap() {
        Some(Event::Text(t)) => assert_eq!(t.text(), "x\r\n\ny\n"),
        other => panic!("{other:?}"),
    }
}

/// Spans let a caller cut the Security header out of the original bytes.
#[test]
fn spans_allow_splicing() {
    let input = SOAP.as_bytes();
    let mut r = Reader::new(input, &Limits::default()).unwrap();
    let (mut start, mut end) = (None, None);
    while let Some(ev) = r.next().unwrap() {
        match ev {
            Event::Start(e) if e.local_name() == "Security" => start = Some(e.span().start),
            Event::End(e) if e.local_name() == "Security" => end = Some(e.span().end),
            Event::Start(e) if e.local_name() == "Timestamp" => {
                assert!(e.is_empty_tag());
                assert_eq!(
                    &SOAP[e.span().start..e.span().end],
                    "<wsu:Timestamp wsu:Id=\"TS-1\"/>"
                );
            }
            Event::End(e) if e.local_name() == "Timestamp" => {
                assert_eq!(e.span().start, e.span().end)
            }
            Event::Text(t) => assert_eq!(
                &SOAP[t.span().start..t.span().end],
                "1 &lt; 2\r\n<![CDATA[<&>]]>"
            ),
            _ => {}
        }
    }
    let (s, e) = (start.unwrap(), end.unwrap());
    let spliced = [&input[..s], &input[e..]].concat();
    assert!(String::from_utf8(spliced)
        .unwrap()
        .contains("<s:Header></s:Header><s:Body"));
}

#[test]
fn reader_keeps_refusing_after_an_error() {
    let mut r = Reader::new(b"<a><b></a>", &Limits::default()).unwrap();
    let mut errors = 0;
    for _ in 0..5 {
        match r.next() {
            Err(e) => {
                assert_eq!(e.reason(), "xml_malformed");
                errors += 1;
            }
            Ok(None) => panic!("ended after an error"),
            Ok(Some(_)) => {}
        }
    }
    assert_eq!(errors, 3);
}

/// Mutated messages must be refused or read, never panic.
#[test]
fn mutated_input_never_panics() {
    let base = SOAP.as_bytes();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"<>&;:=\"'/!?[]-#x \r\n\0\xC3\xBFaxmlns";
    for _ in 0..5_000 {
        let mut input = base.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % input.len();
            let b = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 => input[at] = b,
                1 => input.insert(at, b),
                _ => {
                    input.remove(at);
                }
            }
        }
        let _ = read_all(&input, &Limits::default());
        for m in [
            sealgate::wssec::c14n::Method::inclusive().with_comments(),
            sealgate::wssec::c14n::Method::exclusive().with_prefix_list("#default s"),
        ] {
            let mut out = Vec::new();
            let _ = sealgate::wssec::c14n::canonicalize_document(
                &input,
                &Limits::default(),
                &m,
                &mut out,
            );
        }
    }
}

/// What a reader reports, in a form two passes can be compared by
/// (binding ids go on counting across a rewind, so they are left out).
fn pass(r: &mut Reader<'_>, stop_after: usize) -> Result<Vec<String>, XmlError> {
    let mut seen = Vec::new();
    while let Some(ev) = r.next()? {
        seen.push(match ev {
            Event::Start(e) => {
                let attrs: Vec<String> = e
                    .attributes()
                    .map(|a| format!("{}={}@{:?}", a.name, a.value, a.namespace))
                    .collect();
                let ns: Vec<String> = e
                    .in_scope_namespaces()
                    .map(|d| format!("{}={}", d.prefix, d.uri))
                    .collect();
                format!(
                    "start {} {:?} {:?} {attrs:?} {ns:?} {:?}",
                    e.name(),
                    e.namespace(),
                    e.span(),
                    e.inherited_xml_attributes().collect::<Vec<_>>()
                )
            }
            Event::End(e) => format!("end {} {:?}", e.name(), e.span()),
            Event::Text(t) => format!("text {:?} {:?}", t.text(), t.span()),
            Event::Comment(c) => format!("comment {:?} {:?}", c.text(), c.span()),
        });
        if seen.len() == stop_after {
            break;
        }
    }
    Ok(seen)
}

#[test]
fn a_rewound_reader_reads_the_message_again_as_a_new_one_would() {
    let with_bom = [&b"\xEF\xBB\xBF"[..], SOAP.as_bytes()].concat();
    for input in [SOAP.as_bytes(), with_bom.as_slice()] {
        let limits = Limits::default();
        let fresh = pass(&mut Reader::new(input, &limits).unwrap(), usize::MAX).unwrap();
        assert!(fresh.len() > 10, "{fresh:?}");
        let mut r = Reader::new(input, &limits).unwrap();
        // Stopped inside the Security header (as the SignedInfo pass stops),
        // then read whole, then read whole again.
        for stop in [5, usize::MAX, usize::MAX] {
            r.rewind();
            let again = pass(&mut r, stop).unwrap();
            assert_eq!(again[..], fresh[..again.len().min(fresh.len())]);
            if stop == usize::MAX {
                assert_eq!(again, fresh);
            }
        }
    }
    // A refusal is met again, at the same place.
    let bad = b"<a xmlns:p=\"urn:p\"><p:b></p:b><c></a>";
    let mut r = Reader::new(bad, &Limits::default()).unwrap();
    let first = pass(&mut r, usize::MAX).unwrap_err().to_string();
    r.rewind();
    assert_eq!(pass(&mut r, usize::MAX).unwrap_err().to_string(), first);
}

#[test]
fn a_window_carried_on_from_another_refuses_to_rewind() {
    let limits = Limits::default();
    let msg = b"<a><b>one</b><b>two</b></a>";
    let mut first = Reader::window(&msg[..6], 0, &limits, None, false).unwrap();
    while first.next().unwrap().is_some() {}
    let mut second = Reader::window(&msg[6..], 6, &limits, Some(first.suspend()), true).unwrap();
    assert!(second.next().unwrap().is_some());
    second.rewind();
    let err = second.next().unwrap_err();
    assert_eq!(err.reason(), "xml_malformed");
    assert!(err.to_string().contains("cannot be read again"), "{err}");
}

/// Every event from here on, as text: names, namespaces in scope,
/// inherited `xml:*` attributes, attributes, content and spans.
fn describe_rest(r: &mut Reader<'_>, upto: usize) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(ev) = r.next().unwrap() {
        out.push(match ev {
            Event::Start(e) => format!(
                "start {} {:?} {} ns={:?} xml={:?} attrs={:?} {:?}",
                e.name(),
                e.namespace(),
                e.depth(),
                e.in_scope_namespaces()
                    .map(|d| (d.prefix, d.uri))
                    .collect::<Vec<_>>(),
                e.inherited_xml_attributes().collect::<Vec<_>>(),
                e.attributes()
                    .map(|a| (a.name, a.namespace, a.value))
                    .collect::<Vec<_>>(),
                e.span()
            ),
            Event::End(e) => format!("end {} {} {:?}", e.name(), e.depth(), e.span()),
            Event::Text(t) => format!("text {:?} {:?}", t.text(), t.span()),
            Event::Comment(t) => format!("comment {:?} {:?}", t.text(), t.span()),
        });
        if out.len() == upto {
            break;
        }
    }
    out
}

#[test]
fn a_pass_from_a_mark_reads_what_a_read_from_the_start_reads_there() {
    let doc = "<e:Env xmlns:e=\"urn:e\" xml:lang=\"sk\"><e:H><t:T xmlns:t=\"urn:t\" Id=\"a\">\
               <t:C a=\"1&#9;2\"/>x&amp;y<!--c--><t:D xmlns=\"urn:d\"><i/></t:D></t:T>\
               <e:Empty Id=\"b\"/><e:After>z</e:After></e:H></e:Env>";
    let limits = Limits::default();
    let mut r = Reader::new(doc.as_bytes(), &limits).unwrap();
    let mut marks = Vec::new();
    while let Some(ev) = r.next().unwrap() {
        if let Event::Start(e) = ev {
            if e.attribute_value(None, "Id").is_some() {
                marks.push(e.mark());
            }
        }
    }
    assert_eq!(marks.len(), 2);
    let all = describe_rest(
        &mut Reader::new(doc.as_bytes(), &limits).unwrap(),
        usize::MAX,
    );
    for mark in &marks {
        let tag = format!("Span {{ start: {},", mark.start());
        let at = all
            .iter()
            .position(|l| l.starts_with("start") && l.contains(&tag))
            .unwrap();
        let expected = &all[at..];
        // A fresh reader of the same input, as the streaming verifier's.
        let mut fresh = Reader::new(doc.as_bytes(), &limits).unwrap();
        fresh.resume(mark);
        assert_eq!(describe_rest(&mut fresh, usize::MAX), expected);
        // The reader that made it, again and again, and stopping early.
        r.resume(mark);
        assert_eq!(describe_rest(&mut r, 2), expected[..2]);
        r.begin_at(mark.start(), &marks);
        assert_eq!(describe_rest(&mut r, usize::MAX), expected);
    }
    // No mark for a place: read from the start.
    r.begin_at(1, &marks);
    assert_eq!(describe_rest(&mut r, usize::MAX), all);
}

#[test]
fn a_mark_past_the_end_of_the_input_is_refused_not_read() {
    let long = "<a><b><c Id=\"x\">text</c></b></a>";
    let mut r = Reader::new(long.as_bytes(), &Limits::default()).unwrap();
    let mut mark = None;
    while let Some(ev) = r.next().unwrap() {
        if let Event::Start(e) = ev {
            if e.local_name() == "c" {
                mark = Some(e.mark());
            }
        }
    }
    let mark = mark.unwrap();
    let mut short = Reader::new(b"<a/>", &Limits::default()).unwrap();
    short.resume(&mark);
    assert_eq!(short.next().unwrap_err().reason(), "xml_malformed");
    // Where no start tag begins.
    let shifted = " <a><b><c Id=\"x\">text</c></b></a>";
    let mut shifted_r = Reader::new(shifted.as_bytes(), &Limits::default()).unwrap();
    shifted_r.resume(&mark);
    assert_eq!(shifted_r.next().unwrap_err().reason(), "xml_malformed");
}
