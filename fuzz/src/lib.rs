//! Fixed test PKI and policy shared by the `verify` fuzz target and the
//! corpus seeder, so seeded messages chain to the trust store the target uses.
//!
//! The keys below are throwaway RSA keys made for fuzzing only; they protect
//! nothing. RSA PKCS#1 v1.5 signatures are deterministic, so the CA and leaf
//! certificates built from them are byte-identical on every run, and the
//! fuzzer works at a fixed time (`NOW`) inside their validity, so nothing here
//! expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use sealgate::wssec::tokens::{MapPasswordStore, Secret, TrustStore};
use sealgate::wssec::verify::Policy;

const CA_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDAzboxKRI97/ih\n\
xzpBoUT+iT+O77aqrHEfCcxJ23w0a3B9UZfxLvfdWJZ9tI8aBHAt5sCK+kh8KNG7\n\
xzU8SJrGz0vLsO85bNJ+aj66lLt4eg1lx+JvOcpz2k8BuqrXtmQ6jX9d016aa0o8\n\
Zwj5BljD0XkrAJcj03zMBa2NrJcy95YNy+yECl69tqoffib7CxMMNsL5QcuXIFME\n\
qvXxEFPPRTwvZ6luHvnY1Htal9N5w8OQPcF8tQGEUO+10/cvUbTzGSvawAUK03ZL\n\
NiCbsatrNuLx6z1RVfcmuIaY/2YvSBR/VLKvgriUOqChHwXfEX3wxle/eA+S/nkq\n\
T+9mIV/VAgMBAAECggEABr0J9V7kmtKQw4K1iAatZSIB3SqGnVdyiq2qfKhVonVg\n\
1Jht8Yl9Mzi95b3SRIwEKa6HazQNJX29uszfEPDOrAUhtohEDCNABhgLgjThinfl\n\
kPmX8eA4sazfFwXho7FltmAso+hXxZjbWtoVB7MPliRzkiuunJtvIKhQJQPzst3B\n\
0plxfYQ9V465ryA96eGn28IKYtW1jWfU4Tovxarvn1CHQ/yjkbDRwLySwW7HccOW\n\
TiKS5tHSHhl9oidOlyUaRT6DZrDVa2ZlmGW+ppJ77TAhg1GtKok8vcRQ2zPANwJU\n\
9LckIumZ/ykBIvfB+qLPKi1FJ4xocyUht6VLkfqcLwKBgQDgKeBIhFXRDZBB8F1k\n\
ncSgkG4oLWe96UM0x0bXa8LMBjFfVTiwUldabM3XbFevWeZacMx7LZIyy6IN4Vkx\n\
Dn7BF5ky4th5PbhA+q2lHZyZ0/yXYihc77IEPB587USPpJ6jswz55q63Pw8OpXcs\n\
bhmi+1UyyTkF2XtCttuV/P18ywKBgQDcL6sHpIjQGYmvHcGypb9oNfDvo/8d0Qbx\n\
TaVHYzDiynUzsVf8JS468Ccb93eli2+mEPt4HN9O0GvaNrqCWPcBrXn6EC/1SDyu\n\
xXVPJFGzsCUmICRIPoA1aq3cy3WbuUNYprdH5RQOqNOwYvByhEV/wl9H2mjWspLu\n\
YwYDGMKh3wKBgQDayWSDws3znbZn9U9iLe5E/NLXWgHARRR4ReupxB67fWvg7U/I\n\
IIXr1vhNQwyONEN1kFS0APWJqGDCBWlFTS2ADyVSmj/IjenxWfnzh2Raa6JEquRU\n\
WQq5wWfMbNQXEwhXJCINIw7yAZUTqYIYllllTsOILwf94pfAtLK7wNI0YwKBgQCP\n\
FXry8HznnnDWl2O0D/meYs87KzsxyQ/V5zssdMzj0+TtvqUKea7dJgqEJgBeV4oq\n\
RIbluv1yXgZ4O3BgHCgHsw+87J/9qP+mIzLkRxnAxwqdB+4L9HGkRLrO7Hh0xaN6\n\
DHy1/6tVC2jlCqZuBH6VU15PdyMBwfGxcDAL+x8fyQKBgDKuHDJv8SOHRBC83MV5\n\
+OBwdsBoLPLaZgjMNexE15XL973gJgmBooIm7+PyM/0j9s9dHf9C9x0/nATDWCXH\n\
rj4dw68PpD7SB/dYDMJEMK4c11tcpGqnh8faL4gQ8rHuPvpAt8+uJ/1SEHhsz3uY\n\
/14c1uZW9zUOLy/tZ/7JAx2p\n\
-----END PRIVATE KEY-----\n\
";

const LEAF_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQCwh0iitIG2Osvj\n\
bt1TSFzae1CPgEGFuZxgUSA5hjnDEl5Wh6IbxHzcFSdovGNev+5zyAGdKP709AaT\n\
rzV5sKiGMEUHbG4W/fjFj5KKzFY05ZKLPt7yKvgSPIn4ofFnWnLjcB1PSBgF7YYE\n\
J2uTUtgsj150uEvuMxG0kSHCU8dgqfZ9lgEiSm7ukHhPtP4FPOJ5RPtpyanEO+0U\n\
ACnVFPECpDVZd/YgLqSvmXXWlbTz3pThORKhzIbVmNgcvTRZlM5IDKGwdCVUHXLx\n\
th8Nt4bPA8fcS5oQEBnMjbLtWgUTZwSfi8pe5vf5/+ih1ASmWjWy4QjB5affN2VL\n\
7MiV9ieNAgMBAAECggEAAJTxkFe39bnL4jwDTrr2U2IEqfRqQt6RvV+HE6l1l0cA\n\
OJjJ1/2Vy8PmFVpJmY5YYtlN6A6yiGwleWcibfw/EfImyBd7ZWgA4eXPPdXekt4O\n\
1ZandXTezHCWo9Mk0IpjxowgDJrYOWzG/EyE9j9Xpw3x6cCRv387l7TCv7k29wKW\n\
/pqiZN092hSmXXi8dpujTNJneVAfeGXEu6wjxm98E3e6DA78dFRsarVUmaSRSQBH\n\
y+kk8ctcvnUQ5WmbK0eySCgcvlc6FphWTnzHvORem628IKnEfB7PgO+utuUSFVkS\n\
sMAeOZjk0v0BXNWeQRYPOJm60K6CNufFotTQdwoloQKBgQDYJtGnv/N1ZFsbALox\n\
XC0ayEqUY27RoGZlZ2RdlNBZWpEAxtmaZ2CZQudr0h20zycXwnwT9ZD16Xz5QW7C\n\
qedoJSy21CLpBiehLl6s5uUA9xhrK7riDR/28jcfuhJNficOxFTDP5hhDbNNQXR0\n\
6WeR3aoXpJMcI0VRdF2DU35rwwKBgQDREndQfzdPrStay03W60/jl0EpuvsZ5Lx8\n\
fCqswSUr3HT3MpRE1DV0v/U6pEUfeDHNfHAhHaWYP0wLU5mbTXdmT3HQP+huSxXv\n\
mcHYd0miOxGEg6cP2Rs/mO6xVLhV5teeXKCJ1H/eLIBW01vmm2QNt6Sr4t1V6P+o\n\
ddc3NeP6bwKBgQCTQncpixupibKMBgXT5RGRoo005T01scqxISx+mQkNJyeM2Oyd\n\
RfrIz4zspxy39z2R8V0pF+8nqmgLRKnaE3jlOhZphMM38IqFRBsaPsAb1Twcn5FV\n\
uk1hp4koo1Me2mhvphB9aNE+pd/XLVXS5MU72kGsk+HplJoAMYAYHYUOkwKBgQDO\n\
q4JmgFsc2AHTbsUzfskqIYq4xa0Sm5n3NIa63vLvuK2m7sjCgUOWdWrk3R23Tglt\n\
J2VwVu4q4ec6Cxn8+0bcTAwl4AbTgEXe5A9K/CA9zkYyyDGM6QCWjYbmpOjTga4D\n\
TW0k0nrUFQmIysY93724EaEmiMxi8EBJNrPYT91c4QKBgQCltmbOg6ALVuliaL4u\n\
rDepNVEPzwmzU6O/Ej5+mIHWujnZE9IMTvK7bGHESNio58gPyLIt33jtQIN1i/e8\n\
H2ylQjmQRR5jJW66PPH1BBFmh/LR1ixsoOZvo4NT/mPyjOc7xgNfm+AiS+U0WIDt\n\
ylZMyXS0Ftn98iDS7Qv8/Rw6Kw==\n\
-----END PRIVATE KEY-----\n\
";

/// The instant the fuzz targets verify at, and the seeder signs at:
/// 2026-01-01T00:00:00Z.
pub const SIGNED_AT_SECS: u64 = 1_767_225_600;

pub fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SIGNED_AT_SECS)
}

/// `now` for verification: one second after signing.
pub fn now() -> SystemTime {
    signed_at() + Duration::from_secs(1)
}

pub struct Pki {
    pub ca_der: Vec<u8>,
    pub leaf_der: Vec<u8>,
    pub leaf_pem: String,
    pub leaf_key_der: Vec<u8>,
    pub leaf_key_pem: &'static str,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Sealgate Fuzz");
    d.push(DnType::CommonName, cn);
    d
}

/// Builds the CA and the leaf (RSA, valid 2025..2035) from the fixed keys.
pub fn pki() -> Pki {
    let rsa = &rcgen::PKCS_RSA_SHA256;
    let ca_key = KeyPair::from_pem_and_sign_algo(CA_KEY_PEM, rsa).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = dn("Fuzz CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.serial_number = Some(SerialNumber::from_slice(&[1]));
    ca.not_before = rcgen::date_time_ymd(2025, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::from_pem_and_sign_algo(LEAF_KEY_PEM, rsa).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name = dn("fuzz-client");
    leaf.serial_number = Some(SerialNumber::from_slice(&[0x10, 0x01]));
    leaf.not_before = rcgen::date_time_ymd(2025, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2035, 1, 1);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_der: ca_cert.der().to_vec(),
        leaf_der: leaf_cert.der().to_vec(),
        leaf_pem: leaf_cert.pem(),
        leaf_key_der: leaf_key.serialize_der(),
        leaf_key_pem: LEAF_KEY_PEM,
    }
}

/// A realistic route policy: the defaults (Body and Timestamp signed, SHA-1
/// refused, 300 s TTL, 60 s skew), the CA as the only anchor, the leaf as a
/// configured signer (for key-identifier references), and a password store so
/// UsernameTokens are checked.
pub fn policy(pki: &Pki) -> Policy {
    let mut trust = TrustStore::new();
    trust.add_anchor_der(&pki.ca_der).unwrap();
    trust.add_signer_der(&pki.leaf_der).unwrap();
    let mut p = Policy::new(trust);
    let mut store = MapPasswordStore::new();
    store.insert("etl", Secret::new("s3cret-pw"));
    p.passwords = Some(Arc::new(store));
    p
}
