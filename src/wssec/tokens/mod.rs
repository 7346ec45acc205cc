//! Security tokens: the signer's certificate (`cert`), where it comes from
//! (`keyref`: a BinarySecurityToken or a configured signer), the trust it
//! must chain to (`trust`), the Timestamp (`timestamp`) and the UsernameToken
//! (`username`).

mod cert;
mod keyref;
mod timestamp;
mod trust;
mod username;

pub use cert::{CertInfo, PublicKey, KEY_SLOTS};
pub use keyref::{resolve_signer, KeySource};
pub use timestamp::{check_timestamp, format_datetime, later, parse_datetime, Timestamp};
pub use trust::{TrustStore, Trusted};
pub use username::{
    check_username_token, MapPasswordStore, PasswordStore, Secret, UsernameOutcome,
};

pub const X509V3_TYPE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
pub const BASE64_ENCODING: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";
pub const SKI_TYPE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier";
pub const THUMBPRINT_TYPE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#ThumbprintSHA1";
pub const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
pub const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
