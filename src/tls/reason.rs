//! Why a TLS handshake was refused: one reason per cause an operator can act
//! on, each with whose fault it most likely was and whether it counts as a
//! failed authentication (towards blocking the client).

use crate::reason::reasons;
use rustls::{CertificateError, Error as E, PeerIncompatible as P};

reasons! {
    /// A refused TLS handshake, as `sealgate_tls_handshakes_total{reason}` counts it.
    pub enum Handshake {
        NoClientCert = "no_client_cert",
        UnknownIssuer = "unknown_issuer",
        BadSignature = "bad_signature",
        Expired = "expired",
        NotYetValid = "not_yet_valid",
        Revoked = "revoked",
        /// No CRL covers a certificate of the chain.
        RevocationUnknown = "revocation_unknown",
        /// A CRL that should decide has passed its nextUpdate.
        CrlStale = "crl_stale",
        BadEku = "bad_eku",
        BadCertificate = "bad_certificate",
        ProtocolVersion = "protocol_version",
        NoSharedCipher = "no_shared_cipher",
        NoSharedAlpn = "no_shared_alpn",
        ClientRejectedServerCert = "client_rejected_server_cert",
        Timeout = "timeout",
        PeerClosed = "peer_closed",
        Other = "other",
    }
}

/// Whose fault a refused handshake most likely was, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ClientCertificate,
    TrustChain,
    ClientTlsSettings,
    ClientConnection,
    /// The client did not trust the certificate the gateway presented.
    GatewayCertificate,
    Unknown,
}

impl Fault {
    pub const fn as_str(self) -> &'static str {
        match self {
            Fault::ClientCertificate => "client_certificate",
            Fault::TrustChain => "trust_chain",
            Fault::ClientTlsSettings => "client_tls_settings",
            Fault::ClientConnection => "client_connection",
            Fault::GatewayCertificate => "gateway_certificate",
            Fault::Unknown => "unknown",
        }
    }
}

impl Handshake {
    pub const fn fault(self) -> Fault {
        use Handshake as H;
        match self {
            H::NoClientCert
            | H::Expired
            | H::NotYetValid
            | H::Revoked
            | H::BadEku
            | H::BadCertificate => Fault::ClientCertificate,
            H::UnknownIssuer | H::BadSignature | H::RevocationUnknown | H::CrlStale => {
                Fault::TrustChain
            }
            H::ProtocolVersion | H::NoSharedCipher | H::NoSharedAlpn => Fault::ClientTlsSettings,
            H::Timeout | H::PeerClosed => Fault::ClientConnection,
            H::ClientRejectedServerCert => Fault::GatewayCertificate,
            H::Other => Fault::Unknown,
        }
    }

    /// A client that failed to authenticate (not a version mismatch, a
    /// dropped connection or stale gateway material); counts towards a block.
    pub const fn is_auth_failure(self) -> bool {
        use Handshake as H;
        matches!(
            self,
            H::NoClientCert
                | H::UnknownIssuer
                | H::BadSignature
                | H::Expired
                | H::NotYetValid
                | H::Revoked
                | H::RevocationUnknown
                | H::BadEku
                | H::BadCertificate
        )
    }

    /// Only debug noise in the log (port scans and health checks connect and leave).
    pub const fn is_quiet(self) -> bool {
        matches!(self, Handshake::PeerClosed)
    }

    /// The reason for a failed handshake's I/O error.
    pub fn of_io(err: &std::io::Error) -> Handshake {
        match err.get_ref().and_then(|e| e.downcast_ref::<E>()) {
            Some(tls) => Handshake::of(tls),
            None => match err.kind() {
                std::io::ErrorKind::TimedOut => Handshake::Timeout,
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe => Handshake::PeerClosed,
                _ => Handshake::Other,
            },
        }
    }

    /// The reason for a rustls error.
    pub fn of(e: &E) -> Handshake {
        use Handshake as H;
        match e {
            E::NoCertificatesPresented => H::NoClientCert,
            E::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => H::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    H::NotYetValid
                }
                CertificateError::Revoked => H::Revoked,
                CertificateError::UnknownIssuer => H::UnknownIssuer,
                CertificateError::BadSignature
                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                    H::BadSignature
                }
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => H::BadEku,
                CertificateError::BadEncoding => H::BadCertificate,
                CertificateError::UnknownRevocationStatus => H::RevocationUnknown,
                CertificateError::ExpiredRevocationList
                | CertificateError::ExpiredRevocationListContext { .. } => H::CrlStale,
                CertificateError::Other(o) => match o.0.downcast_ref::<webpki::Error>() {
                    // A CA certificate presented as a client's own.
                    Some(webpki::Error::CaUsedAsEndEntity) => H::BadCertificate,
                    Some(webpki::Error::RequiredEkuNotFoundContext(_)) => H::BadEku,
                    _ => H::Other,
                },
                _ => H::Other,
            },
            E::PeerIncompatible(p) => match p {
                P::NoCipherSuitesInCommon => H::NoSharedCipher,
                P::SupportedVersionsExtensionRequired
                | P::ServerDoesNotSupportTls12Or13
                | P::ServerTlsVersionIsDisabledByOurConfig
                | P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                // signature_algorithms arrived with TLS 1.2; only older clients omit it.
                | P::SignatureAlgorithmsExtensionRequired => H::ProtocolVersion,
                _ => H::Other,
            },
            E::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion) => H::ProtocolVersion,
            E::NoApplicationProtocol => H::NoSharedAlpn,
            E::AlertReceived(a) => {
                use rustls::AlertDescription as A;
                match a {
                    A::UnknownCA
                    | A::BadCertificate
                    | A::CertificateUnknown
                    | A::CertificateExpired => H::ClientRejectedServerCert,
                    A::ProtocolVersion => H::ProtocolVersion,
                    A::HandshakeFailure | A::InsufficientSecurity => H::NoSharedCipher,
                    _ => H::Other,
                }
            }
            _ => H::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_distinct() {
        let labels: HashSet<&str> = Handshake::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Handshake::COUNT);
    }

    /// As sozu keeps: each rustls error an operator can act on has a reason
    /// of its own, and no two such errors share one.
    #[test]
    fn every_actionable_rustls_error_maps_to_its_own_reason() {
        use rustls::AlertDescription as A;
        let cases: Vec<(E, Handshake)> = vec![
            (E::NoCertificatesPresented, Handshake::NoClientCert),
            (
                E::InvalidCertificate(CertificateError::UnknownIssuer),
                Handshake::UnknownIssuer,
            ),
            (
                E::InvalidCertificate(CertificateError::BadSignature),
                Handshake::BadSignature,
            ),
            (
                E::InvalidCertificate(CertificateError::Expired),
                Handshake::Expired,
            ),
            (
                E::InvalidCertificate(CertificateError::NotValidYet),
                Handshake::NotYetValid,
            ),
            (
                E::InvalidCertificate(CertificateError::Revoked),
                Handshake::Revoked,
            ),
            (
                E::InvalidCertificate(CertificateError::UnknownRevocationStatus),
                Handshake::RevocationUnknown,
            ),
            (
                E::InvalidCertificate(CertificateError::ExpiredRevocationList),
                Handshake::CrlStale,
            ),
            (
                E::InvalidCertificate(CertificateError::InvalidPurpose),
                Handshake::BadEku,
            ),
            (
                E::InvalidCertificate(CertificateError::BadEncoding),
                Handshake::BadCertificate,
            ),
            (
                E::PeerIncompatible(P::Tls12NotOffered),
                Handshake::ProtocolVersion,
            ),
            (
                E::PeerIncompatible(P::NoCipherSuitesInCommon),
                Handshake::NoSharedCipher,
            ),
            (E::NoApplicationProtocol, Handshake::NoSharedAlpn),
            (
                E::AlertReceived(A::UnknownCA),
                Handshake::ClientRejectedServerCert,
            ),
        ];
        let mut seen = HashSet::new();
        for (err, want) in &cases {
            assert_eq!(Handshake::of(err), *want, "{err:?}");
            assert!(seen.insert(*want), "{want} used by two cases");
            assert_ne!(want.fault(), Fault::Unknown, "{want}");
        }
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "t");
        assert_eq!(Handshake::of_io(&timeout), Handshake::Timeout);
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "e");
        assert_eq!(Handshake::of_io(&eof), Handshake::PeerClosed);
        // Every reason but `other` is reachable from one case above or the I/O kinds.
        for r in Handshake::ALL {
            let reachable = seen.contains(r)
                || matches!(
                    r,
                    Handshake::Timeout | Handshake::PeerClosed | Handshake::Other
                );
            assert!(reachable, "{r} has no case");
        }
    }
}
