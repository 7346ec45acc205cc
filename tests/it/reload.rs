//! Rotation without restart: certificates, CA bundles, CRLs (files and
//! URLs) and allowlists replaced while the gateway serves; broken material
//! refused with the old snapshot still serving; revocation that reaches
//! resumed sessions and open connections; expiry made visible.

use crate::support::process::{spawn_gateway_with, Proc, BIN};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sealgate::pki::{Ca, Issued, KeyAlg, Leaf, Usage};
use sealgate::proxy::server::Options;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A gateway on `pki` with one route to a header echo, a 1 s grace period
/// (so retired connections close quickly) and `tls` added to the listener.
async fn echo_config(pki: &Pki, tls: &str, rest: &str) -> String {
    let up = header_echo_upstream().await;
    echo_config_to(pki, up, tls, rest)
}

fn echo_config_to(pki: &Pki, up: SocketAddr, tls: &str, rest: &str) -> String {
    config(
        pki,
        "required",
        &format!(
            "{tls}\n{}\n[upstream.up]\nurl = \"http://{up}\"\n{rest}",
            route("all", "/", "")
        ),
    )
    .replace("grace_period = \"5s\"", "grace_period = \"1s\"")
}

fn client_of(ca: &Ca, cn: &str) -> Issued {
    let mut l = Leaf::new(cn, Usage::Client);
    l.o = Some("Acme".into());
    l.alg = KeyAlg::EcdsaP256;
    ca.issue(&l).unwrap()
}

async fn count(gw: &TestGateway, line: &str) -> f64 {
    metric_value(&gw.metrics().await, line)
}

/// One client sending GETs over keep-alive connections until told to stop,
/// as an ETL tool does: a request the gateway closed the connection under is
/// sent once more on a new connection (it is a GET); anything else that is
/// not a 200 is a failure.
struct Load {
    cfg: Arc<Mutex<Arc<rustls::ClientConfig>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Load {
    fn start(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Load {
        let cfg = Arc::new(Mutex::new(cfg));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cfg.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let (mut ok, mut failures) = (0u64, Vec::new());
            let mut conn: Option<SendRequest<Full<Bytes>>> = None;
            while !s.load(Ordering::Relaxed) {
                let mut retried = false;
                loop {
                    if conn.as_mut().is_none_or(|c| c.is_closed()) {
                        let cfg = c.lock().unwrap().clone();
                        match keepalive(addr, cfg).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                failures.push(format!("connect: {e}"));
                                break;
                            }
                        }
                    }
                    let Some(sender) = conn.as_mut() else { break };
                    let sent = match sender.ready().await {
                        Ok(()) => sender.send_request(get("/load")).await,
                        Err(e) => Err(e),
                    };
                    match sent {
                        Ok(r) => {
                            let status = r.status();
                            let _ = r.into_body().collect().await;
                            if status == 200 {
                                ok += 1;
                            } else {
                                failures.push(format!("status {status}"));
                            }
                            break;
                        }
                        Err(e) if !retried => {
                            // The connection ended under the request: once more on a new one.
                            let _ = e;
                            conn = None;
                            retried = true;
                        }
                        Err(e) => {
                            failures.push(format!("request: {e}"));
                            conn = None;
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failures)
        });
        Load { cfg, stop, task }
    }

    fn switch(&self, cfg: Arc<rustls::ClientConfig>) {
        *self.cfg.lock().unwrap() = cfg;
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// An HTTP/1.1 keep-alive connection, its driver spawned.
async fn keepalive(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let (s, _) = keepalive_with_driver(addr, cfg).await?;
    Ok(s)
}

async fn keepalive_with_driver(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<(SendRequest<Full<Bytes>>, tokio::task::JoinHandle<()>), String> {
    let tls = tls_connect(addr, cfg).await.map_err(|e| e.to_string())?;
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((s, driver))
}

/// The certificate a new connection is served.
async fn served_cert(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tls = tls_connect(addr, cfg).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Client TLS trusting the server's CA, with an identity.
fn as_client(pki: &Pki, who: &Issued) -> Arc<rustls::ClientConfig> {
    client_tls(&pki.ca.cert_pem, Some(who), &[])
}

async fn reload_ok(gw: &TestGateway, toml: &str) {
    let r = gw.reload_with(toml).await;
    let r = r.unwrap_or_else(|e| panic!("reload refused: {:?}", e.problems()));
    assert!(r.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_keeps_valid_clients_and_cuts_the_revoked_one() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let crl_line = |crls: &str| format!("crls = [{crls}]");
    pki.write("ca.crl", &pki.ca.crl(&[]).unwrap().pem);
    let toml = |tls: &str| echo_config_to(&pki, up, tls, "");
    let gw = TestGateway::start(
        pki.dir.path(),
        &toml(&crl_line(&format!("{:?}", pki.path("ca.crl")))),
    )
    .await;
    let addr = gw.addr("edge");

    let (a, b, r) = (
        client_of(&pki.ca, "etl-a"),
        client_of(&pki.ca, "etl-b"),
        client_of(&pki.ca, "etl-stolen"),
    );
    let loads = [
        Load::start(addr, as_client(&pki, &a)),
        Load::start(addr, as_client(&pki, &b)),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. A new server certificate (a new key too): new connections get it.
    let old_served = served_cert(addr, as_client(&pki, &a)).await;
    assert_eq!(old_served, pki.server.der);
    let mut s = Leaf::new("localhost", Usage::Server);
    s.dns = vec!["localhost".into()];
    s.ips = vec!["127.0.0.1".parse().unwrap()];
    let renewed = pki.issue(&s);
    pki.write("server.crt", &renewed.cert_pem);
    pki.write("server.key", &renewed.key_pem);
    gw.gw.reloader().reload("test").await.unwrap();
    assert_eq!(served_cert(addr, as_client(&pki, &a)).await, renewed.der);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 2. A CRL revoking the stolen certificate: refused within one reload,
    //    and its open keep-alive connection closed after the grace period.
    let (mut stolen, stolen_conn) = keepalive_with_driver(addr, as_client(&pki, &r))
        .await
        .unwrap();
    let ok = stolen.send_request(get("/before")).await.unwrap();
    assert_eq!(ok.status(), 200);
    pki.write("ca.crl", &pki.ca.crl(&[r.serial]).unwrap().pem);
    let before = count(&gw, &refused_handshakes("revoked")).await;
    let revoked_at = Instant::now();
    reload_ok(&gw, &toml(&crl_line(&format!("{:?}", pki.path("ca.crl"))))).await;
    assert!(
        !attempt(addr, as_client(&pki, &r)).await,
        "revoked client admitted"
    );
    assert_eq!(
        count(&gw, &refused_handshakes("revoked")).await,
        before + 1.0
    );
    tokio::time::timeout(Duration::from_secs(5), stolen_conn)
        .await
        .expect("the revoked client's open connection outlived the grace period")
        .unwrap();
    let closed_after = revoked_at.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed before the grace: {closed_after:?}"
    );

    // 3. A new client CA beside the old one; clients move to it; the old one goes.
    let ca2 = Ca::new("Test Client CA 2026", "sealgate tests", 30).unwrap();
    pki.write("ca.crt", &format!("{}{}", pki.ca.cert_pem, ca2.cert_pem));
    // Each CA's clients need its CRL: without one their status is unknown.
    pki.write("ca2.crl", &ca2.crl(&[]).unwrap().pem);
    let both = format!("{:?}, {:?}", pki.path("ca.crl"), pki.path("ca2.crl"));
    reload_ok(&gw, &toml(&crl_line(&both))).await;
    let (a2, b2) = (client_of(&ca2, "etl-a"), client_of(&ca2, "etl-b"));
    assert!(
        attempt(addr, as_client(&pki, &a2)).await,
        "new CA's client refused during overlap"
    );
    loads[0].switch(as_client(&pki, &a2));
    loads[1].switch(as_client(&pki, &b2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pki.write("ca.crt", &ca2.cert_pem);
    // The old CA's CRL goes with it: a CRL whose issuer is not trusted is refused.
    reload_ok(&gw, &toml(&crl_line(&format!("{:?}", pki.path("ca2.crl"))))).await;
    assert!(
        !attempt(addr, as_client(&pki, &a)).await,
        "old CA's client admitted after removal"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut total = 0;
    for l in loads {
        let (ok, failures) = l.finish().await;
        assert!(failures.is_empty(), "valid clients failed: {failures:?}");
        assert!(ok > 20, "too few requests to mean anything: {ok}");
        total += ok;
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "sealgate_config_reloads_total{result=\"ok\"}"),
        4.0,
        "{m}"
    );
    assert!(total > 0);
}

/// Each kind of broken file: the reload is refused with the message `check`
/// prints, the old snapshot keeps serving, and the refusal is counted and
/// audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_old_snapshot_serving() {
    let pki = Pki::new();
    pki.write("ca.crl", &pki.ca.crl(&[]).unwrap().pem);
    let toml = echo_config(&pki, &format!("crls = [{:?}]", pki.path("ca.crl")), "").await;
    let file = pki.write("gw.toml", &toml);
    let gw = spawn_gateway_with(&file, &["--no-watch"]);
    let client = pki.etl_client(&[]);
    let metrics = || async { admin_get(gw.admin, "/metrics").await.1 };
    let serving = metrics().await;
    let hash = serving
        .lines()
        .find(|l| l.starts_with("sealgate_config_hash_info{"))
        .unwrap()
        .to_owned();

    let other = Ca::new("Some Other CA", "elsewhere", 30).unwrap();
    let mut gone = Leaf::new("localhost", Usage::Server);
    gone.dns = vec!["localhost".into()];
    gone.from_days = -20;
    gone.to_days = -1;
    let expired = pki.issue(&gone);
    let stranger_key = pki.client("x", "y", KeyAlg::EcdsaP256).key_pem;
    let cases: [(&str, &str, String, &str); 4] = [
        (
            "unparsable certificate",
            "server.crt",
            "not a certificate\n".into(),
            "server.crt",
        ),
        (
            "key not matching its certificate",
            "server.key",
            stranger_key,
            "server.key",
        ),
        (
            "CRL signed by the wrong CA",
            "ca.crl",
            other.crl(&[7]).unwrap().pem,
            "ca.crl",
        ),
        (
            "expired certificate",
            "server.crt",
            expired.cert_pem.clone(),
            "server.crt",
        ),
    ];
    for (i, (what, name, broken, path_in_message)) in cases.iter().enumerate() {
        let original = std::fs::read(pki.path(name)).unwrap();
        pki.write(name, broken);
        if *name == "server.crt" && *what == "expired certificate" {
            pki.write("server.key", &expired.key_pem);
        }
        // What `check` says about the same files.
        let check = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!check.status.success(), "{what}: check passed");
        let check_err = String::from_utf8_lossy(&check.stderr).into_owned();

        let (status, body) = if i % 2 == 0 {
            admin_post(gw.admin, "/reload").await
        } else {
            // The other way an operator reloads.
            let ok = std::process::Command::new("kill")
                .args(["-HUP", &gw.child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            (http::StatusCode::UNPROCESSABLE_ENTITY, String::new())
        };
        assert_eq!(status, 422, "{what}: {body}");
        let trigger = if i % 2 == 0 { "admin" } else { "SIGHUP" };
        let audit = gw.wait_event(
            "config_reload",
            &[("result", "error"), ("trigger", trigger)],
            Duration::from_secs(10),
        );
        let problems = audit["problems"].as_str().unwrap().to_owned();
        assert!(
            problems.contains(&pki.path(path_in_message).display().to_string()),
            "{what}: the audit event names no path: {audit}"
        );
        for p in problems.split("; ") {
            assert!(
                check_err.contains(p),
                "{what}: audit says {p:?}, check says {check_err:?}"
            );
        }
        if i % 2 == 0 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["result"], "error");
            assert_eq!(
                v["problems"].as_array().unwrap().join_str(),
                problems,
                "{what}"
            );
        }

        // The old snapshot still serves, and says so.
        assert_eq!(
            send(gw.edge, client.clone(), get("/x"))
                .await
                .unwrap()
                .status,
            200,
            "{what}"
        );
        let m = metrics().await;
        assert_eq!(
            metric_value(&m, "sealgate_config_reloads_total{result=\"error\"}"),
            (i + 1) as f64,
            "{what}"
        );
        assert_eq!(
            metric_value(&m, "sealgate_config_last_reload_successful"),
            0.0
        );
        assert!(
            m.contains(&hash),
            "{what}: the hash of what is live changed"
        );
        std::fs::write(pki.path(name), original).unwrap();
        if *what == "expired certificate" {
            pki.write("server.key", &pki.server.key_pem);
        }
    }
    // Fixed files reload cleanly: the same hash, as nothing changed.
    let (status, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["changed"], false);
    let m = metrics().await;
    assert_eq!(
        metric_value(&m, "sealgate_config_last_reload_successful"),
        1.0
    );
    assert!(metric_value(&m, "sealgate_config_last_reload_success_timestamp_seconds") > 1.7e9);
    assert!(m.contains(&hash));
    stop(gw);
}

trait JoinStr {
    fn join_str(&self) -> String;
}

impl JoinStr for Vec<serde_json::Value> {
    fn join_str(&self) -> String {
        self.iter()
            .map(|p| p.as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn stop(mut gw: Proc) {
    let _ = gw.child.kill();
    let _ = gw.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_refused_by_default_and_tolerated_within_its_grace() {
    let pki = Pki::new();
    // Issued ten days ago, due yesterday.
    pki.write("ca.crl", &pki.ca.crl_between(&[], -10, -1).unwrap().pem);
    let crls = format!("crls = [{:?}]", pki.path("ca.crl"));
    let up = header_echo_upstream().await;
    let gw = TestGateway::start(pki.dir.path(), &echo_config_to(&pki, up, &crls, "")).await;
    let addr = gw.addr("edge");
    let client = pki.etl_client(&[]);
    let before = count(&gw, &refused_handshakes("crl_stale")).await;
    assert!(
        !attempt(addr, client.clone()).await,
        "a stale CRL was relied on"
    );
    gw.wait_metric(
        &refused_handshakes("crl_stale"),
        &(before + 1.0).to_string(),
    )
    .await;

    reload_ok(
        &gw,
        &echo_config_to(&pki, up, &format!("{crls}\ncrl_stale_grace = \"2d\""), ""),
    )
    .await;
    assert!(
        attempt(addr, client.clone()).await,
        "refused within the grace"
    );
    gw.wait_metric(
        "sealgate_crl_stale_tolerated_total{name=\"edge\",role=\"client_ca\"}",
        "1",
    )
    .await;

    // Past the grace: refused again.
    reload_ok(
        &gw,
        &echo_config_to(&pki, up, &format!("{crls}\ncrl_stale_grace = \"12h\""), ""),
    )
    .await;
    assert!(
        !attempt(addr, client).await,
        "a CRL past its grace was relied on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_signer_crl_is_refused_by_default_and_tolerated_within_its_grace() {
    let pki = Pki::new();
    pki.write(
        "signers.crl",
        &pki.ca.crl_between(&[], -10, -1).unwrap().pem,
    );
    let up = upstream(|_req| async { http::Response::new(full("posted")) }).await;
    let toml = |grace: &str| {
        config(
            &pki,
            "required",
            &format!(
                "[[route]]\nname = \"ledger\"\nlistener = \"edge\"\nupstream = \"up\"\n[route.wssec.request]\nmode = \"verify\"\ntrust = {:?}\ncrls = [{:?}]\n{grace}\n\n[upstream.up]\nurl = \"http://{up}\"\n",
                pki.path("ca.crt"),
                pki.path("signers.crl"),
            ),
        )
    };
    let gw = TestGateway::start(pki.dir.path(), &toml("")).await;
    let addr = gw.addr("edge");
    let who = signer(&pki, "etl-signer");
    let post = || {
        let body = signed(crate::support::wssec::SOAP11, &who);
        Request::post("/soap")
            .header("host", "localhost")
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let r = send(addr, pki.etl_client(&[]), post()).await.unwrap();
    assert_ne!(r.status, 200, "{}", r.body);
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_signer_crl_stale\",result=\"failed\",route=\"ledger\"}",
        "1",
    )
    .await;

    reload_ok(&gw, &toml("crl_stale_grace = \"2d\"")).await;
    let r = send(addr, pki.etl_client(&[]), post()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    gw.wait_metric(
        "sealgate_crl_stale_tolerated_total{name=\"ledger\",role=\"signer_trust\"}",
        "1",
    )
    .await;
}

/// A CRL distribution point served by a test HTTP server that can be
/// stopped: each connection answers one request and closes.
struct CrlServer {
    addr: SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CrlServer {
    async fn start(first: Vec<u8>) -> CrlServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(first));
        let served = body.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let b = served.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(b),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        CrlServer { addr, body, task }
    }

    fn serve(&self, b: Vec<u8>) {
        *self.body.lock().unwrap() = b;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_from_a_url_is_fetched_verified_rotated_and_kept_when_the_server_goes() {
    let pki = Pki::new();
    let server = CrlServer::start(pki.ca.crl(&[]).unwrap().der).await;
    let url = format!("http://{}/client-ca.crl", server.addr);
    let tls = format!("crls = [{{ url = {url:?}, refresh = \"1s\", timeout = \"2s\" }}]");
    let gw = TestGateway::start(pki.dir.path(), &echo_config(&pki, &tls, "").await).await;
    let addr = gw.addr("edge");
    let (valid, stolen) = (
        client_of(&pki.ca, "etl-a"),
        client_of(&pki.ca, "etl-stolen"),
    );
    assert!(
        attempt(addr, as_client(&pki, &stolen)).await,
        "the first CRL revokes no one"
    );
    let fetched = gw.metrics().await;
    assert!(
        metric_value(&fetched, "sealgate_crl_fetches_total{result=\"ok\"}") >= 1.0,
        "{fetched}"
    );

    // The CA publishes a CRL revoking the stolen certificate (PEM this time).
    server.serve(pki.ca.crl(&[stolen.serial]).unwrap().pem.into_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while attempt(addr, as_client(&pki, &stolen)).await {
        assert!(Instant::now() < deadline, "the new CRL was not fetched");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(attempt(addr, as_client(&pki, &valid)).await);

    // A CRL the CA did not sign is not used.
    let other = Ca::new("Some Other CA", "elsewhere", 30).unwrap();
    one_more_fetch_error(&gw, || server.serve(other.crl(&[]).unwrap().der)).await;
    assert!(
        !attempt(addr, as_client(&pki, &stolen)).await,
        "an unverified CRL replaced the good one"
    );

    // An older CRL (a stale mirror, or someone on the plain-HTTP path) does
    // not bring the stolen certificate back.
    one_more_fetch_error(&gw, || {
        server.serve(pki.ca.crl_between(&[], -5, 7).unwrap().der)
    })
    .await;
    assert!(
        !attempt(addr, as_client(&pki, &stolen)).await,
        "an older CRL was rolled back in"
    );

    // A new CRL that arrives while another file is broken goes live once
    // that file is fixed, without anyone asking.
    let key = std::fs::read(pki.path("server.key")).unwrap();
    pki.write("server.key", "not a key\n");
    server.serve(pki.ca.crl(&[stolen.serial, valid.serial]).unwrap().der);
    gw.wait_metric_within(
        "sealgate_config_reloads_total{result=\"error\"}",
        "1",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        attempt(addr, as_client(&pki, &valid)).await,
        "a refused reload went live"
    );
    std::fs::write(pki.path("server.key"), key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempt(addr, as_client(&pki, &valid)).await {
        assert!(Instant::now() < deadline, "the waiting CRL never went live");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let valid = client_of(&pki.ca, "etl-b");

    // The server goes away: the last good copy stays, across reloads too.
    one_more_fetch_error(&gw, || server.task.abort()).await;
    gw.gw.reloader().reload("test").await.unwrap();
    assert!(
        !attempt(addr, as_client(&pki, &stolen)).await,
        "revocation lost with the server"
    );
    assert!(attempt(addr, as_client(&pki, &valid)).await);
}

/// Does `change`, then waits for the CRL fetcher to count one more failure.
async fn one_more_fetch_error(gw: &TestGateway, change: impl FnOnce()) {
    let line = "sealgate_crl_fetches_total{result=\"error\"}";
    let errors = count(gw, line).await;
    change();
    gw.wait_metric_within(line, &(errors + 1.0).to_string(), Duration::from_secs(5))
        .await;
}

/// Connects with `cfg` (whose session store holds what earlier connections
/// were given) and sends `GET /`: the kind of handshake and whether a 200 came.
async fn resume(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> (Option<rustls::HandshakeKind>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tls_connect(addr, cfg).await else {
        return (None, false);
    };
    let kind = s.get_ref().1.handshake_kind();
    let _ = s
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    // Read the rest so the session tickets that follow are taken in.
    let _ = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
    (kind, n > 0 && buf.starts_with(b"HTTP/1.1 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_cannot_outlive_a_revocation() {
    use rustls::HandshakeKind::{Full as FullHs, Resumed};
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let toml = |tls: &str| echo_config_to(&pki, up, tls, "");
    let gw = TestGateway::start(pki.dir.path(), &toml("crls = []")).await;
    let addr = gw.addr("edge");
    let (valid, stolen) = (
        client_of(&pki.ca, "etl-a"),
        client_of(&pki.ca, "etl-stolen"),
    );
    let (vcfg, scfg) = (as_client(&pki, &valid), as_client(&pki, &stolen));
    assert_eq!(resume(addr, scfg.clone()).await, (Some(FullHs), true));
    assert_eq!(
        resume(addr, scfg.clone()).await,
        (Some(Resumed), true),
        "no resumption to test"
    );
    assert_eq!(resume(addr, vcfg.clone()).await, (Some(FullHs), true));

    pki.write("ca.crl", &pki.ca.crl(&[stolen.serial]).unwrap().pem);
    reload_ok(&gw, &toml(&format!("crls = [{:?}]", pki.path("ca.crl")))).await;
    let before = count(&gw, &refused_handshakes("revoked")).await;
    let (kind, ok) = resume(addr, scfg.clone()).await;
    assert_eq!(
        kind,
        Some(Resumed),
        "the revoked client did not try to resume"
    );
    assert!(!ok, "a resumed session of a revoked client was served");
    assert_eq!(
        count(&gw, &refused_handshakes("revoked")).await,
        before + 1.0
    );
    // A valid client's session survives the reload.
    assert_eq!(resume(addr, vcfg.clone()).await, (Some(Resumed), true));

    // Resumption off: every connection is a full handshake.
    reload_ok(
        &gw,
        &toml(&format!(
            "crls = [{:?}]\nsession_resumption = false",
            pki.path("ca.crl")
        )),
    )
    .await;
    let fresh = as_client(&pki, &valid);
    assert_eq!(resume(addr, fresh.clone()).await, (Some(FullHs), true));
    assert_eq!(resume(addr, fresh).await, (Some(FullHs), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_metrics_carry_every_role() {
    let pki = Pki::new();
    let pinned = sealgate::pki::self_signed(&Leaf::new("salesforce-org", Usage::Client)).unwrap();
    pki.write("org.crt", &pinned.cert_pem);
    let up_client = pki.client("gateway-to-erp", "GW", KeyAlg::EcdsaP256);
    pki.write("up-client.crt", &up_client.cert_pem);
    let k = pki.write("up-client.key", &up_client.key_pem);
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let sig = signer(&pki, "gateway-signer");
    pki.write("signer.crt", &sig.cert_pem);
    let k = pki.write("signer.key", &sig.key_pem);
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pki.write("ca.crl", &pki.ca.crl(&[]).unwrap().pem);
    let erp = tls_upstream(&pki, |_req| async { http::Response::new(full("ok")) }).await;
    let rest = format!(
        "crls = [{crl:?}]\npinned_clients = [{{ cert = {org:?} }}]\n\
         [[route]]\nname = \"ledger\"\nlistener = \"edge\"\nupstream = \"erp\"\nmatch = {{ path_prefix = \"/soap\" }}\n\
         [route.wssec.request]\nmode = \"verify\"\ntrust = {ca:?}\n\
         [route.wssec.response]\nmode = \"sign\"\nkey = {sk:?}\ncert = {sc:?}\n\n\
         {}client_cert = {cc:?}\nclient_key = {ck:?}\n",
        tls_upstream_cfg(&pki, "erp", erp, ""),
        crl = pki.path("ca.crl"),
        org = pki.path("org.crt"),
        ca = pki.path("ca.crt"),
        sk = pki.path("signer.key"),
        sc = pki.path("signer.crt"),
        cc = pki.path("up-client.crt"),
        ck = pki.path("up-client.key"),
    );
    let gw = TestGateway::start(pki.dir.path(), &config(&pki, "required", &rest)).await;
    let m = gw.metrics().await;
    let gauge = "sealgate_certificate_not_after_timestamp_seconds{";
    let now = sealgate::tls::certs::now_unix() as f64;
    for (role, name) in [
        ("listener", "edge"),
        ("client_ca", "edge"),
        ("pinned", "edge"),
        ("upstream_client", "erp"),
        ("upstream_ca", "erp"),
        ("signer", "ledger"),
        ("signer_trust", "ledger"),
    ] {
        let line = m
            .lines()
            .find(|l| {
                l.starts_with(gauge)
                    && l.contains(&format!("role=\"{role}\""))
                    && l.contains(&format!("name=\"{name}\""))
            })
            .unwrap_or_else(|| panic!("no {role} {name} gauge in:\n{m}"));
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v > now && v < now + 400.0 * 86_400.0, "{line}");
        assert!(line.contains("subject=\""), "{line}");
    }
    assert!(
        m.lines().any(|l| l.starts_with(
            "sealgate_crl_next_update_timestamp_seconds{issuer=\"O=sealgate tests,CN=Test Client CA\""
        ) && l.contains("name=\"edge\",role=\"client_ca\"")),
        "{m}"
    );
}

/// Short-lived certificates cross each threshold while the gateway runs:
/// one audit event per threshold, then one when it expires; a key others can
/// read is reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_audit_events_fire_at_each_threshold_once() {
    let pki = Pki::new();
    let mut short = Leaf::new("localhost", Usage::Server);
    short.dns = vec!["localhost".into()];
    short.to_secs = Some(9);
    let cert = pki.issue(&short);
    pki.write("server.crt", &cert.cert_pem);
    let key = pki.write("server.key", &cert.key_pem);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let toml = echo_config(&pki, "", "").await.replace(
        "[server]\n",
        "[server]\nexpiry_warnings = [\"1h\", \"5s\"]\n",
    );
    let file = pki.write("gw.toml", &toml);
    let gw = spawn_gateway_with(&file, &["--no-watch"]);
    let lines = gw.lines_within(Duration::from_secs(12));
    stop(gw);
    let of = |event: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|v| v["event"] == event && v["role"] == "listener")
            .collect()
    };
    let expiring = of("certificate_expiring");
    let thresholds: Vec<&str> = expiring
        .iter()
        .map(|v| v["threshold"].as_str().unwrap())
        .collect();
    assert_eq!(thresholds, ["1h", "5s"], "{expiring:?}");
    for v in &expiring {
        assert_eq!(v["target"], "sealgate::audit", "{v}");
        assert_eq!(v["name"], "edge");
        assert!(v["path"].as_str().unwrap().ends_with("server.crt"));
    }
    assert_eq!(of("certificate_expired").len(), 1, "{lines:?}");
    let readable: Vec<_> = lines
        .iter()
        .filter(|v| v["event"] == "key_file_readable")
        .collect();
    assert_eq!(readable.len(), 1, "{readable:?}");
    assert!(readable[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("server.key"));
    // In the order of the certificate's life: 1h, 5s, then expired — logged
    // once its notAfter has passed, not before.
    let at = |event: &str, threshold: &str| {
        lines
            .iter()
            .position(|v| {
                v["event"] == event && v["role"] == "listener" && v["threshold"] == threshold
            })
            .unwrap_or_else(|| panic!("no {event} {threshold}: {lines:?}"))
    };
    assert!(at("certificate_expiring", "1h") < at("certificate_expiring", "5s"));
    assert!(at("certificate_expiring", "5s") < at("certificate_expired", "expired"));
    let expired = of("certificate_expired")[0];
    let logged = time::OffsetDateTime::parse(
        expired["timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        logged >= expired["not_after_unix"].as_i64().unwrap(),
        "{expired}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_within_the_given_window() {
    let pki = Pki::new();
    let mut soon = Leaf::new("localhost", Usage::Server);
    soon.dns = vec!["localhost".into()];
    soon.to_days = 10;
    let cert = pki.issue(&soon);
    pki.write("server.crt", &cert.cert_pem);
    pki.write("server.key", &cert.key_pem);
    let file = pki.write("gw.toml", &echo_config(&pki, "", "").await);
    let run = |window: &str| {
        std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&file)
            .args(["--fail-within", window])
            .output()
            .unwrap()
    };
    let fails = run("14d");
    let out = String::from_utf8_lossy(&fails.stdout);
    assert_eq!(fails.status.code(), Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("[listener edge]"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("expires in 9 day(s)") || line.contains("expires in 10 day(s)"),
        "{line}"
    );
    assert!(line.contains("within --fail-within"), "{line}");
    assert!(out.contains("[client_ca edge]"), "{out}");
    let passes = run("7d");
    assert!(
        passes.status.success(),
        "{}",
        String::from_utf8_lossy(&passes.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_files_reload_and_may_only_empty_when_they_say_so() {
    let pki = Pki::new();
    let list = pki.write("salesforce-ips.txt", "# Salesforce\n127.0.0.0/8\n");
    let tls = format!("allow_ips_files = [{list:?}]");
    let toml = echo_config(&pki, "", "")
        .await
        .replace("[listener.tls]", &format!("{tls}\n[listener.tls]"));
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    let client = pki.etl_client(&[]);
    assert!(attempt(addr, client.clone()).await);

    std::fs::write(&list, "10.0.0.0/8\n").unwrap();
    gw.gw.reloader().reload("test").await.unwrap();
    assert!(
        !attempt(addr, client.clone()).await,
        "a removed range still admitted"
    );
    let m = gw.metrics().await;
    assert!(metric_value(&m, "sealgate_connections_total{listener=\"edge\",reason=\"ip_not_allowed\",result=\"refused\"}") >= 1.0, "{m}");

    // An empty file is far more likely a broken download than a policy.
    std::fs::write(&list, "# nothing yet\n").unwrap();
    let e = gw.gw.reloader().reload("test").await.unwrap_err();
    let problems = e.problems().join("\n");
    assert!(
        problems.contains("salesforce-ips.txt") && problems.contains("none"),
        "{problems}"
    );
    std::fs::write(&list, "127.0.0.1/32\n").unwrap();
    gw.gw.reloader().reload("test").await.unwrap();
    assert!(attempt(addr, client.clone()).await);

    // Saying so explicitly admits no one.
    std::fs::write(&list, "# closed for maintenance\nnone\n").unwrap();
    gw.gw.reloader().reload("test").await.unwrap();
    assert!(!attempt(addr, client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_is_rebound_and_a_moved_admin_endpoint_refused() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let toml = echo_config_to(&pki, up, "", "");
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let old = gw.addr("edge");
    let client = pki.etl_client(&[]);
    assert!(attempt(old, client.clone()).await);

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let moved = toml.replacen(
        "listen = \"127.0.0.1:0\"\n[listener.tls]",
        &format!("listen = \"{free}\"\n[listener.tls]"),
        1,
    );
    assert_ne!(moved, toml);
    reload_ok(&gw, &moved).await;
    assert_eq!(gw.addr("edge"), free);
    assert!(attempt(free, client.clone()).await);
    assert!(
        tokio::net::TcpStream::connect(old).await.is_err(),
        "the old address still listens"
    );

    let admin_moved = moved.replacen(ADMIN, "[admin]\nlisten = \"127.0.0.1:1\"\n", 1);
    let e = gw.reload_with(&admin_moved).await.unwrap_err();
    let problems = e.problems().join("\n");
    assert!(
        problems.contains("admin") && problems.contains("restart"),
        "{problems}"
    );
    assert!(
        attempt(free, client).await,
        "a refused reload stopped the listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_buckets_and_blocks_survive_a_reload() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let toml = |extra_route: &str| {
        config(
            &pki,
            "optional",
            &format!(
                "{}{}\n[upstream.up]\nurl = \"http://{up}\"\n{extra_route}",
                route("slow", "/slow", "rate_limit = { key = \"client\", per_minute = 1, burst = 1 }"),
                route("named", "/named", "allow = [{ cn = \"etl-prod\" }]"),
            ),
        )
        .replace(
            "grace_period = \"5s\"\n",
            "grace_period = \"5s\"\n[server.blocking]\nmax_failures = 2\nwindow = \"1m\"\nduration = \"10m\"\n",
        )
    };
    let gw = TestGateway::start(pki.dir.path(), &toml("")).await;
    let addr = gw.addr("edge");
    let client = pki.etl_client(&[]);
    assert_eq!(
        send(addr, client.clone(), get("/slow/a"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send(addr, client.clone(), get("/slow/b"))
            .await
            .unwrap()
            .status,
        429
    );
    reload_ok(&gw, &toml(&route("more", "/more", ""))).await;
    assert_eq!(
        send(addr, client.clone(), get("/slow/c"))
            .await
            .unwrap()
            .status,
        429,
        "the bucket was reset"
    );
    assert_eq!(
        send(addr, client, get("/more/x")).await.unwrap().status,
        200
    );

    // An identity refused on a route twice is blocked (its address too).
    let other = client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client("etl-other", "ETL", KeyAlg::EcdsaP256)),
        &[],
    );
    for _ in 0..2 {
        assert_eq!(
            send(addr, other.clone(), get("/named/x"))
                .await
                .unwrap()
                .status,
            403
        );
    }
    let blocked = || async {
        let v: serde_json::Value =
            serde_json::from_str(&admin_get(gw.gw.admin_addr, "/blocked").await.1).unwrap();
        v["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!("{} {}", b["kind"], b["client"]))
            .collect::<Vec<_>>()
    };
    let before = blocked().await;
    assert!(
        before.iter().any(|b| b.starts_with("\"identity\"")),
        "{before:?}"
    );
    reload_ok(&gw, &toml("")).await;
    assert_eq!(blocked().await, before, "blocks were lost");
    assert!(
        send(addr, other, get("/more/x")).await.is_err(),
        "a blocked client was admitted after a reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_cache_survives_a_reload() {
    let pki = Pki::new();
    let up = upstream(|_req| async { http::Response::new(full("posted")) }).await;
    let toml = |extra: &str| {
        config(
            &pki,
            "required",
            &format!(
                "[[route]]\nname = \"ledger\"\nlistener = \"edge\"\nupstream = \"up\"\n[route.wssec.request]\nmode = \"verify\"\ntrust = {:?}\n{extra}\n\n[upstream.up]\nurl = \"http://{up}\"\n",
                pki.path("ca.crt"),
            ),
        )
    };
    let gw = TestGateway::start(pki.dir.path(), &toml("")).await;
    let addr = gw.addr("edge");
    let body = Bytes::from(signed(
        crate::support::wssec::SOAP11,
        &signer(&pki, "etl-signer"),
    ));
    let post = || {
        Request::post("/soap")
            .header("host", "localhost")
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(Full::new(body.clone()))
            .unwrap()
    };
    assert_eq!(
        send(addr, pki.etl_client(&[]), post())
            .await
            .unwrap()
            .status,
        200
    );
    reload_ok(&gw, &toml("max_ttl = \"10m\"")).await;
    let r = send(addr, pki.etl_client(&[]), post()).await.unwrap();
    assert_ne!(r.status, 200, "{}", r.body);
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_replay\",result=\"failed\",route=\"ledger\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_by_the_watch() {
    let pki = Pki::new();
    let toml = echo_config(&pki, "", "").await;
    let gw = TestGateway::start_with(
        pki.dir.path(),
        &toml,
        Options {
            watch: true,
            watch_debounce: Duration::from_millis(100),
        },
    )
    .await;
    let addr = gw.addr("edge");
    let client = pki.etl_client(&[]);
    let mut s = Leaf::new("localhost", Usage::Server);
    s.dns = vec!["localhost".into()];
    let renewed = pki.issue(&s);
    // Written as cert-manager and most tools do: the key, then the certificate.
    pki.write("server.key", &renewed.key_pem);
    pki.write("server.crt", &renewed.cert_pem);
    gw.wait_metric_within(
        "sealgate_config_reloads_total{result=\"ok\"}",
        "1",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(served_cert(addr, client).await, renewed.der);
}

/// The committed example material (certificates and CRL alike) must not run
/// out under a newcomer: a stale example CRL would refuse every client.
#[test]
fn the_example_material_has_a_year_left() {
    for policy in [
        "quickstart",
        "etl-to-salesforce",
        "salesforce-outbound-to-accounting",
    ] {
        let path = format!("{}/policies/{policy}.toml", env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(BIN)
            .args(["check", "--config", &path, "--fail-within", "365d"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{policy}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A client CA replaced together with the CRL its distribution point
/// serves: the reload fetches the new CRL rather than refusing the new CA
/// for want of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_ca_and_its_downloaded_crl_reload_together() {
    let pki = Pki::new();
    let server = CrlServer::start(pki.ca.crl(&[]).unwrap().der).await;
    let url = format!("http://{}/client-ca.crl", server.addr);
    let tls = format!("crls = [{{ url = {url:?}, refresh = \"1h\" }}]");
    let gw = TestGateway::start(pki.dir.path(), &echo_config(&pki, &tls, "").await).await;
    let addr = gw.addr("edge");
    assert!(attempt(addr, as_client(&pki, &client_of(&pki.ca, "etl-a"))).await);

    let ca2 = Ca::new("Test Client CA 2027", "sealgate tests", 30).unwrap();
    server.serve(ca2.crl(&[]).unwrap().der);
    pki.write("ca.crt", &ca2.cert_pem);
    let r = gw.gw.reloader().reload("test").await;
    assert!(r.is_ok(), "{:?}", r.map_err(|e| e.problems()));
    assert!(attempt(addr, as_client(&pki, &client_of(&ca2, "etl-a"))).await);
    assert!(!attempt(addr, as_client(&pki, &client_of(&pki.ca, "etl-a"))).await);
}
