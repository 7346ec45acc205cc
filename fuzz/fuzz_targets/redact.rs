//! The log redactor on arbitrary text: it never panics, a password planted
//! after any prefix never survives, and a masked JSON line stays JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate::redact::Redactor;
use sealgate::telemetry::logging::redacted;

const SECRET: &str = "Zq9PLANTEDq9Z";

fuzz_target!(|data: &[u8]| {
    let r = Redactor::new(&["ssn".into(), "card".into()], 4).unwrap_or_default();
    let _ = r.bytes(data);
    let prefix = String::from_utf8_lossy(data);
    if prefix.contains(SECRET) {
        return; // planted by the fuzzer itself, outside any named value
    }
    for shape in [
        format!("{prefix}<wsse:Password>{SECRET}</wsse:Password>"),
        format!("{prefix} password={SECRET}"),
        format!("{prefix}\nAuthorization: Bearer {SECRET}"),
    ] {
        let out = r.text(&shape);
        assert!(!out.contains(SECRET), "{shape:?} -> {out:?}");
        // The same text as a JSON log line's field (escaped), as the log
        // writer sees it.
        let line = serde_json::json!({ "message": "m", "detail": shape }).to_string();
        let out = redacted(line.as_bytes(), &r, true);
        assert!(!String::from_utf8_lossy(&out).contains(SECRET), "{line:?}");
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if v.is_object() {
            let out = redacted(data, &r, true);
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }
});
