//! Distinguished names as RFC 4514 strings (most significant RDN last, special
//! characters escaped), the form `openssl x509 -nameopt RFC2253` prints. Used
//! for client identities, allow rules, the identity header and WS-Security
//! signers, so a CN cannot smuggle in what looks like further attributes.

use x509_parser::x509::X509Name;

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "2.5.4.5" => "serialNumber",
        _ => return None,
    })
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

/// The RFC 4514 string of a name.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = match atv.as_str() {
                        Ok(s) => escape_value(s),
                        // Not a string type: the hex of its encoding, as RFC 4514 allows.
                        Err(_) => format!(
                            "#{}",
                            crate::tls::identity::hex_upper(atv.attr_value().data, "")
                        ),
                    };
                    format!("{}={value}", short_name(&oid).unwrap_or(&oid))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// Canonical form for comparing a DN someone wrote with one rendered here:
/// whitespace around unescaped `,` and `+` removed, attribute types upper-cased.
pub fn normalize(dn: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars().peekable();
    let mut seps: Vec<char> = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' | '+' => {
                parts.push(std::mem::take(&mut cur));
                seps.push(c);
            }
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let mut out = String::with_capacity(dn.len());
    for (i, p) in parts.iter().enumerate() {
        let p = p.trim();
        let p = match p.split_once('=') {
            Some((t, v)) => format!("{}={}", t.trim().to_ascii_uppercase(), v.trim_start()),
            None => p.to_owned(),
        };
        out.push_str(&p);
        if let Some(s) = seps.get(i) {
            out.push(*s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_a_cn_from_posing_as_more_attributes() {
        assert_eq!(escape_value("etl-prod, OU=ETL"), "etl-prod\\, OU=ETL");
        assert_eq!(escape_value("#x "), "\\#x\\ ");
        assert_ne!(
            normalize(&format!("CN={}", escape_value("etl-prod, OU=ETL, O=Acme"))),
            normalize("CN=etl-prod, OU=ETL, O=Acme")
        );
    }

    #[test]
    fn normalize_ignores_spacing_and_type_case() {
        assert_eq!(
            normalize("cn=etl-prod,  OU=ETL , O=Acme"),
            normalize("CN=etl-prod,OU=ETL,O=Acme")
        );
        assert_eq!(normalize("CN=a\\, b,O=x"), "CN=a\\, b,O=x");
    }
}
