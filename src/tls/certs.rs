//! Reading certificates, keys and CRLs from PEM files, with errors that say
//! which file and what to do. `runtime::material` maps them to TOML paths.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source} (check the path; in a config file a relative path resolves against the file's directory)", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM {what} (expected a \"-----BEGIN {what}-----\" block)", .path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{} is not valid PEM: {detail}", .path.display())]
    BadPem { path: PathBuf, detail: String },
    #[error("{}: certificate {subject} expired {days} day(s) ago ({not_after}); renew it", .path.display())]
    Expired {
        path: PathBuf,
        subject: String,
        days: i64,
        not_after: String,
    },
    #[error("{}: certificate {subject} is not valid until {not_before}; check the clock or reissue it", .path.display())]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: String,
    },
    #[error("{}: private key does not match the certificate {subject}; pair the certificate with the key it was issued for", .path.display())]
    KeyMismatch { path: PathBuf, subject: String },
    #[error("{}: {detail}", .path.display())]
    Unusable { path: PathBuf, detail: String },
    #[error("{}: unsupported private key: {detail}", .path.display())]
    BadKey { path: PathBuf, detail: String },
}

impl CertError {
    /// Whether the problem is the private key's, so it is reported under the
    /// key's TOML key rather than the certificate's.
    pub fn concerns_key(&self, key_path: &Path) -> bool {
        match self {
            CertError::KeyMismatch { .. } | CertError::BadKey { .. } => true,
            CertError::Empty { what, .. } => *what == "PRIVATE KEY",
            CertError::Read { path, .. } | CertError::BadPem { path, .. } => path == key_path,
            _ => false,
        }
    }
}

/// Why the gateway holds a certificate: the `role` label of the expiry gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A listener's own certificate (and its chain).
    Listener,
    /// A CA that issues client certificates.
    ClientCa,
    /// The certificate presented to an upstream.
    UpstreamClient,
    /// A CA an upstream's certificate must chain to.
    UpstreamCa,
    /// A WS-Security signing certificate.
    Signer,
    /// A CA or intermediate that signer certificates chain to.
    SignerTrust,
    /// A client or signer certificate trusted as itself.
    Pinned,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Listener => "listener",
            Role::ClientCa => "client_ca",
            Role::UpstreamClient => "upstream_client",
            Role::UpstreamCa => "upstream_ca",
            Role::Signer => "signer",
            Role::SignerTrust => "signer_trust",
            Role::Pinned => "pinned",
        }
    }
}

/// What `check` prints and metrics export about one certificate.
#[derive(Debug, Clone)]
pub struct CertSummary {
    /// The TOML key that names it, such as `listener[0].tls.cert`.
    pub role: String,
    /// Why it is held, and by which listener, route or upstream (set by the loader).
    pub held: Role,
    pub name: String,
    /// SHA-256 of the DER, to tell certificates with one subject apart.
    pub fingerprint: crate::fingerprint::Fingerprint,
    pub path: PathBuf,
    pub subject: String,
    pub issuer: String,
    pub not_after_unix: i64,
}

impl CertSummary {
    pub fn days_left(&self) -> i64 {
        (self.not_after_unix - now_unix()).div_euclid(86_400)
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// All certificates in a PEM file (a chain or a CA bundle), in file order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    let certs = certs.map_err(|e| CertError::BadPem {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(CertError::Empty {
            path: path.to_path_buf(),
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::Empty {
            path: path.to_path_buf(),
            what: "PRIVATE KEY",
        },
        other => CertError::BadPem {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}

pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
    parse_crls(&read(path)?, path)
}

/// CRLs as PEM blocks, or one DER CRL (what distribution points serve).
pub fn parse_crls(
    bytes: &[u8],
    source: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
    // DER starts with a SEQUENCE tag; PEM with text.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())]);
    }
    let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(bytes).collect();
    let crls = crls.map_err(|e| CertError::BadPem {
        path: source.to_path_buf(),
        detail: e.to_string(),
    })?;
    if crls.is_empty() {
        return Err(CertError::Empty {
            path: source.to_path_buf(),
            what: "X509 CRL",
        });
    }
    Ok(crls)
}

/// Summarises a certificate and refuses one outside its validity period.
pub fn check_validity(
    role: &str,
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<CertSummary, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Unusable {
        path: path.to_path_buf(),
        detail: format!("unparseable certificate: {e}"),
    })?;
    let v = cert.validity();
    let now = now_unix();
    let subject = crate::dn::Name::from_x509(cert.subject()).to_string();
    if v.not_after.timestamp() < now {
        return Err(CertError::Expired {
            path: path.to_path_buf(),
            subject,
            days: (now - v.not_after.timestamp()) / 86_400,
            not_after: v.not_after.to_string(),
        });
    }
    if v.not_before.timestamp() > now {
        return Err(CertError::NotYetValid {
            path: path.to_path_buf(),
            subject,
            not_before: v.not_before.to_string(),
        });
    }
    Ok(CertSummary {
        role: role.to_string(),
        held: Role::Listener,
        name: String::new(),
        fingerprint: crate::fingerprint::Fingerprint::of(der),
        path: path.to_path_buf(),
        subject,
        issuer: crate::dn::Name::from_x509(cert.issuer()).to_string(),
        not_after_unix: v.not_after.timestamp(),
    })
}

/// Loads a certificate chain and its key, checks validity and that they belong together.
pub fn load_identity(
    role: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(rustls::sign::CertifiedKey, Vec<CertSummary>), CertError> {
    let chain = load_certs(cert_path)?;
    // Every certificate of the chain, intermediates too, must be in its validity period.
    let summaries = chain
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let role = if i == 0 {
                role.to_string()
            } else {
                format!("{role} (chain #{})", i + 1)
            };
            check_validity(&role, cert_path, c)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = load_key(key_path)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::BadKey {
            path: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(CertError::KeyMismatch {
            path: key_path.to_path_buf(),
            subject: summaries
                .first()
                .map(|s| s.subject.clone())
                .unwrap_or_default(),
        });
    }
    Ok((certified, summaries))
}
