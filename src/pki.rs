//! A small certificate authority on rcgen: `sealgate pki init` uses it to write
//! an example PKI, and the tests use it to make a fresh PKI for every run.
//! Example material only — never for production.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::path::Path;
use time::{Duration, OffsetDateTime};

pub use rcgen::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

/// What a certificate is for; sets key usage and extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Extended key usage serverAuth only: a client presenting it must be refused.
    ServerOnlyAsClient,
    /// A WS-Security message signer (digitalSignature, no EKU).
    Signer,
    /// keyEncipherment only: a certificate for encryption, which signers
    /// and verifiers must refuse for signatures.
    EncryptionOnly,
}

/// The fields of one certificate to issue.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cn: String,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub usage: Usage,
    pub alg: KeyAlg,
    /// Validity relative to now, in days (negative is in the past).
    pub from_days: i64,
    pub to_days: i64,
    /// When set, notAfter is this many seconds from now instead of
    /// `to_days` (short-lived certificates, expiry tests).
    pub to_secs: Option<i64>,
    pub serial: u64,
}

impl Leaf {
    pub fn new(cn: &str, usage: Usage) -> Leaf {
        Leaf {
            cn: cn.into(),
            o: None,
            ou: None,
            dns: Vec::new(),
            ips: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            usage,
            alg: KeyAlg::EcdsaP256,
            from_days: -1,
            to_days: 365,
            to_secs: None,
            serial: next_serial(),
        }
    }
}

fn next_serial() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    // Positive and non-zero, as RFC 5280 asks.
    (u64::from_be_bytes(b) >> 2) | 1
}

/// A certificate with its private key, in PEM and DER.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// The private key as PKCS#8 DER.
    pub key_der: Vec<u8>,
    pub serial: u64,
}

/// A CRL, in PEM and DER.
pub struct Crl {
    pub pem: String,
    pub der: Vec<u8>,
}

impl Issued {
    fn new(cert: &rcgen::Certificate, key: &KeyPair, serial: u64) -> Issued {
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial,
        }
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate authority: a self-signed root, or an intermediate issued by another.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: u64,
}

fn keypair(alg: KeyAlg) -> Result<KeyPair, Error> {
    use rcgen::RsaKeySize as R;
    let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
    match alg {
        KeyAlg::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlg::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlg::Rsa2048 => rsa(R::_2048),
        KeyAlg::Rsa3072 => rsa(R::_3072),
        KeyAlg::Rsa4096 => rsa(R::_4096),
    }
}

fn ca_params(cn: &str, org: &str, from_days: i64, to_days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, org);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = days(from_days);
    p.not_after = days(to_days);
    p
}

fn days(n: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(n)
}

impl Ca {
    /// A new self-signed CA valid for `valid_days` from yesterday.
    pub fn new(cn: &str, org: &str, valid_days: i64) -> Result<Ca, Error> {
        Ca::new_with(cn, org, valid_days, KeyAlg::EcdsaP256)
    }

    /// A CA whose own key is `alg`.
    pub fn new_with(cn: &str, org: &str, valid_days: i64, alg: KeyAlg) -> Result<Ca, Error> {
        let key = keypair(alg)?;
        let mut p = ca_params(cn, org, -1, valid_days);
        let serial = next_serial();
        p.serial_number = Some(SerialNumber::from(serial));
        let cert = p.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
            issuer: Issuer::new(p, key),
        })
    }

    /// An intermediate CA issued by this one, valid for `valid_days` from yesterday.
    pub fn intermediate(&self, cn: &str, org: &str, valid_days: i64) -> Result<Ca, Error> {
        let key = keypair(KeyAlg::EcdsaP256)?;
        let mut p = ca_params(cn, org, -1, valid_days);
        let serial = next_serial();
        p.serial_number = Some(SerialNumber::from(serial));
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
            issuer: Issuer::new(p, key),
        })
    }

    /// Issues a certificate signed by this CA.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, Error> {
        self.issue_for(leaf, keypair(leaf.alg)?)
    }

    /// Issues a certificate for a key that already has one (a renewal that
    /// keeps the key, as many operators do); `key_pem` is PKCS#8 PEM.
    pub fn reissue(&self, leaf: &Leaf, key_pem: &str) -> Result<Issued, Error> {
        self.issue_for(leaf, KeyPair::from_pem(key_pem)?)
    }

    fn issue_for(&self, leaf: &Leaf, key: KeyPair) -> Result<Issued, Error> {
        let cert = leaf_params(leaf)?.signed_by(&key, &self.issuer)?;
        Ok(Issued::new(&cert, &key, leaf.serial))
    }

    /// A CRL from this CA revoking the given serials, valid for a week.
    pub fn crl(&self, revoked: &[u64]) -> Result<Crl, Error> {
        self.crl_between(revoked, -1, 7)
    }

    /// A CRL issued `this_update` days from now (negative: in the past) whose
    /// next update is due `next_update` days from now.
    pub fn crl_between(
        &self,
        revoked: &[u64],
        this_update: i64,
        next_update: i64,
    ) -> Result<Crl, Error> {
        let p = CertificateRevocationListParams {
            this_update: days(this_update),
            next_update: days(next_update),
            crl_number: SerialNumber::from(next_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: days(this_update),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = p.signed_by(&self.issuer)?;
        Ok(Crl {
            pem: crl.pem()?,
            der: crl.der().to_vec(),
        })
    }
}

/// The subject, names, usages and validity of one leaf.
fn leaf_params(leaf: &Leaf) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, leaf.cn.as_str());
    if let Some(ou) = &leaf.ou {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou.as_str());
    }
    if let Some(o) = &leaf.o {
        p.distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    for d in &leaf.dns {
        p.subject_alt_names
            .push(SanType::DnsName(d.clone().try_into()?));
    }
    for ip in &leaf.ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for u in &leaf.uris {
        p.subject_alt_names
            .push(SanType::URI(u.clone().try_into()?));
    }
    for e in &leaf.emails {
        p.subject_alt_names
            .push(SanType::Rfc822Name(e.clone().try_into()?));
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = match leaf.usage {
        Usage::Server | Usage::ServerOnlyAsClient => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        Usage::Client | Usage::Signer => vec![KeyUsagePurpose::DigitalSignature],
        Usage::EncryptionOnly => vec![KeyUsagePurpose::KeyEncipherment],
    };
    p.extended_key_usages = match leaf.usage {
        Usage::Server | Usage::ServerOnlyAsClient => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Signer | Usage::EncryptionOnly => vec![],
    };
    p.use_authority_key_identifier_extension = true;
    p.not_before = days(leaf.from_days);
    p.not_after = match leaf.to_secs {
        Some(s) => OffsetDateTime::now_utc() + Duration::seconds(s),
        None => days(leaf.to_days),
    };
    p.serial_number = Some(SerialNumber::from(leaf.serial));
    Ok(p)
}

/// A certificate signed by its own key the way `openssl req -x509` and
/// Salesforce's Certificate and Key Management make one: CA:TRUE, no key
/// usage, no extended key usage. Trusted only when pinned.
pub fn self_signed(leaf: &Leaf) -> Result<Issued, Error> {
    let key = keypair(leaf.alg)?;
    let mut p = leaf_params(leaf)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = Vec::new();
    p.extended_key_usages = Vec::new();
    p.use_authority_key_identifier_extension = false;
    let cert = p.self_signed(&key)?;
    Ok(Issued::new(&cert, &key, leaf.serial))
}

/// Files written by `sealgate pki init`.
pub const INIT_FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "ca.crl",
    "gateway.crt",
    "gateway.key",
    "client.crt",
    "client.key",
    "gateway-client.crt",
    "gateway-client.key",
    "signer.crt",
    "signer.key",
    "gateway-signer.crt",
    "gateway-signer.key",
    "salesforce-org.crt",
    "salesforce-org.key",
];

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; pass --force to overwrite the example PKI")]
    Exists(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Gen(#[from] Error),
}

/// Writes an example PKI into `dir`: one CA that issues the gateway's server
/// certificate (localhost), an ETL client certificate, the gateway's own
/// client certificate for upstreams, a WS-Security signer, and an empty CRL;
/// the CA, gateway and client keys are `alg` (the signers stay as they are).
pub fn init(
    dir: &Path,
    force: bool,
    valid_days: i64,
    alg: KeyAlg,
) -> Result<Vec<String>, InitError> {
    if !force {
        if let Some(f) = INIT_FILES.iter().find(|f| dir.join(f).exists()) {
            return Err(InitError::Exists(dir.join(f).display().to_string()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| InitError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let ca = Ca::new_with(
        "sealgate example CA",
        "sealgate example (NOT FOR PRODUCTION)",
        valid_days,
        alg,
    )?;
    let issue = |cn: &str, ou: &str, usage: Usage, dns: &[&str], uris: &[&str]| {
        let mut l = Leaf::new(cn, usage);
        l.o = Some("sealgate example".into());
        l.ou = Some(ou.into());
        l.dns = dns.iter().map(|s| s.to_string()).collect();
        l.uris = uris.iter().map(|s| s.to_string()).collect();
        l.to_days = valid_days;
        if usage != Usage::Signer {
            l.alg = alg;
        }
        if usage == Usage::Server {
            l.ips = vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ];
        }
        ca.issue(&l)
    };
    let gateway = issue("localhost", "Gateway", Usage::Server, &["localhost"], &[])?;
    let client = issue(
        "etl-client",
        "ETL",
        Usage::Client,
        &[],
        &["spiffe://example.org/etl"],
    )?;
    let gw_client = issue("sealgate-gateway", "Gateway", Usage::Client, &[], &[])?;
    let signer = issue("accounting-signer", "Accounting", Usage::Signer, &[], &[])?;
    // The gateway's own WS-Security signing certificate: RSA, which every
    // Java stack accepts.
    let mut gw_signer = Leaf::new("sealgate-gateway-signer", Usage::Signer);
    gw_signer.o = Some("sealgate example".into());
    gw_signer.ou = Some("Gateway".into());
    gw_signer.alg = KeyAlg::Rsa2048;
    gw_signer.to_days = valid_days;
    let gw_signer = ca.issue(&gw_signer)?;
    // A Salesforce org's client certificate as Certificate and Key
    // Management makes it: self-signed, pinned rather than chained.
    let mut org = Leaf::new("acme-salesforce-org", Usage::Client);
    org.o = Some("sealgate example".into());
    org.alg = KeyAlg::Rsa2048;
    org.to_days = valid_days;
    let org = self_signed(&org)?;
    // Due for its next update when the CA ends: an example PKI has no one
    // publishing fresh CRLs, and a stale one refuses every client (crl_stale).
    let crl = ca.crl_between(&[], -1, valid_days)?;
    let files: Vec<(&str, &str)> = vec![
        ("ca.crt", &ca.cert_pem),
        ("ca.key", &ca.key_pem),
        ("ca.crl", &crl.pem),
        ("gateway.crt", &gateway.cert_pem),
        ("gateway.key", &gateway.key_pem),
        ("client.crt", &client.cert_pem),
        ("client.key", &client.key_pem),
        ("gateway-client.crt", &gw_client.cert_pem),
        ("gateway-client.key", &gw_client.key_pem),
        ("signer.crt", &signer.cert_pem),
        ("signer.key", &signer.key_pem),
        ("gateway-signer.crt", &gw_signer.cert_pem),
        ("gateway-signer.key", &gw_signer.key_pem),
        ("salesforce-org.crt", &org.cert_pem),
        ("salesforce-org.key", &org.key_pem),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = dir.join(name);
        write_file(&path, body, name.ends_with(".key")).map_err(|source| InitError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// Writes a file; private keys are readable by their owner only.
fn write_file(path: &Path, body: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)?;
    // `mode` applies to a new file only; an overwritten key is narrowed too.
    if private {
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    f.write_all(body.as_bytes())
}
