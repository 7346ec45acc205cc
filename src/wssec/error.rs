//! Why a message was refused, for every part of WS-Security: the reader,
//! the envelope scan, XML-Signature, the tokens, the verifier and the signer
//! all refuse with these, so each knows only the modules below it.

use super::c14n::C14nError;
use super::reason::Reason;
use super::xml::XmlError;

/// Why a message was refused. `reason()` is stable (metrics, logs);
/// `fault_code()` is what the caller is told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WssecError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("bad SOAP envelope: {0}")]
    BadEnvelope(&'static str),
    #[error("header block {0} appears more than once")]
    DuplicateHeaderBlock(String),
    #[error("no wsse:Security header")]
    NoSecurityHeader,
    #[error("more than one wsse:Security header")]
    TwoSecurityHeaders,
    #[error("more than one ds:Signature in the Security header")]
    TwoSignatures,
    #[error("more than one Timestamp in the Security header")]
    TwoTimestamps,
    #[error("more than one UsernameToken in the Security header")]
    TwoUsernameTokens,
    #[error("Security header too large to hold")]
    SecurityHeaderTooLarge,
    #[error("too many {0} in the message")]
    TooManyParts(&'static str),
    #[error("unsupported token or feature: {0}")]
    UnsupportedToken(&'static str),
    #[error("duplicate Id {0:?}")]
    DuplicateId(String),
    #[error("message is not signed")]
    Unsigned,
    #[error("malformed Signature: {0}")]
    MalformedSignature(&'static str),
    #[error("algorithm not allowed: {0}")]
    AlgorithmNotAllowed(String),
    #[error("SHA-1 is not allowed by policy")]
    Sha1NotAllowed,
    #[error("HMACOutputLength is never allowed")]
    HmacOutputLength,
    #[error("transform not allowed: {0}")]
    TransformNotAllowed(String),
    #[error("too many References")]
    TooManyReferences,
    #[error("Reference URI is not a bare-name #id: {0:?}")]
    BadReferenceUri(String),
    #[error("Manifest references are not allowed")]
    ManifestNotAllowed,
    #[error("two References to one element")]
    DuplicateReference,
    #[error("Reference {0} names no element")]
    ReferenceNotFound(String),
    #[error("Reference {uri} points to an element outside the allowed places ({found})")]
    ReferenceNotAllowed { uri: String, found: &'static str },
    #[error("bad base64: {0}")]
    BadBase64(&'static str),
    #[error("digest mismatch for Reference {0}")]
    DigestMismatch(String),
    #[error("SignatureValue does not verify")]
    BadSignature,
    #[error("signature algorithm does not match the key type")]
    AlgorithmKeyMismatch,
    #[error("bad KeyInfo: {0}")]
    BadKeyInfo(&'static str),
    #[error("a bare KeyValue is not allowed")]
    KeyValueNotAllowed,
    #[error("RetrievalMethod is not allowed")]
    RetrievalMethodNotAllowed,
    #[error("security token unavailable: {0}")]
    TokenUnavailable(String),
    #[error("bad security token: {0}")]
    BadToken(&'static str),
    #[error("signer certificate is not trusted: {0}")]
    UntrustedSigner(String),
    #[error("signer key is RSA-{0}: under 2048 bits (allow_legacy_keys accepts it)")]
    WeakKey(usize),
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    #[error("signer certificate has expired")]
    SignerExpired,
    #[error("signer certificate is not yet valid")]
    SignerNotYetValid,
    #[error("signer certificate is revoked")]
    SignerRevoked,
    #[error("the CRL for the signer's certificate is past its nextUpdate; its revocation status is unknown")]
    SignerCrlStale,
    #[error("no Timestamp")]
    NoTimestamp,
    #[error("bad Timestamp: {0}")]
    BadTimestamp(&'static str),
    #[error("message has expired")]
    MessageExpired,
    #[error("Created is in the future")]
    CreatedInFuture,
    #[error("Timestamp lifetime longer than allowed")]
    TtlTooLong,
    #[error("Body is not signed")]
    BodyNotSigned,
    #[error("Timestamp is not signed")]
    TimestampNotSigned,
    #[error("header block {0} is not signed")]
    HeaderNotSigned(String),
    #[error("a comment inside the signed element {0}")]
    CommentInSignedPart(String),
    #[error("message replayed")]
    Replay,
    #[error("replay cache is full")]
    ReplayCacheFull,
    #[error("the shared replay store did not answer")]
    ReplayStoreUnavailable,
    /// The signer is not the one the caller's binding requires.
    #[error("the signer does not match the client identity the route requires")]
    IdentityMismatch,
    #[error("no UsernameToken")]
    NoUsernameToken,
    #[error("bad UsernameToken: {0}")]
    BadUsernameToken(&'static str),
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("the message already has a Security header for this receiver")]
    AlreadySecured,
    #[error("the Body names the prefix {0:?} in an attribute value where it is bound by a declaration canonicalization leaves out, so a signature made as the message streams would not cover its meaning; declare it on the Envelope or the Body, or raise max_body so the message is signed whole")]
    ValuePrefixUnsigned(String),
    #[error("header block {0} to be signed is not in the message")]
    MissingHeaderBlock(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("the signed message does not verify: {0}")]
    SelfCheck(Box<WssecError>),
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl WssecError {
    /// Stable machine reason, for metrics labels, logs and faults.
    pub fn reason(&self) -> Reason {
        use Reason as R;
        use WssecError as E;
        match self {
            E::Xml(e) => e.reason(),
            E::BadEnvelope(_) => R::BadEnvelope,
            E::DuplicateHeaderBlock(_) => R::DuplicateHeaderBlock,
            E::NoSecurityHeader => R::NoSecurityHeader,
            E::TwoSecurityHeaders => R::TwoSecurityHeaders,
            E::TwoSignatures => R::TwoSignatures,
            E::TwoTimestamps => R::TwoTimestamps,
            E::TwoUsernameTokens => R::TwoUsernameTokens,
            E::SecurityHeaderTooLarge => R::SecurityHeaderTooLarge,
            E::TooManyParts(_) => R::TooManyParts,
            E::UnsupportedToken(_) => R::UnsupportedToken,
            E::DuplicateId(_) => R::DuplicateId,
            E::Unsigned => R::Unsigned,
            E::MalformedSignature(_) => R::MalformedSignature,
            E::AlgorithmNotAllowed(_) => R::AlgorithmNotAllowed,
            E::Sha1NotAllowed => R::Sha1NotAllowed,
            E::HmacOutputLength => R::HmacOutputLength,
            E::TransformNotAllowed(_) => R::TransformNotAllowed,
            E::TooManyReferences => R::TooManyReferences,
            E::BadReferenceUri(_) => R::BadReferenceUri,
            E::ManifestNotAllowed => R::ManifestNotAllowed,
            E::DuplicateReference => R::DuplicateReference,
            E::ReferenceNotFound(_) => R::ReferenceNotFound,
            E::ReferenceNotAllowed { .. } => R::ReferenceNotAllowed,
            E::BadBase64(_) => R::BadBase64,
            E::DigestMismatch(_) => R::DigestMismatch,
            E::BadSignature => R::BadSignature,
            E::AlgorithmKeyMismatch => R::AlgorithmKeyMismatch,
            E::BadKeyInfo(_) => R::BadKeyInfo,
            E::KeyValueNotAllowed => R::KeyValueNotAllowed,
            E::RetrievalMethodNotAllowed => R::RetrievalMethodNotAllowed,
            E::TokenUnavailable(_) => R::TokenUnavailable,
            E::BadToken(_) => R::BadToken,
            E::UntrustedSigner(_) => R::UntrustedSigner,
            E::WeakKey(_) => R::WeakKey,
            E::UnsupportedKey(_) => R::UnsupportedKey,
            E::SignerExpired => R::SignerExpired,
            E::SignerNotYetValid => R::SignerNotYetValid,
            E::SignerRevoked => R::SignerRevoked,
            E::SignerCrlStale => R::SignerCrlStale,
            E::NoTimestamp => R::NoTimestamp,
            E::BadTimestamp(_) => R::BadTimestamp,
            E::MessageExpired => R::MessageExpired,
            E::CreatedInFuture => R::CreatedInFuture,
            E::TtlTooLong => R::TtlTooLong,
            E::BodyNotSigned => R::BodyNotSigned,
            E::TimestampNotSigned => R::TimestampNotSigned,
            E::HeaderNotSigned(_) => R::HeaderNotSigned,
            E::CommentInSignedPart(_) => R::CommentInSignedPart,
            E::Replay => R::Replay,
            E::ReplayCacheFull => R::ReplayCacheFull,
            E::ReplayStoreUnavailable => R::ReplayStoreUnavailable,
            E::IdentityMismatch => R::IdentityMismatch,
            E::NoUsernameToken => R::NoUsernameToken,
            E::BadUsernameToken(_) => R::BadUsernameToken,
            E::AuthenticationFailed => R::AuthenticationFailed,
            E::AlreadySecured => R::AlreadySecured,
            E::ValuePrefixUnsigned(_) => R::ValuePrefixUnsigned,
            E::MissingHeaderBlock(_) => R::MissingHeaderBlock,
            E::Config(_) => R::Config,
            E::SelfCheck(_) => R::SignSelfCheck,
            E::Internal(_) => R::Internal,
        }
    }

    /// The WS-Security fault code for the caller (the reason stays in the log).
    pub fn fault_code(&self) -> &'static str {
        self.reason().fault_code()
    }
}

impl From<C14nError> for WssecError {
    fn from(e: C14nError) -> Self {
        match e {
            C14nError::Xml(x) => WssecError::Xml(x),
            C14nError::Io(_) => WssecError::Internal("c14n output failed"),
            C14nError::NotFound => WssecError::Internal("c14n element not found"),
            C14nError::OutsideSubtree => WssecError::Internal("c14n fed outside subtree"),
        }
    }
}
