//! Conformance vectors (see tests/vectors/README.md), compared byte for byte.

use sealgate::wssec::c14n::{canonicalize_document, canonicalize_element, C14nError, Method};
use sealgate::wssec::xml::{Limits, StartElement};

fn vector(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/vectors/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn document(input: &[u8], method: &Method) -> Result<Vec<u8>, C14nError> {
    let mut out = Vec::new();
    canonicalize_document(input, &Limits::default(), method, &mut out)?;
    Ok(out)
}

fn element(
    input: &[u8],
    method: &Method,
    select: impl FnMut(&StartElement<'_>) -> bool,
) -> Result<Vec<u8>, C14nError> {
    let mut out = Vec::new();
    canonicalize_element(input, &Limits::default(), method, select, &mut out)?;
    Ok(out)
}

fn named(name: &'static str) -> impl FnMut(&StartElement<'_>) -> bool {
    move |e| e.name() == name
}

fn by_id(id: &'static str) -> impl FnMut(&StartElement<'_>) -> bool {
    move |e| e.attribute_value(None, "Id") == Some(id)
}

#[track_caller]
fn assert_same(got: &[u8], expected_file: &str) {
    let want = vector(expected_file);
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(&want),
        "canonical form differs from {expected_file}"
    );
    assert_eq!(got, &want[..]);
}

// --- Canonical XML 1.0, section 3 examples (c14n-inclusive) -------------------

#[test]
fn inclusive_3_2_whitespace_in_content() {
    let input = vector("c14n-inclusive/32_input.xml");
    assert_same(
        &document(&input, &Method::inclusive()).unwrap(),
        "c14n-inclusive/32_c14n.xml",
    );
    // No comments in it: the with-comments form is the same.
    let with = document(&input, &Method::inclusive().with_comments()).unwrap();
    assert_same(&with, "c14n-inclusive/32_c14n.xml");
}

/// 3.6 declares ISO-8859-1, which the reader refuses (UTF-8 only). Its body is
/// ASCII, so the same document declared as UTF-8 must give the expected output.
#[test]
fn inclusive_3_6_utf8_characters() {
    let input = vector("c14n-inclusive/36_input.xml");
    let err = document(&input, &Method::inclusive()).unwrap_err();
    assert_eq!(err.reason(), "xml_encoding");

    let utf8 = String::from_utf8(input)
        .unwrap()
        .replace("ISO-8859-1", "UTF-8");
    let got = document(utf8.as_bytes(), &Method::inclusive()).unwrap();
    assert_same(&got, "c14n-inclusive/36_c14n.xml");
}

/// These examples need DTD processing (default attributes, attribute types,
/// entities) or an XPath subset (3.7, 3.8); the reader refuses DTDs by design.
#[test]
fn inclusive_examples_with_dtd_are_refused() {
    for f in [
        "33_input.xml", // default attribute from the DTD
        "34_input.xml", // attribute types (ID, NMTOKENS) from the DTD
        "34_input_validatingParser.xml",
        "35_input.xml", // internal and external entities
        "37_input.xml", // DTD + XPath subset
        "38_input.xml", // DTD + XPath subset (xml:base, a C14N 1.1 case)
    ] {
        let input = vector(&format!("c14n-inclusive/{f}"));
        let err = document(&input, &Method::inclusive()).unwrap_err();
        assert_eq!(err.reason(), "xml_doctype", "{f}");
    }
    // 3.1 has a DOCTYPE too, but its processing instructions come first.
    let input = vector("c14n-inclusive/31_input.xml");
    let err = document(&input, &Method::inclusive()).unwrap_err();
    assert_eq!(err.reason(), "xml_processing_instruction");
}

/// `xmlns=""` on the apex undoes a default no output ancestor rendered: omitted.
#[test]
fn default_namespace_redefinition_subtree() {
    let input = vector("c14n-inclusive/default_ns_redefinition_input.xml");
    let expected = "c14n-inclusive/default_ns_redefinition_c14n.xml";
    let select = || named("dsig:Object");
    assert_same(
        &element(&input, &Method::inclusive(), select()).unwrap(),
        expected,
    );
    assert_same(
        &element(&input, &Method::exclusive(), select()).unwrap(),
        expected,
    );
}

// --- Exclusive XML Canonicalization, section 2.2 and 2.4 (c14n-exclusive) -----

/// 2.2: inclusive C14N of the subset drags ancestors' namespaces and xml:lang in;
/// exclusive C14N of the same subset does not, and both documents agree.
#[test]
fn exclusive_2_2_1_and_2_2_2() {
    let one = vector("c14n-exclusive/example2_2_1.xml");
    let two = vector("c14n-exclusive/example2_2_2.xml");
    let elem2 = || named("n1:elem2");

    let got = element(&one, &Method::inclusive(), elem2()).unwrap();
    assert_same(&got, "c14n-exclusive/example2_2_1_c14nized.xml");
    let got = element(&two, &Method::inclusive(), elem2()).unwrap();
    assert_same(&got, "c14n-exclusive/example2_2_2_c14nized.xml");

    for input in [&one, &two] {
        let got = element(input, &Method::exclusive(), elem2()).unwrap();
        assert_same(&got, "c14n-exclusive/example2_2_c14nized_exclusive.xml");
    }
}

/// The input carries `<?testpi 123?>`, which the reader refuses. The PI lies
/// outside the selected `p` subtree, so without it the expected output holds.
#[test]
fn exclusive_2_2_3_without_processing_instruction() {
    let input = vector("c14n-exclusive/example2_2_3.xml");
    let err = element(&input, &Method::exclusive(), named("p")).unwrap_err();
    assert_eq!(err.reason(), "xml_processing_instruction");

    let no_pi = String::from_utf8(input)
        .unwrap()
        .replace("<?testpi 123?>", "");
    let got = element(no_pi.as_bytes(), &Method::exclusive(), named("p")).unwrap();
    assert_same(&got, "c14n-exclusive/example2_2_3_c14nized_exclusive.xml");
}

#[test]
fn exclusive_2_4_namespace_pushed_down() {
    let input = vector("c14n-exclusive/example2_4.xml");
    let got = element(&input, &Method::exclusive(), named("etsi:elem2")).unwrap();
    assert_same(&got, "c14n-exclusive/example2_4_c14nized.xml");
}

#[test]
fn exclusive_soap_body() {
    let input = vector("c14n-exclusive/plain-soap-1.1.xml");
    let got = element(&input, &Method::exclusive(), named("env:Body")).unwrap();
    assert_same(&got, "c14n-exclusive/plain-soap-c14nized.xml");
}

// --- Merlin's exclusive C14N signature (merlin-exc-c14n-one) ------------------
// The references use `#xpointer(id('to-be-signed'))`, the same subtree a
// bare-name `#to-be-signed` selects when comments are kept.

#[test]
fn merlin_reference_0_exclusive() {
    let input = vector("merlin-exc-c14n-one/exc-signature.xml");
    let got = element(&input, &Method::exclusive(), by_id("to-be-signed")).unwrap();
    assert_same(&got, "merlin-exc-c14n-one/c14n-0.txt");
}

#[test]
fn merlin_reference_1_exclusive_prefix_list() {
    let input = vector("merlin-exc-c14n-one/exc-signature.xml");
    let m = Method::exclusive().with_prefix_list("bar #default");
    let got = element(&input, &m, by_id("to-be-signed")).unwrap();
    assert_same(&got, "merlin-exc-c14n-one/c14n-1.txt");
}

#[test]
fn merlin_reference_2_exclusive_with_comments() {
    let input = vector("merlin-exc-c14n-one/exc-signature.xml");
    let m = Method::exclusive().with_comments();
    let got = element(&input, &m, by_id("to-be-signed")).unwrap();
    assert_same(&got, "merlin-exc-c14n-one/c14n-2.txt");
}

#[test]
fn merlin_reference_3_exclusive_with_comments_prefix_list() {
    let input = vector("merlin-exc-c14n-one/exc-signature.xml");
    let m = Method::exclusive()
        .with_comments()
        .with_prefix_list("bar #default");
    let got = element(&input, &m, by_id("to-be-signed")).unwrap();
    assert_same(&got, "merlin-exc-c14n-one/c14n-3.txt");
}

#[test]
fn merlin_signed_info() {
    let input = vector("merlin-exc-c14n-one/exc-signature.xml");
    let got = element(&input, &Method::exclusive(), named("dsig:SignedInfo")).unwrap();
    assert_same(&got, "merlin-exc-c14n-one/c14n-4.txt");
}

#[test]
fn method_uris_round_trip() {
    for uri in [
        sealgate::wssec::c14n::C14N_URI,
        sealgate::wssec::c14n::C14N_WITH_COMMENTS_URI,
        sealgate::wssec::c14n::EXC_C14N_URI,
        sealgate::wssec::c14n::EXC_C14N_WITH_COMMENTS_URI,
    ] {
        assert_eq!(Method::from_uri(uri).unwrap().uri(), uri);
    }
    assert!(Method::from_uri("http://www.w3.org/TR/1999/REC-xpath-19991116").is_none());
}

// --- Derived cases: DTD-bearing examples with the DTD (and PIs) taken out -----
// The expected output is the published one with exactly the parts that came
// from the DTD or the PIs edited out, so every other rule is still checked.

fn strip_doctype(input: Vec<u8>) -> String {
    let s = String::from_utf8(input).unwrap();
    let start = s.find("<!DOCTYPE").unwrap();
    let end = if s[start..].contains("]>") {
        start + s[start..].find("]>").unwrap() + 2
    } else {
        start + s[start..].find('>').unwrap() + 1
    };
    format!("{}{}", &s[..start], &s[end..])
}

fn expected_text(path: &str) -> String {
    String::from_utf8(vector(path)).unwrap()
}

/// 3.1 without the DOCTYPE and PIs: comments outside the root and their newlines.
#[test]
fn derived_3_1_comments_outside_root() {
    let input = strip_doctype(vector("c14n-inclusive/31_input.xml"))
        .replace(
            "<?xml-stylesheet   href=\"doc.xsl\"\r\n   type=\"text/xsl\"   ?>",
            "",
        )
        .replace("<?pi-without-data     ?>", "");
    let pis = |s: String| {
        s.replace(
            "<?xml-stylesheet href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n",
            "",
        )
        .replace("\n<?pi-without-data?>", "")
    };
    let got = document(input.as_bytes(), &Method::inclusive()).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        pis(expected_text("c14n-inclusive/31_c14n.xml"))
    );
    let got = document(input.as_bytes(), &Method::inclusive().with_comments()).unwrap();
    let want = pis(expected_text("c14n-inclusive/31_c14n-comments.xml"));
    assert_eq!(String::from_utf8(got).unwrap(), want);
}

/// 3.3 without the DTD: e9 loses only its defaulted `attr="default"`.
#[test]
fn derived_3_3_start_and_end_tags() {
    let input = strip_doctype(vector("c14n-inclusive/33_input.xml"));
    let want = expected_text("c14n-inclusive/33_c14n.xml").replace(" attr=\"default\"", "");
    let got = document(input.as_bytes(), &Method::inclusive()).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
}

/// 3.4 without the DTD: attributes are CDATA, so `normNames` keeps its spaces
/// and `normId` is normalized like `norm`.
#[test]
fn derived_3_4_character_modifications() {
    let input = strip_doctype(vector("c14n-inclusive/34_input.xml"));
    let want = expected_text("c14n-inclusive/34_c14n.xml")
        .replace(
            "<normNames attr=\"A &#xD;&#xA;&#x9; B\">",
            "<normNames attr=\"   A    &#xD;&#xA;&#x9;   B   \">",
        )
        .replace(
            "<normId id=\"' &#xD;&#xA;&#x9; '\">",
            "<normId id=\" '    &#xD;&#xA;&#x9;   ' \">",
        );
    let got = document(input.as_bytes(), &Method::inclusive()).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
}
