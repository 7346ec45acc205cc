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
         [[route]]\nname = \"keyed\"\nlistener = \"edge\"\nupstream = \"keyed\"\nmatch = {{ path_prefix = \"/keyed/\" }}\n\n{}{}{}{extra}",
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

    // The upstream stops taking the token: its 401 passes back, and the
    // next request carries a new one.
    peer.control("expire").await;
    let r = send(
        gw.edge,
        prod.clone(),
        rest_get("/services/data/v60.0/query"),
    )
    .await
    .unwrap();
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
        if req["path"].as_str().unwrap().starts_with("/keyed/") {
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
