//! The listener's TLS: rustls server config per listener, built from material
//! the runtime loaded, and a client-certificate verifier that remembers what
//! the peer presented so a refusal can name it. Reasons live in `reason`.

use crate::dn::Name;
use crate::fingerprint::Fingerprint;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
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

/// The listener's client-certificate check: a pinned certificate is trusted
/// as itself (validity still checked); any other goes to the WebPKI verifier
/// of the client CAs. Records what the peer presented either way.
struct ClientVerifier {
    /// None when the listener trusts pinned certificates only.
    chained: Option<Arc<dyn ClientCertVerifier>>,
    pinned: Vec<Fingerprint>,
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    freshness: super::crl::Freshness,
    leaf_only: bool,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("pinned", &self.pinned.len())
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

impl ClientVerifier {
    /// A chain the CA verifier accepted still needs CRLs that are current.
    fn fresh(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if self.freshness.is_empty() {
            return Ok(());
        }
        let checked = std::iter::once(end_entity)
            .chain(
                intermediates
                    .iter()
                    .take(if self.leaf_only { 0 } else { usize::MAX }),
            )
            .map(|c| c.as_ref());
        let issuers = super::crl::issuers_of(checked);
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match self.freshness.judge(issuers.iter().map(Vec::as_slice), now) {
            super::crl::Verdict::Fresh => Ok(()),
            super::crl::Verdict::Tolerated => {
                self.freshness.count_tolerated();
                Ok(())
            }
            super::crl::Verdict::Stale => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredRevocationList,
            )),
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let _ = PRESENTED.try_with(|s| *s.borrow_mut() = Some(end_entity.clone().into_owned()));
        if self.pinned.contains(&Fingerprint::of(end_entity)) {
            return pinned_valid(end_entity, now).map(|()| ClientCertVerified::assertion());
        }
        match &self.chained {
            Some(v) => {
                let ok = v.verify_client_cert(end_entity, intermediates, now)?;
                self.fresh(end_entity, intermediates, now)?;
                Ok(ok)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }
    // The handshake signature needs only the presented certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A pinned certificate needs no chain, but must be inside its validity.
fn pinned_valid(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    use rustls::CertificateError as C;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(C::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let v = cert.validity();
    if now < v.not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(C::NotValidYet));
    }
    if now > v.not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(C::Expired));
    }
    Ok(())
}

/// How a listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    Required,
    /// A client without one reaches only anonymous routes.
    Optional,
    Off,
}

/// Which certificates of a client's chain are checked against the CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlCheck {
    /// Every certificate below the trust anchor, as nginx's `ssl_crl` does.
    Chain,
    /// The client's own certificate only.
    Leaf,
}

/// What one listener's TLS is made of, loaded and checked by the runtime.
pub struct ServerSettings {
    pub identity: Arc<rustls::sign::CertifiedKey>,
    pub client_certs: ClientCerts,
    /// Anchors that issue client certificates (empty when `client_certs` is off).
    pub client_roots: rustls::RootCertStore,
    /// Client certificates trusted as themselves (SHA-256 of the DER), and
    /// the subjects of those known as files, sent as CA hints.
    pub pinned_clients: Vec<Fingerprint>,
    pub pinned_subjects: Vec<DistinguishedName>,
    pub crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    /// The CRLs' nextUpdate: a client whose revocation status rests on a
    /// stale one is refused (`crl_stale`) unless within the grace.
    pub freshness: super::crl::Freshness,
    pub crl_check: CrlCheck,
    pub tls13_only: bool,
    /// Session cache and ticket keys kept across reloads; `None`: no resumption.
    pub sessions: Option<crate::runtime::state::TlsSessions>,
}

/// A listener's TLS: the rustls config, and the client-certificate check
/// that a resumed session's certificate goes through again.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// The client verifier could not be built from the CRLs given.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the client verifier: {0}; check that each CRL was issued by a client CA")]
pub struct VerifierError(String);

/// Builds the rustls server config for one listener.
pub fn server_config(s: ServerSettings) -> Result<ServerTls, VerifierError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| VerifierError(e.to_string()))?;
    let mut client_verifier: Option<Arc<dyn ClientCertVerifier>> = None;
    let builder = match s.client_certs {
        ClientCerts::Off => builder.with_no_client_auth(),
        mode => {
            let chained = if s.client_roots.is_empty() {
                None
            } else {
                let mut vb = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(s.client_roots),
                    provider.clone(),
                )
                .with_crls(s.crls);
                // Either way a certificate whose issuer has no CRL loaded is
                // refused (`revocation_unknown`), never waved through.
                if s.crl_check == CrlCheck::Leaf {
                    vb = vb.only_check_end_entity_revocation();
                }
                if mode == ClientCerts::Optional {
                    vb = vb.allow_unauthenticated();
                }
                Some(vb.build().map_err(|e| VerifierError(e.to_string()))?)
            };
            let mut hints = chained
                .as_ref()
                .map(|c| c.root_hint_subjects().to_vec())
                .unwrap_or_default();
            hints.extend(s.pinned_subjects);
            let v: Arc<dyn ClientCertVerifier> = Arc::new(ClientVerifier {
                chained,
                pinned: s.pinned_clients,
                hints,
                mandatory: mode == ClientCerts::Required,
                algorithms: provider.signature_verification_algorithms,
                freshness: s.freshness,
                leaf_only: s.crl_check == CrlCheck::Leaf,
            });
            client_verifier = Some(v.clone());
            builder.with_client_cert_verifier(v)
        }
    };
    let mut sc = builder.with_cert_resolver(Arc::new(OneCert(s.identity)));
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    match s.sessions {
        Some(kept) => {
            sc.session_storage = kept.cache;
            if let Some(t) = kept.ticketer {
                sc.ticketer = t;
            }
        }
        None => {
            sc.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            sc.send_tls13_tickets = 0;
        }
    }
    Ok(ServerTls {
        config: Arc::new(sc),
        client_verifier,
    })
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

/// Fields of a presented certificate for a refusal log line.
#[derive(Debug, Default)]
pub struct PresentedCert {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub fingerprint_sha256: String,
}

pub fn describe(der: &CertificateDer<'_>) -> PresentedCert {
    let fp = Fingerprint::of(der).to_string();
    match X509Certificate::from_der(der) {
        Ok((_, c)) => PresentedCert {
            subject: Name::from_x509(c.subject()).to_string(),
            issuer: Name::from_x509(c.issuer()).to_string(),
            serial: crate::hex::upper(&super::identity::trim_serial(c.raw_serial()), ":"),
            fingerprint_sha256: fp,
        },
        Err(_) => PresentedCert {
            fingerprint_sha256: fp,
            ..Default::default()
        },
    }
}
