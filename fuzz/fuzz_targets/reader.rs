//! Drives `xml::Reader` to the end (or to its first refusal) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate::wssec::xml::{Event, Limits, Reader};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(mut r) = Reader::new(data, &limits) else {
        return;
    };
    let mut last_end = 0;
    loop {
        match r.next() {
            Ok(None) => break,
            Ok(Some(ev)) => {
                // Spans are in bounds and never move backwards.
                let span = match &ev {
                    Event::Start(s) => {
                        for a in s.attributes() {
                            assert!(!a.local_name.is_empty());
                            let _ = (a.namespace, a.value);
                        }
                        let _ = s.in_scope_namespaces().count();
                        let _ = s.inherited_xml_attributes().count();
                        let _ = (s.namespace(), s.lookup_namespace(s.prefix()));
                        assert!(s.depth() <= limits.max_depth);
                        s.span()
                    }
                    Event::End(e) => e.span(),
                    Event::Text(t) => {
                        let _ = t.text();
                        t.span()
                    }
                    Event::Comment(c) => c.span(),
                };
                assert!(span.start <= span.end && span.end <= data.len());
                if span.start < span.end {
                    assert!(span.start >= last_end, "span {span:?} before {last_end}");
                    last_end = span.end;
                }
            }
            Err(e) => {
                let _ = e.reason();
                // A refusal sticks.
                assert!(r.next().is_err());
                break;
            }
        }
    }
});
