//! Logs as an operator reads them: JSON lines or plain text, audit events
//! in a file of their own, and no line longer than the bound.

use crate::support::process::{sigterm, spawn_gateway, BIN};
use crate::support::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn echo_toml(pki: &Pki, log: &str) -> String {
    let up = header_echo_upstream().await;
    format!(
        "[log]\n{log}\n{}",
        config(
            pki,
            "required",
            &format!(
                "{}\n[upstream.up]\nurl = \"http://{up}\"\n",
                route("all", "/", "")
            ),
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_also_go_to_their_own_file() {
    let pki = Pki::new();
    let audit = pki.path("audit.log");
    let file = pki.write(
        "gw.toml",
        &echo_toml(&pki, &format!("audit_file = {audit:?}")).await,
    );
    let mut gw = spawn_gateway(&file);
    assert_eq!(
        send(gw.edge, pki.etl_client(&[]), get("/x"))
            .await
            .unwrap()
            .status,
        200
    );
    let (status, _) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200);
    // On stdout too.
    gw.wait_event(
        "config_reload",
        &[("trigger", "admin")],
        Duration::from_secs(10),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("config_reload") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "config_reload" && v["trigger"] == "admin"),
        "{lines}"
    );
    assert!(
        events.iter().all(|v| v["target"] == "sealgate::audit"),
        "only audit events: {lines}"
    );
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_is_longer_than_the_bound() {
    let pki = Pki::new();
    let file = pki.write("gw.toml", &echo_toml(&pki, "max_line = \"1KiB\"").await);
    let mut gw = spawn_gateway(&file);
    let long = format!("/{}", "a".repeat(4000));
    assert_eq!(
        send(gw.edge, pki.etl_client(&[]), get(&long))
            .await
            .unwrap()
            .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let l = gw
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no access line");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(l.len() <= 1024, "{} bytes: {l}", l.len());
        if v["message"] == "request" {
            break (l, v);
        }
    };
    let (raw, v) = line;
    assert!(v["truncated"].as_u64().unwrap() > 4000, "{raw}");
    assert!(v["path"].as_str().unwrap().ends_with('…'), "{raw}");
    assert_eq!(v["status"], 200, "the short fields stay: {raw}");
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_on_request() {
    let pki = Pki::new();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (edge, admin) = (free(), free());
    let toml = echo_toml(&pki, "")
        .await
        .replacen("127.0.0.1:0", &admin.to_string(), 1)
        .replacen("127.0.0.1:0", &edge.to_string(), 1);
    let file = pki.write("gw.toml", &toml);
    let mut child = Command::new(BIN)
        .args(["run", "--log-format", "text", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let wait_for = |needle: &str| loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {needle:?} line"));
        assert!(
            serde_json::from_str::<serde_json::Value>(&l).is_err(),
            "a JSON line: {l}"
        );
        if l.contains(needle) {
            return l;
        }
    };
    let l = wait_for("listening");
    assert!(l.contains(" INFO ") && l.contains("sealgate:"), "{l}");
    assert_eq!(
        send(edge, pki.etl_client(&[]), get("/plain"))
            .await
            .unwrap()
            .status,
        200
    );
    let l = wait_for("request");
    assert!(
        l.contains("path=\"/plain\"") || l.contains("path=/plain"),
        "{l}"
    );
    sigterm(child.id());
    assert!(child.wait().unwrap().success());
}

/// Credentials and `[log] redact` names never reach a log line or a fault:
/// not from headers, a path's session parameter, a UsernameToken, nor a
/// refusal's detail quoting what the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_redacted_fields_never_reach_logs_or_faults() {
    use bytes::Bytes;
    use http_body_util::Full;
    use sealgate::wssec::sign::{sign, SignOptions, SigningKey, UsernameToken};
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    pki.write("pw", "right-password\n");
    let toml = format!(
        "[log]\nredact = [\"ssn\", \"creditCard\"]\nkeep_last = 4\n{}",
        config(
            &pki,
            "required",
            &format!(
                "[[route]]\nname = \"ledger\"\nlistener = \"edge\"\nupstream = \"up\"\nmatch = {{ path_prefix = \"/services/Soap/\" }}\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nusernames = [{{ user = \"etl\", password_file = \"pw\" }}]\nrequire_username_token = true\n\n{}\n[upstream.up]\nurl = \"http://{up}\"\n",
                route("rest", "/", "")
            ),
        )
    );
    let file = pki.write("gw.toml", &toml);
    let gw = spawn_gateway(&file);
    let post = |body: Vec<u8>| {
        http::Request::post("/services/Soap/class/Ledger")
            .header("host", "localhost")
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .header("authorization", "Bearer AUTHSECRET2")
            .header("cookie", "c=COOKIESECRET3")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let soap = |inner: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body><acct:Post xmlns:acct="urn:acct">{inner}</acct:Post></soap:Body></soap:Envelope>"#
        )
    };
    let who = signer(&pki, "accounting-signer");
    let key = {
        use rustls::pki_types::pem::PemObject;
        let der =
            rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(who.key_pem.as_bytes()).unwrap();
        SigningKey::from_pkcs8_der(der.secret_pkcs8_der()).unwrap()
    };
    let body = soap("<ssn>123-45-6789</ssn><creditCard>4111111111111111</creditCard>");

    // A wrong UsernameToken password, in a correctly signed message.
    let mut o = SignOptions::new(std::time::SystemTime::now());
    o.username_token = Some(UsernameToken {
        username: "etl".into(),
        password: sealgate::wssec::tokens::Secret::new(b"PWSECRET4".to_vec()),
        digest: false,
    });
    let wrong_password = sign(body.as_bytes(), &key, &who.der, &o).unwrap();
    // A Reference whose URI the refusal's detail quotes.
    let signed = String::from_utf8(sign(body.as_bytes(), &key, &who.der, &o).unwrap()).unwrap();
    let at = signed.find("URI=\"#").unwrap() + 5;
    let end = at + signed[at..].find('"').unwrap();
    let odd_uri = format!(
        "{}https://x/?password=URISECRET5&amp;creditCard=5500000000000004{}",
        &signed[..at],
        &signed[end..]
    );
    let mut faults = String::new();
    for msg in [
        wrong_password,
        odd_uri.into_bytes(),
        body.clone().into_bytes(),
    ] {
        let r = send(gw.edge, pki.etl_client(&[]), post(msg)).await.unwrap();
        assert!(r.status.as_u16() >= 400, "{}: {}", r.status, r.body);
        faults.push_str(&r.body);
    }
    let r = send(
        gw.edge,
        pki.etl_client(&[]),
        http::Request::get("/x;jsessionid=SESSIONSECRET1/y")
            .header("host", "localhost")
            .header("authorization", "Basic QVVUSFNFQ1JFVDI=")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);

    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(l) = gw
        .lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.is_object(), "{l}");
        raw.push(l);
    }
    let logs = raw.join("\n");
    for secret in [
        "SESSIONSECRET1",
        "AUTHSECRET2",
        "QVVUSFNFQ1JFVDI",
        "COOKIESECRET3",
        "PWSECRET4",
        "right-password",
        "URISECRET5",
        "123-45-6789",
        "4111111111",
        "550000000000",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!faults.contains(secret), "{secret} in a fault:\n{faults}");
    }
    // The refusals were logged, with what they quoted masked.
    assert!(logs.contains("wssec_authentication_failed"), "{logs}");
    assert!(
        logs.contains("password=[redacted]") && logs.contains("creditCard=[redacted]0004"),
        "the quoted URI, masked with its card number's last four: {logs}"
    );
    assert!(logs.contains("/x;jsessionid=[redacted]"), "{logs}");
    let mut gw = gw;
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}
