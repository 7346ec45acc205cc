//! The Salesforce SOAP API's session: `SessionHeader/sessionId` in the SOAP
//! Header, replaced when the client sent one and added when not, by a
//! byte-range splice, so the rest of the message reaches the upstream byte
//! for byte (as the Security header strip does).

use crate::wssec::envelope;
use crate::wssec::verify::WssecError;
use crate::wssec::xml::Limits;

/// Where Salesforce serves its SOAP APIs.
const SOAP_PATH: &str = "/services/Soap/";

/// A request to one of Salesforce's SOAP endpoints.
pub fn is_soap_endpoint(path: &str) -> bool {
    path.contains(SOAP_PATH)
}

/// The `SessionHeader` namespace of a Salesforce SOAP endpoint, by its path:
/// partner (`/services/Soap/u/`), enterprise (`/c/`), Apex class
/// (`/class/NAME`, `/class/NAMESPACE/NAME`), Apex (`/s/`), metadata (`/m/`),
/// tooling (`/T/`).
pub fn namespace_for(path: &str) -> String {
    let rest = path.split_once(SOAP_PATH).map_or("", |(_, r)| r);
    let mut parts = rest.split('/');
    match parts.next() {
        Some("c") => "urn:enterprise.soap.sforce.com".into(),
        Some("class") => {
            let class: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
            match class.is_empty() {
                false => format!("http://soap.sforce.com/schemas/class/{}", class.join("/")),
                true => "urn:partner.soap.sforce.com".into(),
            }
        }
        Some("s") => "http://soap.sforce.com/2006/08/apex".into(),
        Some("m") => "http://soap.sforce.com/2006/04/metadata".into(),
        Some("T") => "urn:tooling.soap.sforce.com".into(),
        _ => "urn:partner.soap.sforce.com".into(),
    }
}

fn escape(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        match b {
            b'&' => out.push_str("&amp;"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            b'"' => out.push_str("&quot;"),
            b'\'' => out.push_str("&apos;"),
            b => out.push(char::from(b)),
        }
    }
    out
}

/// `msg` with `session` as its `SessionHeader/sessionId` in `namespace` (the
/// endpoint's, never one the client chose): in place of the client's
/// SessionHeader, else first in the Header, else in a new Header.
pub fn set_session_id(
    msg: &[u8],
    limits: &Limits,
    namespace: &str,
    session: &[u8],
) -> Result<Vec<u8>, WssecError> {
    let scan = envelope::scan(msg, limits)?;
    let mut existing = scan
        .header_children
        .iter()
        .filter(|c| c.name.local == "SessionHeader");
    let old = existing.next();
    if existing.next().is_some() {
        return Err(WssecError::BadEnvelope("more than one SessionHeader"));
    }
    let element = |ns: &str| {
        format!(
            "<SessionHeader xmlns=\"{}\"><sessionId>{}</sessionId></SessionHeader>",
            escape(ns.as_bytes()),
            escape(session)
        )
    };
    let (at, delete, insert) = match old {
        Some(old) => (
            old.span.start,
            old.span.end - old.span.start,
            element(namespace),
        ),
        None => {
            let slot = envelope::header_slot(msg, &scan);
            (
                slot.at,
                slot.delete,
                format!("{}{}{}", slot.open, element(namespace), slot.close),
            )
        }
    };
    let (Some(head), Some(tail)) = (msg.get(..at), msg.get(at + delete..)) else {
        return Err(WssecError::Internal("splice outside the message"));
    };
    let mut out = Vec::with_capacity(msg.len() + insert.len());
    out.extend_from_slice(head);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(tail);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    const S12: &str = "http://www.w3.org/2003/05/soap-envelope";
    const BODY: &str = "<soapenv:Body>\n  <urn:query xmlns:urn=\"urn:partner.soap.sforce.com\"><urn:queryString>SELECT Id FROM Account</urn:queryString></urn:query>\n </soapenv:Body>";

    fn set(msg: &str) -> String {
        let out = set_session_id(
            msg.as_bytes(),
            &Limits::default(),
            "urn:partner.soap.sforce.com",
            b"00D!AQ<&>",
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    const SESSION: &str = "<SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>00D!AQ&lt;&amp;&gt;</sessionId></SessionHeader>";

    #[test]
    fn added_to_a_header_to_a_self_closed_one_and_to_none_in_both_soap_versions() {
        for ns in [S11, S12] {
            let with = format!("<soapenv:Envelope xmlns:soapenv=\"{ns}\">\n <soapenv:Header><x:Trace xmlns:x=\"urn:t\">1</x:Trace></soapenv:Header>\n {BODY}\n</soapenv:Envelope>");
            assert_eq!(
                set(&with),
                with.replace("<soapenv:Header>", &format!("<soapenv:Header>{SESSION}"))
            );
            let closed = format!("<soapenv:Envelope xmlns:soapenv=\"{ns}\">\n <soapenv:Header/>\n {BODY}\n</soapenv:Envelope>");
            assert_eq!(
                set(&closed),
                closed.replace(
                    "<soapenv:Header/>",
                    &format!("<soapenv:Header>{SESSION}</soapenv:Header>")
                )
            );
            let none =
                format!("<soapenv:Envelope xmlns:soapenv=\"{ns}\">\n {BODY}\n</soapenv:Envelope>");
            assert_eq!(
                set(&none),
                none.replace(
                    "<soapenv:Body>",
                    &format!("<soapenv:Header>{SESSION}</soapenv:Header><soapenv:Body>")
                )
            );
        }
    }

    #[test]
    fn the_clients_session_header_is_replaced_in_the_endpoints_namespace() {
        // A namespace of the client's choosing would make Salesforce refuse
        // a good session, and the gateway fetch a new one for nothing.
        let msg = format!("<s:Envelope xmlns:s=\"{S11}\"><s:Header><e:SessionHeader xmlns:e=\"urn:bogus\"><e:sessionId>CLIENTS</e:sessionId></e:SessionHeader></s:Header><s:Body><q/></s:Body></s:Envelope>");
        let out = set(&msg);
        assert!(!out.contains("CLIENTS"), "{out}");
        assert_eq!(
            out,
            format!("<s:Envelope xmlns:s=\"{S11}\"><s:Header><SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>00D!AQ&lt;&amp;&gt;</sessionId></SessionHeader></s:Header><s:Body><q/></s:Body></s:Envelope>")
        );
        let twice = msg.replace("</s:Header>", "<SessionHeader xmlns=\"urn:x\"/></s:Header>");
        assert!(set_session_id(twice.as_bytes(), &Limits::default(), "urn:x", b"t").is_err());
    }

    #[test]
    fn the_namespace_follows_the_endpoint() {
        for (path, ns) in [
            ("/services/Soap/u/60.0", "urn:partner.soap.sforce.com"),
            (
                "/services/Soap/c/60.0/0DF",
                "urn:enterprise.soap.sforce.com",
            ),
            (
                "/services/Soap/class/LedgerService",
                "http://soap.sforce.com/schemas/class/LedgerService",
            ),
            (
                "/services/Soap/class/acme/Ledger",
                "http://soap.sforce.com/schemas/class/acme/Ledger",
            ),
            (
                "/services/Soap/s/60.0",
                "http://soap.sforce.com/2006/08/apex",
            ),
            (
                "/services/Soap/m/60.0",
                "http://soap.sforce.com/2006/04/metadata",
            ),
            ("/services/Soap/T/60.0", "urn:tooling.soap.sforce.com"),
            ("/elsewhere", "urn:partner.soap.sforce.com"),
        ] {
            assert_eq!(namespace_for(path), ns, "{path}");
        }
    }
}
