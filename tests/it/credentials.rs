//! Credential brokering against a token endpoint written with an
//! independent JWT implementation (`token_peer.py`: PyJWT with
//! cryptography), which verifies each assertion as Salesforce does and
//! serves a REST upstream that takes only its current tokens.

use crate::support::process::{spawn_gateway, Proc};
use crate::support::*;
use sealgate::pki::{KeyAlg, Leaf, Usage};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";
const CONSUMER_KEY: &str = "3MVG9-consumer-key-of-the-connected-app";
const CLIENT_SECRET: &str = "cc-secret with spaces&symbols=";

/// The peer, killed when dropped.
struct Peer {
    port: u16,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start(pki: &Pki) -> Option<Peer> {
        let ok = Command::new(PYTHON)
            .args(["-c", "import jwt, cryptography"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").is_err(),
                "CI needs PyJWT (.ci/run installs python3-jwt)"
            );
            eprintln!("skipped: no PyJWT for {PYTHON} (apt-get install python3-jwt)");
            return None;
        }
        let cfg = serde_json::json!({
            "app_cert": pki.path("app.crt"),
            "client_key_cert": pki.path("cc-client.crt"),
            "consumer_key": CONSUMER_KEY,
            "users": ["etl-prod@acme.com", "reporting@acme.com"],
            "org_id": "00D5g000004ABCDEAZ",
            "client_id": "erp-connector",
            "client_secret": CLIENT_SECRET,
            "expires_in": 1800,
        });
        let file = pki.write("peer.json", &cfg.to_string());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/token_peer.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .arg(&file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap()
            .parse()
            .unwrap();
        Some(Peer { port, child })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn control(&self, what: &str) -> serde_json::Value {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut s, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let r = s
            .send_request(
                http::Request::post(format!("/control/{what}"))
                    .header("host", "peer")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    /// Requests that reached the REST upstream, as recorded.
    async fn upstream_requests(&self) -> Vec<serde_json::Value> {
        let stats = self.control("stats").await;
        stats["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["path"].as_str().unwrap().contains("oauth2"))
            .cloned()
            .collect()
    }
}

/// The connected app's RSA key and certificate, and a private_key_jwt key.
fn keys(pki: &Pki) {
    let mut app = Leaf::new("connected-app", Usage::Signer);
    app.alg = KeyAlg::Rsa2048;
    let app = pki.issue(&app);
    pki.write("app.crt", &app.cert_pem);
    pki.write("app.key", &app.key_pem);
    let cc = pki.issue(&Leaf::new("erp-connector", Usage::Signer));
    pki.write("cc-client.crt", &cc.cert_pem);
    pki.write("cc-client.key", &cc.key_pem);
    pki.write("cc-secret", &format!("{CLIENT_SECRET}\n"));
    pki.write("static-token", "STATICAPIKEY-0123456789\n");
}

fn gateway_config(pki: &Pki, peer: &Peer, extra: &str) -> std::path::PathBuf {
    let u = peer.url();
    let cc = |method: &str, secret: &str| {
        format!(
            "[upstream.erp-{method}]\nurl = \"{u}\"\n[upstream.erp-{method}.auth]\nkind = \"client_credentials\"\ntoken_url = \"{u}/oauth2/cc/{method}\"\nclient_id = \"erp-connector\"\nauth_method = \"{method}\"\nscopes = [\"accounting.transactions\", \"offline_access\"]\n{secret}\n\n[[route]]\nname = \"erp-{method}\"\nlistener = \"edge\"\nupstream = \"erp-{method}\"\nmatch = {{ path_prefix = \"/services/data/erp/{method}/\" }}\n\n"
        )
    };
    let rest = format!(
        "[upstream.sf]\nurl = \"{u}\"\n[upstream.sf.auth]\nkind = \"salesforce_jwt_bearer\"\nlogin = \"{u}\"\nconsumer_key = \"{CONSUMER_KEY}\"\nkey = \"app.key\"\ntoken_timeout = \"700ms\"\n\n\
         [[route]]\nname = \"sf-rest\"\nlistener = \"edge\"\nupstream = \"sf\"\nmatch = {{ path_prefix = \"/services/data/v60.0/\" }}\n\
         [route.credentials]\nprincipals = [\n  {{ principal = \"etl-prod@acme.com\", when = {{ cn = \"etl-prod\" }} }},\n  {{ principal = \"reporting@acme.com\", when = {{ cn = \"etl-reporting\" }} }},\n  {{ principal = \"stranger@acme.com\", when = {{ cn = \"etl-unapproved\" }} }},\n]\n\n\
         [upstream.keyed]\nurl = \"{u}\"\n[upstream.keyed.auth]\nkind = \"static\"\ntoken_file = \"static-token\"\nheader = \"x-api-key\"\n\n\
         [[route]]\nname = \"keyed\"\nlistener = \"edge\"\nupstream = \"keyed\"\nmatch = {{ path_prefix = \"/keyed/\" }}\n\n\
         [upstream.keyed2]\nurl = \"{u}\"\n[upstream.keyed2.auth]\nkind = \"static\"\ntoken_file = \"static-token\"\nheader = \"x_api_key\"\n\n\
         [[route]]\nname = \"keyed2\"\nlistener = \"edge\"\nupstream = \"keyed2\"\nmatch = {{ path_prefix = \"/keyed2/\" }}\n\n{}{}{}{extra}",
        cc("client_secret_basic", "client_secret_file = \"cc-secret\""),
        cc("client_secret_post", "client_secret_file = \"cc-secret\""),
        cc("private_key_jwt", "key = \"cc-client.key\"\nkey_id = \"erp-1\""),
    );
    pki.write("broker.toml", &config(pki, "required", &rest))
}

fn client(pki: &Pki, cn: &str) -> std::sync::Arc<rustls::ClientConfig> {
    client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client(cn, "ETL", KeyAlg::EcdsaP256)),
        &[],
    )
}

fn rest_get(path: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::get(path)
        .header("host", "localhost")
        .header("authorization", "Bearer CLIENTOWNSECRET")
        .header("cookie", "sid=CLIENTCOOKIE")
        .header("x-sfdc-session", "CLIENTSFDCSESSION")
        .header("x_api_key", "CLIENTAPIKEY")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap()
}

/// What no log line may hold, besides the tokens and assertions the peer saw.
fn never_logged() -> Vec<String> {
    use base64::Engine;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        enc("erp-connector"),
        enc(CLIENT_SECRET)
    ));
    vec![
        CLIENT_SECRET.into(),
        enc(CLIENT_SECRET),
        basic,
        "STATICAPIKEY".into(),
        "CLIENTOWNSECRET".into(),
        "CLIENTSFDCSESSION".into(),
    ]
}

/// A GET of `path` from a client with `CN=cn`, carrying its own credentials.
async fn as_client(gw: &Proc, pki: &Pki, cn: &str, path: &str) -> Reply {
    send(gw.edge, client(pki, cn), rest_get(path))
        .await
        .unwrap()
}

fn body_json(r: &Reply) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_default()
}

async fn metric(gw: &Proc, line: &str) -> f64 {
    metric_value(&admin_get(gw.admin, "/metrics").await.1, line)
}

/// Each mapped identity's own Salesforce user; nothing for an unmapped one;
/// the client's own Authorization and cookie never reach the upstream; 100
/// concurrent first requests cause one fetch; a refused token is fetched
/// anew; client credentials with each client authentication; a static key;
/// and no secret, token or assertion in any log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_brokered_per_identity_and_never_leak() {
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    let gw = spawn_gateway(&gateway_config(&pki, &peer, ""));
    let prod = client(&pki, "etl-prod");

    // 100 concurrent first requests of one identity, the endpoint taking
    // 400 ms, so they all wait on the first: one fetch.
    peer.control("slow-400").await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(send(
                gw.edge,
                prod.clone(),
                rest_get("/services/data/v60.0/query"),
            ))
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(body_json(&r)["sub"], "etl-prod@acme.com");
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(peer.control("stats").await["fetches"]["jwt_bearer"], 1);
    peer.control("fast").await;

    let r = as_client(&gw, &pki, "etl-reporting", "/services/data/v60.0/sobjects").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body_json(&r)["sub"], "reporting@acme.com");

    // Unmapped: refused before anything is fetched or forwarded.
    let before = peer.upstream_requests().await.len();
    let r = as_client(&gw, &pki, "etl-other", "/services/data/v60.0/query").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.headers["x-sealgate-refusal"], "no_principal");
    assert_eq!(peer.upstream_requests().await.len(), before);

    // The upstream stops taking the token. An upload (its body streamed,
    // so not held to send again) gets the upstream's 401; the next request
    // carries a new token.
    peer.control("expire").await;
    let upload = http::Request::post("/services/data/v60.0/sobjects/Account")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"Name\":\"Acme\"}",
        )))
        .unwrap();
    let r = send(gw.edge, prod.clone(), upload).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    let r = send(
        gw.edge,
        prod.clone(),
        rest_get("/services/data/v60.0/query"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(peer.control("stats").await["fetches"]["jwt_bearer"], 3);

    // Client credentials, each way a client authenticates.
    for method in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        let r = send(
            gw.edge,
            prod.clone(),
            rest_get(&format!("/services/data/erp/{method}/x")),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{method}: {}", r.body);
        assert_eq!(body_json(&r)["grant"], "client_credentials", "{method}");
    }
    let stats = peer.control("stats").await;
    assert_eq!(stats["fetches"]["client_credentials"], 3, "{stats}");
    assert_eq!(stats["refused"], serde_json::json!([]), "{stats}");

    // A static key, in its own header, the client's Authorization removed.
    let r = send(gw.edge, prod.clone(), rest_get("/keyed/thing"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let keyed = peer.upstream_requests().await.pop().unwrap();
    let headers = keyed["headers"].as_array().unwrap();
    let has = |name: &str, value: &str| headers.iter().any(|h| h[0] == name && h[1] == value);
    assert!(has("x-api-key", "STATICAPIKEY-0123456789"), "{keyed}");
    assert!(!headers.iter().any(|h| h[0] == "authorization"), "{keyed}");
    // Configured with `_`: the client's `-` spelling goes too.
    let mut req = rest_get("/keyed2/thing");
    req.headers_mut()
        .insert("x-api-key", "CLIENTAPIKEY-DASHED".parse().unwrap());
    let r = send(gw.edge, prod.clone(), req).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let keyed = peer.upstream_requests().await.pop().unwrap();
    let text = keyed.to_string();
    assert!(text.contains("STATICAPIKEY-0123456789"), "{text}");
    assert!(!text.contains("CLIENTAPIKEY"), "{text}");

    assert_eq!(
        metric(
            &gw,
            "sealgate_token_fetches_total{result=\"ok\",upstream=\"sf\"}"
        )
        .await,
        3.0
    );
    // The client's own credentials reached no upstream, on any route.
    let reached = peer.upstream_requests().await;
    assert!(reached.len() > 100);
    for req in reached {
        let text = req.to_string();
        for own in ["CLIENTOWNSECRET", "CLIENTCOOKIE", "CLIENTSFDCSESSION"] {
            assert!(!text.contains(own), "{own} reached the upstream: {text}");
        }
        // `x_api_key` is the static route's header, underscores or not.
        if req["path"].as_str().unwrap().starts_with("/keyed") {
            assert!(!text.contains("CLIENTAPIKEY"), "{text}");
        }
    }
    // Not a secret, token or assertion in the whole log.
    let log = gw.log_text(Duration::from_millis(300));
    assert!(log.contains("token_issued"), "the audit events were read");
    let stats = peer.control("stats").await;
    let mut secrets: Vec<String> = stats["issued"]
        .as_array()
        .unwrap()
        .iter()
        .chain(stats["assertions"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    secrets.extend(never_logged());
    assert!(secrets.len() > 8);
    for s in secrets {
        assert!(!log.contains(&s), "{s} in the log");
    }
}

/// A token endpoint down, slow or refusing: 503 `token_unavailable` with
/// Retry-After, promptly, the endpoint not asked again during the back-off;
/// `invalid_grant` logged with its description and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_requests_get_503_promptly() {
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    let gw = spawn_gateway(&gateway_config(&pki, &peer, ""));

    // A user the connected app is not approved for.
    let started = Instant::now();
    let r = as_client(&gw, &pki, "etl-unapproved", "/services/data/v60.0/query").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["x-sealgate-refusal"], "token_unavailable");
    assert!(r.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let ev = gw.wait_event(
        "token_refused",
        &[("result", "invalid_grant")],
        Duration::from_secs(5),
    );
    assert!(
        ev["detail"]
            .as_str()
            .unwrap()
            .contains("user hasn't approved this consumer"),
        "{ev}"
    );
    assert_eq!(ev["principal"], "stranger@acme.com");
    assert_eq!(
        metric(
            &gw,
            "sealgate_token_fetches_total{result=\"invalid_grant\",upstream=\"sf\"}"
        )
        .await,
        1.0
    );

    // Down: refused at once, and again without asking during the back-off;
    // an upload in progress gets the 503, not a reset.
    peer.control("down").await;
    let upload = http::Request::post("/services/data/v60.0/sobjects/Account")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![
            b'x';
            1 << 20
        ])))
        .unwrap();
    let r = send(gw.edge, client(&pki, "etl-prod"), upload)
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["x-sealgate-refusal"], "token_unavailable");
    for _ in 0..3 {
        let started = Instant::now();
        let r = as_client(&gw, &pki, "etl-prod", "/services/data/v60.0/query").await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(
        metric(
            &gw,
            "sealgate_token_fetches_total{result=\"unavailable\",upstream=\"sf\"}"
        )
        .await,
        1.0,
        "one fetch, then the back-off"
    );

    // Slow: the fetch's deadline (700 ms) answers for it.
    peer.control("up").await;
    peer.control("slow-2000").await;
    let started = Instant::now();
    let r = as_client(&gw, &pki, "etl-reporting", "/services/data/v60.0/query").await;
    assert_eq!(r.status, 503, "{}", r.body);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1800),
        "{took:?}"
    );
    assert_eq!(
        metric(
            &gw,
            "sealgate_token_fetches_total{result=\"timeout\",upstream=\"sf\"}"
        )
        .await,
        1.0
    );
    let log = gw.log_text(Duration::from_millis(300));
    let stats = peer.control("stats").await;
    let assertions: Vec<String> = stats["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(!assertions.is_empty());
    for s in assertions.into_iter().chain(never_logged()) {
        assert!(!log.contains(&s), "{s} in the log");
    }
}

/// A secret written in the config, or a variable that is not set, is refused
/// by `check`, which never echoes the secret.
#[test]
fn check_refuses_a_literal_secret() {
    let pki = Pki::new();
    keys(&pki);
    let base = |auth: &str| {
        config(
            &pki,
            "required",
            &format!(
                "[upstream.erp]\nurl = \"https://erp.example.com\"\n[upstream.erp.auth]\n{auth}\n\n[[route]]\nname = \"r\"\nlistener = \"edge\"\nupstream = \"erp\"\n"
            ),
        )
    };
    for (auth, says) in [
        (
            "kind = \"client_credentials\"\ntoken_url = \"https://id.example.com/token\"\nclient_id = \"x\"\nclient_secret = \"hunter2-literal\"",
            "upstream.erp.auth.client_secret: a secret is never written in the config",
        ),
        (
            "kind = \"client_credentials\"\ntoken_url = \"https://id.example.com/token\"\nclient_id = \"x\"\nclient_secret = \"${SEALGATE_TEST_UNSET_SECRET}\"",
            "environment variable SEALGATE_TEST_UNSET_SECRET (the client secret) is not set",
        ),
        (
            "kind = \"static\"\ntoken = \"hunter2-literal\"",
            "upstream.erp.auth.token: a secret is never written in the config",
        ),
        (
            "kind = \"client_credentials\"\ntoken_url = \"http://id.example.com/token\"\nclient_id = \"x\"\nclient_secret_file = \"none\"",
            "upstream.erp.auth.token_url: must be https://",
        ),
        (
            "kind = \"salesforce_jwt_bearer\"\nconsumer_key = \"k\"\nkey = \"app.key\"",
            "map client identities to Salesforce users here, or set username",
        ),
        ("kind = \"kerberos\"", "unknown variant `kerberos`"),
        (
            "kind = \"static\"\ntoken_file = \"static-token\"\nheader = \"content-length\"",
            "is a header the gateway frames, routes or identifies requests by",
        ),
        (
            "kind = \"client_credentials\"\ntoken_url = \"https://id.example.com/token\"\nclient_id = \"x\"\nclient_secret_file = \"cc-secret\"\nrefresh_margin = \"90d\"",
            "upstream.erp.auth.refresh_margin: between 0s and 30 days",
        ),
    ] {
        let file = pki.write("auth.toml", &base(auth));
        let out = Command::new(crate::support::process::BIN)
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{auth}: {text}");
        assert!(text.contains(says), "{auth}: want {says:?} in {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const S12: &str = "http://www.w3.org/2003/05/soap-envelope";

fn soap_call(
    path: &str,
    version: &str,
    msg: &str,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let ct = match version {
        "1.1" => "text/xml; charset=utf-8",
        _ => "application/soap+xml; charset=utf-8",
    };
    http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", ct)
        .header("soapaction", "\"\"")
        .header("authorization", "Bearer CLIENTOWNSECRET")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            msg.to_owned(),
        )))
        .unwrap()
}

fn session(ns: &str, token: &str) -> String {
    format!("<SessionHeader xmlns=\"{ns}\"><sessionId>{token}</sessionId></SessionHeader>")
}

/// On a SOAP route the brokered session is the envelope's
/// SessionHeader/sessionId — the client's replaced, one added to a Header
/// or an empty one, or a Header made — in SOAP 1.1 and 1.2, every other byte
/// as sent; no Authorization reaches the upstream. A token the upstream
/// stops taking (a SOAP `INVALID_SESSION_ID` fault, a REST 401) is fetched
/// anew once and the request sent again, and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_sessions_go_in_the_envelope_and_a_refused_token_is_renewed_once() {
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    // A route to Salesforce not marked SOAP still writes the session into
    // calls to a SOAP endpoint's path (here the tooling API).
    let soap_route = "[[route]]\nname = \"sf-tooling\"\nlistener = \"edge\"\nupstream = \"sf\"\nmatch = { path_prefix = \"/services/Soap/T/\" }\n[route.credentials]\nprincipals = [ { principal = \"etl-prod@acme.com\", when = { cn = \"etl-prod\" } } ]\n\n[[route]]\nname = \"sf-soap\"\nlistener = \"edge\"\nupstream = \"sf\"\nsoap = true\nmatch = { path_prefix = \"/services/Soap/\" }\n[route.credentials]\nprincipals = [ { principal = \"etl-prod@acme.com\", when = { cn = \"etl-prod\" } } ]\n";
    let gw = spawn_gateway(&gateway_config(&pki, &peer, soap_route));
    let prod = client(&pki, "etl-prod");
    let body = "<soapenv:Body>\n  <urn:query><urn:queryString>SELECT Id FROM Account</urn:queryString></urn:query>\n </soapenv:Body>";
    let partner = "urn:partner.soap.sforce.com";
    let cases = [
        // SOAP 1.1, the client's own SessionHeader and another header block.
        (
            "/services/Soap/u/60.0",
            "1.1",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{S11}\" xmlns:urn=\"{partner}\">\n <soapenv:Header>\n  <urn:SessionHeader><urn:sessionId>CLIENTSOAPSESSION</urn:sessionId></urn:SessionHeader>\n  <urn:CallOptions><urn:client>etl</urn:client></urn:CallOptions>\n </soapenv:Header>\n {body}\n</soapenv:Envelope>"),
            "<urn:SessionHeader><urn:sessionId>CLIENTSOAPSESSION</urn:sessionId></urn:SessionHeader>".to_owned(),
            partner,
            true,
        ),
        // SOAP 1.1 without a Header.
        (
            "/services/Soap/u/60.0",
            "1.1",
            format!("<soapenv:Envelope xmlns:soapenv=\"{S11}\" xmlns:urn=\"{partner}\">\n {body}\n</soapenv:Envelope>"),
            "<soapenv:Body>".to_owned(),
            partner,
            false,
        ),
        // SOAP 1.2, an empty Header, the enterprise API.
        (
            "/services/Soap/c/60.0",
            "1.2",
            format!("<soapenv:Envelope xmlns:soapenv=\"{S12}\" xmlns:urn=\"{partner}\">\n <soapenv:Header/>\n {body}\n</soapenv:Envelope>"),
            "<soapenv:Header/>".to_owned(),
            "urn:enterprise.soap.sforce.com",
            false,
        ),
        // The tooling API, through a route not marked SOAP, the client's
        // SessionHeader in a namespace of its own.
        (
            "/services/Soap/T/60.0",
            "1.1",
            format!("<soapenv:Envelope xmlns:soapenv=\"{S11}\" xmlns:urn=\"{partner}\">\n <soapenv:Header><SessionHeader xmlns=\"urn:bogus\"><sessionId>CLIENTSOAPSESSION</sessionId></SessionHeader></soapenv:Header>\n {body}\n</soapenv:Envelope>"),
            "<SessionHeader xmlns=\"urn:bogus\"><sessionId>CLIENTSOAPSESSION</sessionId></SessionHeader>".to_owned(),
            "urn:tooling.soap.sforce.com",
            true,
        ),
        // SOAP 1.2 without a Header, an Apex SOAP class.
        (
            "/services/Soap/class/LedgerService",
            "1.2",
            format!("<soapenv:Envelope xmlns:soapenv=\"{S12}\" xmlns:urn=\"{partner}\">\n {body}\n</soapenv:Envelope>"),
            "<soapenv:Body>".to_owned(),
            "http://soap.sforce.com/schemas/class/LedgerService",
            false,
        ),
    ];
    let expected = |msg: &str, at: &str, ns: &str, replaces: bool, token: &str| {
        let s = session(ns, token);
        let with = if replaces {
            s
        } else if at == "<soapenv:Header/>" {
            format!("<soapenv:Header>{s}</soapenv:Header>")
        } else {
            format!("<soapenv:Header>{s}</soapenv:Header><soapenv:Body>")
        };
        msg.replacen(at, &with, 1)
    };
    let mut token = String::new();
    for (path, version, msg, at, ns, replaces) in &cases {
        let r = send(gw.edge, prod.clone(), soap_call(path, version, msg))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path} {version}: {}", r.body);
        token = peer.control("stats").await["issued"][0]
            .as_str()
            .unwrap()
            .to_owned();
        // The upstream echoes what reached it.
        assert_eq!(
            r.body,
            expected(msg, at, ns, *replaces, &token),
            "{path} {version}"
        );
    }
    for req in peer.upstream_requests().await {
        let headers = req["headers"].as_array().unwrap();
        assert!(!headers.iter().any(|h| h[0] == "authorization"), "{req}");
        assert!(!req.to_string().contains("CLIENTSOAPSESSION"), "{req}");
        // Unencoded, so a fault can be read.
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "accept-encoding" && h[1] == "identity"),
            "{req}"
        );
    }
    assert_eq!(peer.control("stats").await["fetches"]["jwt_bearer"], 1);

    // A REST token for another user, then every session ends upstream.
    let r = as_client(&gw, &pki, "etl-reporting", "/services/data/v60.0/query").await;
    assert_eq!(r.status, 200, "{}", r.body);
    peer.control("expire").await;
    let seen = peer.upstream_requests().await.len();

    // SOAP: the fault is not the answer; one new session, sent again.
    let (path, version, msg, at, ns, replaces) = &cases[0];
    let r = send(gw.edge, prod.clone(), soap_call(path, version, msg))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let stats = peer.control("stats").await;
    assert_eq!(stats["fetches"]["jwt_bearer"], 3, "{stats}");
    let renewed = stats["issued"][2].as_str().unwrap();
    assert_ne!(renewed, token);
    assert_eq!(r.body, expected(msg, at, ns, *replaces, renewed));
    // REST: the 401 is not the answer either.
    let r = as_client(&gw, &pki, "etl-reporting", "/services/data/v60.0/query").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body_json(&r)["sub"], "reporting@acme.com");
    assert_eq!(peer.control("stats").await["fetches"]["jwt_bearer"], 4);
    // Each was sent twice: with the old session, then the new.
    assert_eq!(peer.upstream_requests().await.len(), seen + 4);
    gw.wait_event(
        "token_invalidated",
        &[("principal", "reporting@acme.com")],
        Duration::from_secs(5),
    );

    // Not a SOAP envelope: refused, nothing forwarded.
    let r = send(
        gw.edge,
        prod.clone(),
        soap_call("/services/Soap/u/60.0", "1.1", "{\"not\": \"xml\"}"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.headers["x-sealgate-refusal"], "not_a_soap_envelope");
    assert_eq!(peer.upstream_requests().await.len(), seen + 4);

    let log = gw.log_text(Duration::from_millis(300));
    for t in peer.control("stats").await["issued"].as_array().unwrap() {
        assert!(!log.contains(t.as_str().unwrap()), "a token in the log");
    }
    assert!(!log.contains("CLIENTSOAPSESSION"));
}

/// Salesforce's Pub/Sub API over gRPC: the session, its instance and its org
/// as the `accesstoken`, `instanceurl` and `tenantid` metadata, the client's
/// own `accesstoken` replaced; a real gRPC client and server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_carry_the_pubsub_session_metadata() {
    if !crate::grpc::grpc_ready() {
        return;
    }
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    let grpc_client = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    pki.write("grpc-client.crt", &grpc_client.cert_pem);
    pki.write("grpc-client.key", &grpc_client.key_pem);
    let (_server, port) = crate::grpc::serve(&pki);
    let u = peer.url();
    let pubsub = tls_upstream_cfg(
        &pki,
        "pubsub",
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        &format!("[upstream.pubsub.auth]\nkind = \"salesforce_jwt_bearer\"\nlogin = \"{u}\"\nconsumer_key = \"{CONSUMER_KEY}\"\nkey = \"app.key\"\nusername = \"etl-prod@acme.com\"\n"),
    );
    let extra = format!("{pubsub}\n[[route]]\nname = \"pubsub\"\nlistener = \"edge\"\nupstream = \"pubsub\"\nallow = [ {{ cn = \"etl-prod\" }} ]\nmatch = {{ path_prefix = \"/sealgate.Echo/\" }}\n");
    let gw = spawn_gateway(&gateway_config(&pki, &peer, &extra));
    // The client blocks; the gateway runs on the other worker meanwhile.
    let lines = tokio::task::block_in_place(|| crate::grpc::call(&pki, gw.edge, "Metadata", "x"));
    let msg = lines
        .iter()
        .find_map(|l| l.strip_prefix("MSG "))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let json = msg.rsplit_once(' ').unwrap().0;
    let md: serde_json::Value = serde_json::from_str(json).unwrap();
    let stats = peer.control("stats").await;
    assert_eq!(md["accesstoken"], stats["issued"][0], "{md}");
    assert_eq!(md["instanceurl"], u.as_str(), "{md}");
    assert_eq!(md["tenantid"], "00D5g000004ABCDEAZ", "{md}");
    assert!(md.get("authorization").is_none(), "{md}");
    assert!(!md.to_string().contains("CLIENTGRPCTOKEN"), "{md}");

    // UNAUTHENTICATED (trailers only): the session is fetched anew for the
    // next call.
    let lines = tokio::task::block_in_place(|| {
        crate::grpc::call(&pki, gw.edge, "Metadata", "unauthenticated")
    });
    assert_eq!(lines, ["STATUS UNAUTHENTICATED session expired"]);
    gw.wait_event(
        "token_invalidated",
        &[("upstream", "pubsub")],
        Duration::from_secs(5),
    );
    let lines = tokio::task::block_in_place(|| crate::grpc::call(&pki, gw.edge, "Metadata", "x"));
    assert!(lines.last().is_some_and(|l| l == "OK"), "{lines:?}");
    let stats = peer.control("stats").await;
    assert_eq!(stats["fetches"]["jwt_bearer"], 2, "{stats}");
    let json = lines[0]
        .strip_prefix("MSG ")
        .unwrap()
        .rsplit_once(' ')
        .unwrap()
        .0;
    let md: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(md["accesstoken"], stats["issued"][1], "{md}");
}

/// `use_instance_url` sends requests to the token's instance; a token with
/// `expires_in` is fetched anew ahead of its end (never sooner than halfway
/// through a short life); `sealgate token` fetches one and prints what came
/// back, the token only with `--show`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_lifetimes_and_the_token_command() {
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    let u = peer.url();
    // Nothing listens at the configured address: only the instance answers.
    let moved = format!("[upstream.moved]\nurl = \"http://127.0.0.1:9\"\n[upstream.moved.auth]\nkind = \"salesforce_jwt_bearer\"\nlogin = \"{u}\"\nconsumer_key = \"{CONSUMER_KEY}\"\nkey = \"app.key\"\nusername = \"reporting@acme.com\"\nuse_instance_url = true\n\n[[route]]\nname = \"moved\"\nlistener = \"edge\"\nupstream = \"moved\"\nallow = [ {{ cn = \"etl-prod\" }} ]\nmatch = {{ path_prefix = \"/services/data/v61.0/\" }}\n");
    let file = gateway_config(&pki, &peer, &moved);
    let gw = spawn_gateway(&file);
    let r = as_client(&gw, &pki, "etl-prod", "/services/data/v61.0/limits").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body_json(&r)["sub"], "reporting@acme.com");
    let reached = peer.upstream_requests().await.pop().unwrap();
    let host = u.trim_start_matches("http://");
    assert!(
        reached["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "host" && h[1] == host),
        "{reached}"
    );

    // Client credentials lasting 3 s: refreshed after 1.5 s.
    peer.control("expires_in-3").await;
    let cc = "/services/data/erp/client_secret_post/x";
    let fetches = |s: serde_json::Value| s["fetches"]["client_credentials"].as_u64().unwrap();
    for _ in 0..2 {
        let r = as_client(&gw, &pki, "etl-prod", cc).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(fetches(peer.control("stats").await), 1);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let r = as_client(&gw, &pki, "etl-prod", cc).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let started = Instant::now();
    while fetches(peer.control("stats").await) < 2 {
        assert!(started.elapsed() < Duration::from_secs(3), "not refreshed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The command, as an operator checks a connected app.
    let token = |args: &[&str]| {
        let out = Command::new(crate::support::process::BIN)
            .args(["token", "--config"])
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = token(&["--upstream", "sf", "--principal", "etl-prod@acme.com"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for says in [
        "salesforce_jwt_bearer".to_owned(),
        "principal: etl-prod@acme.com".to_owned(),
        format!("instance_url: {u}"),
        "org (Pub/Sub tenantid): 00D5g000004ABCDEAZ".to_owned(),
        "not shown: --show prints it".to_owned(),
    ] {
        assert!(out.contains(&says), "want {says:?} in {out}");
    }
    let issued = |s: serde_json::Value| -> Vec<String> {
        s["issued"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    let all = issued(peer.control("stats").await);
    for t in &all {
        assert!(
            !out.contains(t.as_str()) && !err.contains(t.as_str()),
            "{out}"
        );
    }
    let (code, out, _) = token(&[
        "--upstream",
        "sf",
        "--principal",
        "etl-prod@acme.com",
        "--show",
    ]);
    assert_eq!(code, Some(0));
    let last = issued(peer.control("stats").await).pop().unwrap();
    assert!(out.contains(&format!("token: {last}")), "{out}");
    let (code, out, err) = token(&["--upstream", "sf", "--principal", "stranger@acme.com"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.contains("invalid_grant") && err.contains("user hasn't approved this consumer"),
        "{err}"
    );
    let (code, _, err) = token(&["--upstream", "sf"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--principal"), "{err}");
    let (code, out, _) = token(&["--upstream", "erp-client_secret_basic"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("client_id: erp-connector") && out.contains("expires_in 3 s"),
        "{out}"
    );
    let (code, out, _) = token(&["--upstream", "keyed"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("static credential in header x-api-key") && !out.contains("STATICAPIKEY"),
        "{out}"
    );
    let (code, _, err) = token(&["--upstream", "nowhere"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no upstream \"nowhere\""), "{err}");
}

/// A route that signs its requests (WS-Security) and holds a Salesforce
/// session: the signature is made first and the SessionHeader written
/// beside it, so the upstream gets a message that still verifies and
/// carries the session; signing the SessionHeader itself is refused by
/// `check`, since the session replaces it after signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_soap_call_carries_the_session_beside_its_signature() {
    use crate::support::wssec::{policy, verify_now};
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    let mut signer = Leaf::new("gateway-signer", Usage::Signer);
    signer.alg = KeyAlg::Rsa2048;
    let signer = pki.ca.issue(&signer).unwrap();
    let key = pki.write("signer.key", &signer.key_pem);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cert = pki.write("signer.crt", &signer.cert_pem);
    let signed = |extra: &str| {
        format!("[[route]]\nname = \"sf-signed\"\nlistener = \"edge\"\nupstream = \"sf\"\nmatch = {{ path_prefix = \"/services/Soap/\" }}\n[route.credentials]\nprincipals = [ {{ principal = \"etl-prod@acme.com\", when = {{ cn = \"etl-prod\" }} }} ]\n[route.wssec.request]\nmode = \"sign\"\nkey = {key:?}\ncert = {cert:?}\n{extra}\n")
    };
    let file = gateway_config(&pki, &peer, &signed(""));
    let gw = spawn_gateway(&file);
    let msg = format!("<soapenv:Envelope xmlns:soapenv=\"{S11}\">\n <soapenv:Body><query xmlns=\"urn:partner.soap.sforce.com\"><queryString>SELECT Id FROM Account</queryString></query></soapenv:Body>\n</soapenv:Envelope>");
    let r = send(
        gw.edge,
        client(&pki, "etl-prod"),
        soap_call("/services/Soap/u/60.0", "1.1", &msg),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let token = peer.control("stats").await["issued"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        r.body
            .contains(&session("urn:partner.soap.sforce.com", &token)),
        "{}",
        r.body
    );
    verify_now(
        r.body.as_bytes(),
        &policy(&pki.ca, &[&signer]),
        std::time::SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", r.body));

    let bad = pki.write(
        "signs-session.toml",
        &std::fs::read_to_string(&file).unwrap().replace(
            &signed(""),
            &signed("sign_headers = [\"{urn:partner.soap.sforce.com}SessionHeader\"]"),
        ),
    );
    let out = Command::new(crate::support::process::BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("sign_headers: the SessionHeader is written after signing"),
        "{text}"
    );
}

/// An upstream that sends a SOAP route's 500 and then nothing: the fault
/// is read within the route's idle timeout, not waited on for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_that_stalls_is_not_waited_on() {
    struct Stalls(bool);
    impl http_body::Body for Stalls {
        type Data = bytes::Bytes;
        type Error = crate::support::BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.0, true) {
                return std::task::Poll::Pending;
            }
            let start = bytes::Bytes::from_static(b"<soapenv:Envelope");
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(start))))
        }
    }
    let pki = Pki::new();
    keys(&pki);
    let Some(peer) = Peer::start(&pki) else {
        return;
    };
    let stall = upstream(|_req| async {
        use http_body_util::BodyExt;
        let mut r = http::Response::new(Stalls(false).boxed());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r.headers_mut()
            .insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
        r
    })
    .await;
    let u = peer.url();
    let extra = format!("[upstream.stall]\nurl = \"http://{stall}\"\n[upstream.stall.auth]\nkind = \"salesforce_jwt_bearer\"\nlogin = \"{u}\"\nconsumer_key = \"{CONSUMER_KEY}\"\nkey = \"app.key\"\nusername = \"etl-prod@acme.com\"\n\n[[route]]\nname = \"stall\"\nlistener = \"edge\"\nupstream = \"stall\"\nsoap = true\nbody_idle_timeout = \"1s\"\nallow = [ {{ cn = \"etl-prod\" }} ]\nmatch = {{ path_prefix = \"/services/Soap/\" }}\n");
    let gw = spawn_gateway(&gateway_config(&pki, &peer, &extra));
    let msg = format!("<soapenv:Envelope xmlns:soapenv=\"{S11}\"><soapenv:Body><q/></soapenv:Body></soapenv:Envelope>");
    let started = Instant::now();
    let r = send(
        gw.edge,
        client(&pki, "etl-prod"),
        soap_call("/services/Soap/u/60.0", "1.1", &msg),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.headers["x-sealgate-refusal"], "upstream_stalled");
    assert!(took < Duration::from_secs(3), "{took:?}");
}
