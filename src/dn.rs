//! Distinguished names, parsed once into [`Name`] and compared by value:
//! attribute types by OID (so `cn=`, `CN=` and `2.5.4.3=` are one type),
//! values after unescaping (so `CN=a\, b` is one attribute, never two), RDNs in
//! RFC 4514 order (most significant last), multi-valued RDNs in any order.
//! Client identities, allow rules, WS-Security signers and identity maps all
//! use this one type; text appears only at the edges, rendered as RFC 4514
//! (`openssl x509 -nameopt RFC2253` prints the same), so a CN cannot smuggle
//! in what looks like further attributes.

use std::fmt;
use x509_parser::x509::X509Name;

/// Attribute types with a short name: (OID, name as rendered, other spellings).
const TYPES: &[(&str, &str, &[&str])] = &[
    ("2.5.4.3", "CN", &["COMMONNAME"]),
    ("2.5.4.6", "C", &["COUNTRYNAME"]),
    ("2.5.4.7", "L", &["LOCALITYNAME"]),
    ("2.5.4.8", "ST", &["S", "STATEORPROVINCENAME"]),
    ("2.5.4.9", "STREET", &["STREETADDRESS"]),
    ("2.5.4.10", "O", &["ORGANIZATIONNAME"]),
    ("2.5.4.11", "OU", &["ORGANIZATIONALUNITNAME"]),
    ("2.5.4.4", "SN", &["SURNAME"]),
    ("2.5.4.42", "GN", &["GIVENNAME"]),
    ("2.5.4.12", "title", &[]),
    ("2.5.4.5", "serialNumber", &[]),
    ("0.9.2342.19200300.100.1.25", "DC", &["DOMAINCOMPONENT"]),
    ("0.9.2342.19200300.100.1.1", "UID", &["USERID"]),
    ("1.2.840.113549.1.9.1", "emailAddress", &["E", "EMAIL"]),
];

/// One attribute value: text, or (for non-string types) its encoding as `#hex`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Value {
    Text(String),
    Der(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Ava {
    /// Dotted OID.
    oid: String,
    value: Value,
}

/// A distinguished name. `Eq`, `Ord` and `Hash` compare by value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Name {
    /// RDNs in RFC 4514 order; each RDN's attributes sorted.
    rdns: Vec<Vec<Ava>>,
}

/// A DN written in a config or a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a distinguished name: {detail} (write it like \"CN=etl-prod,OU=ETL,O=Acme\")"
)]
pub struct DnError {
    pub text: String,
    pub detail: String,
}

impl Name {
    /// The name of a certificate's subject or issuer.
    pub fn from_x509(name: &X509Name<'_>) -> Name {
        let mut rdns: Vec<Vec<Ava>> = name
            .iter_rdn()
            .map(|rdn| {
                let mut avas: Vec<Ava> = rdn
                    .iter()
                    .map(|atv| Ava {
                        oid: atv.attr_type().to_id_string(),
                        value: match atv.as_str() {
                            Ok(s) => Value::Text(s.to_owned()),
                            Err(_) => Value::Der(der_of(atv.attr_value())),
                        },
                    })
                    .collect();
                avas.sort();
                avas
            })
            .collect();
        // Certificates list the most significant RDN first; RFC 4514 last.
        rdns.reverse();
        Name { rdns }
    }

    /// Parses an RFC 4514 (or RFC 2253) string. Spaces around separators do
    /// not matter; attribute types are case-insensitive and may be OIDs.
    pub fn parse(text: &str) -> Result<Name, DnError> {
        let err = |detail: &str| DnError {
            text: text.to_owned(),
            detail: detail.to_owned(),
        };
        let mut rdns = Vec::new();
        if text.trim().is_empty() {
            return Ok(Name { rdns });
        }
        for rdn in split_unescaped(text, &[',', ';']) {
            let mut avas = Vec::new();
            for ava in split_unescaped(rdn, &['+']) {
                let (ty, value) = split_once_unescaped(ava, '=')
                    .ok_or_else(|| err(&format!("{:?} has no \"=\"", ava.trim())))?;
                let oid = oid_of(ty.trim())
                    .ok_or_else(|| err(&format!("unknown attribute type {:?}", ty.trim())))?;
                let value = parse_value(value).map_err(|d| err(&d))?;
                avas.push(Ava { oid, value });
            }
            avas.sort();
            rdns.push(avas);
        }
        Ok(Name { rdns })
    }

    /// The same attributes in the opposite order (some stacks write
    /// X509IssuerName most significant first).
    pub fn reversed(&self) -> Name {
        let mut rdns = self.rdns.clone();
        rdns.reverse();
        Name { rdns }
    }

    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }
}

impl std::str::FromStr for Name {
    type Err = DnError;
    fn from_str(s: &str) -> Result<Name, DnError> {
        Name::parse(s)
    }
}

/// The RFC 4514 string.
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, ava) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                let ty = TYPES
                    .iter()
                    .find(|(oid, _, _)| *oid == ava.oid)
                    .map_or(ava.oid.as_str(), |(_, name, _)| name);
                match &ava.value {
                    Value::Text(s) => write!(f, "{ty}={}", escape_value(s))?,
                    Value::Der(d) => write!(f, "{ty}=#{}", crate::hex::upper(d, ""))?,
                }
            }
        }
        Ok(())
    }
}

fn oid_of(ty: &str) -> Option<String> {
    let up = ty.to_ascii_uppercase();
    if let Some((oid, _, _)) = TYPES
        .iter()
        .find(|(_, name, other)| name.eq_ignore_ascii_case(&up) || other.iter().any(|o| *o == up))
    {
        return Some((*oid).to_owned());
    }
    let dotted = up.strip_prefix("OID.").unwrap_or(&up);
    let ok = !dotted.is_empty()
        && dotted.split('.').count() >= 2
        && dotted
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| dotted.to_owned())
}

/// Splits on separators that are not escaped with `\`.
fn split_unescaped<'a>(s: &'a str, seps: &[char]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if seps.contains(&c) {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

fn split_once_unescaped(s: &str, sep: char) -> Option<(&str, &str)> {
    let mut parts = split_unescaped(s, &[sep]).into_iter();
    let first = parts.next()?;
    parts.next()?;
    Some((first, &s[first.len() + sep.len_utf8()..]))
}

/// Unescapes a value: `\,`-style and `\2C`-style escapes; unescaped spaces at
/// either end are dropped; `#hex` is a value's encoding.
fn parse_value(raw: &str) -> Result<Value, String> {
    let start = raw.trim_start();
    if let Some(hex) = start.strip_prefix('#') {
        let der = crate::hex::decode(hex.trim_end())
            .ok_or_else(|| format!("{raw:?} is not a #hex value"))?;
        // Java writes string values this way too (`1.2.840.113549.1.9.1=#16...`):
        // a string is the same value as its text.
        return Ok(match der_string(&der) {
            Some(text) => Value::Text(text),
            None => Value::Der(der),
        });
    }
    let b = start.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    // Length of `out` up to the last byte that must be kept (escaped or not a space).
    let mut keep = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let hex = |c: Option<&u8>| c.and_then(|&c| char::from(c).to_digit(16));
            match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => match b.get(i + 1) {
                    Some(&c) => {
                        out.push(c);
                        i += 2;
                    }
                    None => return Err("a value ends with a lone \"\\\"".into()),
                },
            }
            keep = out.len();
            continue;
        }
        out.push(b[i]);
        if b[i] != b' ' {
            keep = out.len();
        }
        i += 1;
    }
    out.truncate(keep);
    String::from_utf8(out)
        .map(Value::Text)
        .map_err(|_| "an escape makes the value invalid UTF-8".to_owned())
}

/// The text of a DER string value (UTF8String, PrintableString, T61String,
/// IA5String, VisibleString, BMPString), or `None` for anything else.
fn der_string(der: &[u8]) -> Option<String> {
    let (&tag, rest) = der.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, body) = match len0 {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    if body.len() != len {
        return None;
    }
    match tag {
        0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8(body.to_vec()).ok(),
        // T61 in practice carries Latin-1.
        0x14 => Some(body.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The DER encoding of a value the parser holds as header and content.
fn der_of(any: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Vec<u8> {
    let data = any.data;
    let tag = u8::try_from(any.tag().0).unwrap_or(0x1f).min(0x1e)
        | (any.class() as u8) << 6
        | if any.header.is_constructed() { 0x20 } else { 0 };
    let mut out = vec![tag];
    match data.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(data);
    out
}

/// Escapes one attribute value per RFC 4514 section 2.4.
pub fn escape_value(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 4);
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                o.push('\\');
                o.push(c);
            }
            '#' if i == 0 => o.push_str("\\#"),
            ' ' if i == 0 || i == last => o.push_str("\\ "),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                o.push_str(&format!("\\{:02X}", c as u32));
            }
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn escaping_keeps_a_cn_from_posing_as_more_attributes() {
        assert_eq!(escape_value("etl-prod, OU=ETL"), "etl-prod\\, OU=ETL");
        assert_eq!(escape_value("#x "), "\\#x\\ ");
        assert_ne!(
            n(&format!("CN={}", escape_value("etl-prod, OU=ETL, O=Acme"))),
            n("CN=etl-prod, OU=ETL, O=Acme")
        );
        let one = n("CN=a\\, b,O=x");
        assert_eq!(one.rdns.len(), 2);
        assert_eq!(one.to_string(), "CN=a\\, b,O=x");
    }

    #[test]
    fn spacing_type_case_oids_and_hex_escapes_do_not_matter() {
        let want = n("CN=etl-prod,OU=ETL,O=Acme");
        assert_eq!(n("cn=etl-prod,  ou=ETL , o=Acme"), want);
        assert_eq!(n("2.5.4.3=etl-prod,OID.2.5.4.11=ETL,O=Acme"), want);
        assert_eq!(n("CN=etl\\2Dprod,OU=ETL,O=Acme"), want);
        assert_eq!(n("CN=etl-prod;OU=ETL;O=Acme"), want);
        assert_ne!(n("CN=ETL-PROD,OU=ETL,O=Acme"), want);
        assert_eq!(n("CN=a+UID=b"), n("UID=b+CN=a"));
        assert_eq!(n("E=x@y"), n("emailAddress=x@y"));
        assert_eq!(n("CN=\\ a\\ ").to_string(), "CN=\\ a\\ ");
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(Name::parse("CM=x").is_err());
        assert!(Name::parse("CN").is_err());
        assert!(Name::parse("CN=x\\").is_err());
        assert!(Name::parse("CN=#zz").is_err());
        assert!(Name::parse("").unwrap().is_empty());
    }

    #[test]
    fn hex_encoded_strings_are_their_text() {
        // What Java's X500Principal writes for an IA5String emailAddress.
        let hex = crate::hex::upper(b"\x16\x0bca@test.org", "");
        assert_eq!(
            n(&format!("CN=CA,1.2.840.113549.1.9.1=#{hex}")),
            n("CN=CA,emailAddress=ca@test.org")
        );
        assert_eq!(n("CN=#0C026162"), n("CN=ab"));
        assert_ne!(n("CN=#0402AB01"), n("CN=ab"));
    }
}
