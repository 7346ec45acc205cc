//! The listener's TLS: rustls server config per listener, a client-certificate
//! verifier that remembers what the peer presented, and a stable reason for
//! every refused handshake.

use super::certs::{self, CertError, CertSummary};
use super::identity::{fingerprint, hex_upper};
use crate::config::{ClientAuth, Config, ListenerTls, Problem, TlsVersion};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::cell::RefCell;
use std::sync::Arc;
use x509_parser::prelude::*;

tokio::task_local! {
    /// The end-entity certificate the peer presented, captured during the handshake
    /// so a refusal can be logged with its subject, issuer, serial and fingerprint.
    static PRESENTED: RefCell<Option<CertificateDer<'static>>>;
}

/// Runs a handshake future with a slot that the verifier fills with the
/// presented certificate; returns the future's output and the certificate.
pub async fn capture_presented<F: std::future::Future>(
    fut: F,
) -> (F::Output, Option<CertificateDer<'static>>) {
    let slot = RefCell::new(None);
    PRESENTED
        .scope(slot, async move {
            let out = fut.await;
            let cert = PRESENTED.with(|s| s.borrow_mut().take());
            (out, cert)
        })
        .await
}

/// Delegates to the WebPKI verifier; only records the presented certificate.
#[derive(Debug)]
struct CapturingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for CapturingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let _ = PRESENTED.try_with(|s| *s.borrow_mut() = Some(end_entity.clone().into_owned()));
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the rustls server config for one listener. `path` is the TOML path
/// of the listener's `tls` table, for error messages.
pub fn server_config(
    config: &Config,
    tls: &ListenerTls,
    path: &str,
    summaries: &mut Vec<CertSummary>,
) -> Result<Arc<rustls::ServerConfig>, Problem> {
    let at = |key: &str, e: CertError| Problem::new(format!("{path}.{key}"), e.to_string());
    let (certified, mut s) = certs::load_identity(
        &format!("{path}.cert"),
        &config.resolve(&tls.cert),
        &config.resolve(&tls.key),
    )
    .map_err(|e| match e {
        CertError::KeyMismatch { .. } => at("key", e),
        CertError::Read { ref path, .. } if *path == config.resolve(&tls.key) => at("key", e),
        CertError::Empty {
            what: "PRIVATE KEY",
            ..
        } => at("key", e),
        CertError::Unusable { .. } => at("key", e),
        e => at("cert", e),
    })?;
    summaries.append(&mut s);

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| Problem::new(format!("{path}.min_version"), e.to_string()))?;

    let builder = match (tls.client_auth, &tls.client_ca) {
        (ClientAuth::Off, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let ca_path = config.resolve(ca);
            let mut roots = rustls::RootCertStore::empty();
            for (i, der) in certs::load_certs(&ca_path)
                .map_err(|e| at("client_ca", e))?
                .into_iter()
                .enumerate()
            {
                let summary = certs::check_validity(&format!("{path}.client_ca"), &ca_path, &der)
                    .map_err(|e| at("client_ca", e))?;
                summaries.push(summary);
                roots.add(der).map_err(|e| {
                    Problem::new(
                        format!("{path}.client_ca"),
                        format!(
                            "certificate #{} in {} is not a usable trust anchor: {e}",
                            i + 1,
                            ca_path.display()
                        ),
                    )
                })?;
            }
            let mut crls = Vec::new();
            for (i, crl) in tls.crls.iter().enumerate() {
                crls.extend(
                    certs::load_crls(&config.resolve(crl))
                        .map_err(|e| Problem::new(format!("{path}.crls[{i}]"), e.to_string()))?,
                );
            }
            let mut vb = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                // As nginx's ssl_crl: the client's own certificate is checked; a chain
                // whose issuer has no CRL configured is refused, not waved through.
                .only_check_end_entity_revocation();
            if mode == ClientAuth::Optional {
                vb = vb.allow_unauthenticated();
            }
            let inner = vb.build().map_err(|e| {
                Problem::new(
                    format!("{path}.crls"),
                    format!("cannot build the client verifier: {e}; check that each CRL was issued by the client CA"),
                )
            })?;
            builder.with_client_cert_verifier(Arc::new(CapturingVerifier { inner }))
        }
    };
    let mut sc = builder.with_cert_resolver(Arc::new(OneCert(Arc::new(certified))));
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    sc.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    if let Ok(ticketer) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        sc.ticketer = ticketer;
    }
    Ok(Arc::new(sc))
}

/// The listener's one certificate, whatever name the client asks for.
#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Maps a failed handshake to a stable, operator-facing reason.
pub fn handshake_reason(err: &std::io::Error) -> &'static str {
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "peer_closed",
            _ => "other",
        };
    };
    tls_reason(tls)
}

pub fn tls_reason(e: &rustls::Error) -> &'static str {
    use rustls::{Error as E, PeerIncompatible as P};
    match e {
        E::NoCertificatesPresented => "no_client_cert",
        E::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                "bad_signature"
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "bad_eku"
            }
            CertificateError::BadEncoding => "bad_certificate",
            CertificateError::UnknownRevocationStatus => "revocation_unknown",
            CertificateError::Other(o) => match o.0.downcast_ref::<webpki::Error>() {
                // A CA certificate presented as a client's own.
                Some(webpki::Error::CaUsedAsEndEntity) => "bad_certificate",
                Some(webpki::Error::RequiredEkuNotFoundContext(_)) => "bad_eku",
                _ => "other",
            },
            _ => "other",
        },
        E::PeerIncompatible(p) => match p {
            P::NoCipherSuitesInCommon => "no_shared_cipher",
            P::SupportedVersionsExtensionRequired
            | P::ServerDoesNotSupportTls12Or13
            | P::ServerTlsVersionIsDisabledByOurConfig
            | P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            // signature_algorithms arrived with TLS 1.2; only older clients omit it.
            | P::SignatureAlgorithmsExtensionRequired => "protocol_version",
            _ => "other",
        },
        E::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion) => "protocol_version",
        E::NoApplicationProtocol => "no_shared_alpn",
        E::AlertReceived(a) => {
            use rustls::AlertDescription as A;
            match a {
                A::UnknownCA
                | A::BadCertificate
                | A::CertificateUnknown
                | A::CertificateExpired => "client_rejected_server_cert",
                A::ProtocolVersion => "protocol_version",
                A::HandshakeFailure | A::InsufficientSecurity => "no_shared_cipher",
                _ => "other",
            }
        }
        _ => "other",
    }
}

/// Who a refusal is most likely the fault of, for the log line.
pub fn fault_of(reason: &str) -> &'static str {
    match reason {
        "no_client_cert" | "expired" | "not_yet_valid" | "revoked" | "bad_eku"
        | "bad_certificate" => "client_certificate",
        "unknown_issuer" | "bad_signature" | "revocation_unknown" => "trust_chain",
        "protocol_version" | "no_shared_cipher" | "no_shared_alpn" => "client_tls_settings",
        "timeout" | "peer_closed" => "client_connection",
        // The client did not trust the certificate the gateway presented.
        "client_rejected_server_cert" => "gateway_certificate",
        _ => "unknown",
    }
}

/// Fields of a presented certificate for a refusal log line.
#[derive(Debug, Default)]
pub struct PresentedCert {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub fingerprint_sha256: String,
}

pub fn describe(der: &CertificateDer<'_>) -> PresentedCert {
    let fp = fingerprint(der);
    match X509Certificate::from_der(der) {
        Ok((_, c)) => PresentedCert {
            subject: crate::dn::rfc4514(c.subject()),
            issuer: crate::dn::rfc4514(c.issuer()),
            serial: hex_upper(c.raw_serial(), ":"),
            fingerprint_sha256: fp,
        },
        Err(_) => PresentedCert {
            fingerprint_sha256: fp,
            ..Default::default()
        },
    }
}
