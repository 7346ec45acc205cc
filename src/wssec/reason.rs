//! Why a WS-Security message was refused: one fieldless reason per cause, its
//! stable label (metrics, logs), the WS-Security fault code the caller is
//! told, and whether the cause lies with the gateway rather than the message.

use crate::reason::reasons;

reasons! {
    /// A WS-Security refusal, as `sealgate_wssec_verifications_total{reason}` counts it.
    pub enum Reason {
        XmlTooLarge = "xml_too_large",
        XmlNotUtf8 = "xml_not_utf8",
        XmlEncoding = "xml_encoding",
        XmlVersion = "xml_version",
        XmlDoctype = "xml_doctype",
        XmlEntity = "xml_entity",
        XmlProcessingInstruction = "xml_processing_instruction",
        XmlInvalidChar = "xml_invalid_char",
        XmlDuplicateAttribute = "xml_duplicate_attribute",
        XmlTooDeep = "xml_too_deep",
        XmlTooManyAttributes = "xml_too_many_attributes",
        XmlTooManyNamespaces = "xml_too_many_namespaces",
        XmlNameTooLong = "xml_name_too_long",
        XmlTextTooLong = "xml_text_too_long",
        XmlAttributeTooLong = "xml_attribute_too_long",
        XmlUndeclaredPrefix = "xml_undeclared_prefix",
        XmlInvalidNamespace = "xml_invalid_namespace",
        XmlMalformed = "xml_malformed",
        C14nOutput = "c14n_io",
        C14nNotFound = "c14n_not_found",
        C14nOutsideSubtree = "c14n_outside_subtree",
        BadEnvelope = "wssec_bad_envelope",
        DuplicateHeaderBlock = "wssec_duplicate_header_block",
        NoSecurityHeader = "wssec_no_security_header",
        TwoSecurityHeaders = "wssec_two_security_headers",
        TwoSignatures = "wssec_two_signatures",
        TwoTimestamps = "wssec_two_timestamps",
        TwoUsernameTokens = "wssec_two_username_tokens",
        SecurityHeaderTooLarge = "wssec_security_header_too_large",
        TooManyParts = "wssec_too_many_parts",
        UnsupportedToken = "wssec_unsupported_token",
        DuplicateId = "wssec_duplicate_id",
        Unsigned = "wssec_unsigned",
        MalformedSignature = "wssec_malformed_signature",
        AlgorithmNotAllowed = "wssec_algorithm_not_allowed",
        Sha1NotAllowed = "wssec_sha1_not_allowed",
        HmacOutputLength = "wssec_hmac_output_length",
        TransformNotAllowed = "wssec_transform_not_allowed",
        TooManyReferences = "wssec_too_many_references",
        BadReferenceUri = "wssec_bad_reference_uri",
        ManifestNotAllowed = "wssec_manifest_not_allowed",
        DuplicateReference = "wssec_duplicate_reference",
        ReferenceNotFound = "wssec_reference_not_found",
        ReferenceNotAllowed = "wssec_reference_not_allowed",
        BadBase64 = "wssec_bad_base64",
        DigestMismatch = "wssec_digest_mismatch",
        BadSignature = "wssec_bad_signature",
        AlgorithmKeyMismatch = "wssec_algorithm_key_mismatch",
        BadKeyInfo = "wssec_bad_key_info",
        KeyValueNotAllowed = "wssec_keyvalue_not_allowed",
        RetrievalMethodNotAllowed = "wssec_retrieval_method_not_allowed",
        TokenUnavailable = "wssec_token_unavailable",
        BadToken = "wssec_bad_token",
        UntrustedSigner = "wssec_untrusted_signer",
        /// An RSA key under 2048 bits, and legacy keys not allowed.
        WeakKey = "wssec_weak_key",
        UnsupportedKey = "wssec_unsupported_key",
        SignerExpired = "wssec_signer_expired",
        SignerNotYetValid = "wssec_signer_not_yet_valid",
        SignerRevoked = "wssec_signer_revoked",
        SignerCrlStale = "wssec_signer_crl_stale",
        NoTimestamp = "wssec_no_timestamp",
        BadTimestamp = "wssec_bad_timestamp",
        MessageExpired = "wssec_message_expired",
        CreatedInFuture = "wssec_created_in_future",
        TtlTooLong = "wssec_ttl_too_long",
        BodyNotSigned = "wssec_body_not_signed",
        TimestampNotSigned = "wssec_timestamp_not_signed",
        HeaderNotSigned = "wssec_header_not_signed",
        /// A comment inside a signed element: the upstream would read bytes
        /// whose meaning differs from the canonical form that was signed.
        CommentInSignedPart = "wssec_comment_in_signed_part",
        Replay = "wssec_replay",
        ReplayCacheFull = "wssec_replay_cache_full",
        /// The shared replay store did not answer (`on_failure.replay = "fail_closed"`).
        ReplayStoreUnavailable = "wssec_replay_store_unavailable",
        IdentityMismatch = "wssec_identity_mismatch",
        NoUsernameToken = "wssec_no_username_token",
        BadUsernameToken = "wssec_bad_username_token",
        AuthenticationFailed = "wssec_authentication_failed",
        /// Signing: the message already carries a Security header.
        AlreadySecured = "wssec_already_secured",
        /// Signing as it streams: a prefix named in an attribute value is bound where the signature would not cover it.
        ValuePrefixUnsigned = "wssec_value_prefix_unsigned",
        /// Signing: a header block the route signs is not in the message.
        MissingHeaderBlock = "wssec_missing_header_block",
        Config = "wssec_config",
        /// What the signer produced failed its own verification.
        SignSelfCheck = "wssec_sign_self_check",
        Internal = "wssec_internal",
        /// The message needed more work than one message may take.
        WorkLimit = "wssec_work_limit",
    }
}

/// WS-Security 1.0 fault codes (section 12), as WSS4J uses them.
pub const INVALID_SECURITY: &str = "wsse:InvalidSecurity";
pub const FAILED_CHECK: &str = "wsse:FailedCheck";
pub const UNSUPPORTED_ALGORITHM: &str = "wsse:UnsupportedAlgorithm";
pub const TOKEN_UNAVAILABLE: &str = "wsse:SecurityTokenUnavailable";
pub const INVALID_TOKEN: &str = "wsse:InvalidSecurityToken";
pub const MESSAGE_EXPIRED: &str = "wsu:MessageExpired";
pub const FAILED_AUTHENTICATION: &str = "wsse:FailedAuthentication";

impl Reason {
    /// The WS-Security fault code for the caller (the reason stays in the log).
    pub const fn fault_code(self) -> &'static str {
        use Reason as R;
        match self {
            R::DigestMismatch
            | R::BadSignature
            | R::AlgorithmKeyMismatch
            | R::ReferenceNotFound
            | R::ReferenceNotAllowed
            | R::CommentInSignedPart => FAILED_CHECK,
            R::TokenUnavailable => TOKEN_UNAVAILABLE,
            R::BadKeyInfo
            | R::KeyValueNotAllowed
            | R::RetrievalMethodNotAllowed
            | R::BadToken
            | R::UnsupportedKey
            | R::UnsupportedToken
            | R::BadUsernameToken => INVALID_TOKEN,
            R::UntrustedSigner
            | R::WeakKey
            | R::SignerExpired
            | R::SignerNotYetValid
            | R::SignerRevoked
            | R::AuthenticationFailed
            | R::IdentityMismatch => FAILED_AUTHENTICATION,
            R::AlgorithmNotAllowed | R::Sha1NotAllowed | R::TransformNotAllowed => {
                UNSUPPORTED_ALGORITHM
            }
            R::MessageExpired | R::CreatedInFuture | R::TtlTooLong => MESSAGE_EXPIRED,
            _ => INVALID_SECURITY,
        }
    }

    /// Caused by the gateway's own state or settings, not by the message: no
    /// block for the caller, and a server fault rather than a client one.
    pub const fn gateway_side(self) -> bool {
        use Reason as R;
        matches!(
            self,
            R::ReplayCacheFull
                | R::ReplayStoreUnavailable
                | R::SignerCrlStale
                | R::Internal
                | R::Config
                | R::SignSelfCheck
                | R::C14nOutput
                | R::C14nNotFound
                | R::C14nOutsideSubtree
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_prefixed() {
        let labels: std::collections::HashSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reason::COUNT);
        for r in Reason::ALL {
            let l = r.as_str();
            assert!(
                l.starts_with("wssec_") || l.starts_with("xml_") || l.starts_with("c14n_"),
                "{l}"
            );
        }
    }
}
