//! PROXY protocol v1 and v2 (HAProxy's), read before TLS from trusted load
//! balancers only, so every rule, log line and metric sees the real client.

use ppp::{HeaderResult, PartialResult};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature; v1 starts with `PROXY `.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest header accepted: v1 is at most 107 bytes; v2 with TLVs is capped here.
const MAX_HEADER: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("a peer outside proxy_protocol.trusted sent a PROXY header")]
    Untrusted,
    #[error("a trusted peer sent no PROXY header")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Invalid(String),
    #[error("PROXY header not received in time")]
    Timeout,
}

impl ProxyError {
    pub fn reason(&self) -> super::Refused {
        use super::Refused;
        match self {
            ProxyError::Untrusted => Refused::ProxyUntrusted,
            ProxyError::Missing => Refused::ProxyMissing,
            ProxyError::Invalid(_) => Refused::ProxyInvalid,
            ProxyError::Timeout => Refused::ProxyTimeout,
        }
    }
}

/// Does the start of the stream look like a PROXY header (either version)?
fn looks_like_proxy(buf: &[u8]) -> Option<bool> {
    let v1 = b"PROXY ";
    let n = buf.len();
    let is_v1 = buf[..n.min(6)] == v1[..n.min(6)];
    let is_v2 = buf[..n.min(12)] == V2_SIG[..n.min(12)];
    if n >= 12 || (!is_v1 && !is_v2) {
        Some((n >= 6 && is_v1 && buf.starts_with(v1)) || (n >= 12 && is_v2))
    } else {
        None // too few bytes to tell
    }
}

/// Peeks until enough bytes arrived to decide, or the peer closed.
async fn peek_some(tcp: &TcpStream, buf: &mut [u8], want: usize) -> std::io::Result<usize> {
    let mut pause = Backoff::default();
    loop {
        let n = tcp.peek(buf).await?;
        if n == 0 || n >= want || n == buf.len() {
            return Ok(n);
        }
        if let Some(_decided) = looks_like_proxy(&buf[..n]) {
            return Ok(n);
        }
        // Peeked bytes stay readable, so readiness cannot tell us more arrived.
        pause.wait().await;
    }
}

/// Growing pauses (1 ms doubling to 64 ms) between peeks at a slow peer, so a
/// peer trickling bytes costs a few wake-ups, not hundreds a second.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(Duration::from_millis(1 << self.0.min(6))).await;
        self.0 += 1;
    }
}

/// For an untrusted peer: refuses one that starts with a PROXY header; reads nothing.
pub async fn refuse_untrusted_header(tcp: &TcpStream, timeout: Duration) -> Result<(), ProxyError> {
    let mut buf = [0u8; 12];
    let n = match tokio::time::timeout(timeout, peek_some(tcp, &mut buf, 12)).await {
        Ok(Ok(n)) => n,
        // No bytes in time or an error: leave it to the TLS handshake to judge.
        _ => return Ok(()),
    };
    if looks_like_proxy(&buf[..n]) == Some(true) {
        Err(ProxyError::Untrusted)
    } else {
        Ok(())
    }
}

/// For a trusted peer: reads the PROXY header (exactly its bytes, nothing of
/// the TLS that follows) and returns the client address it names. `Ok(None)`
/// when the header is absent and `optional`, or names no address (LOCAL / UNKNOWN).
pub async fn read_header(
    tcp: &mut TcpStream,
    optional: bool,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    tokio::time::timeout(timeout, read_inner(tcp, optional))
        .await
        .map_err(|_| ProxyError::Timeout)?
}

async fn read_inner(tcp: &mut TcpStream, optional: bool) -> Result<Option<SocketAddr>, ProxyError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let io = |e: std::io::Error| ProxyError::Invalid(e.to_string());
    let n = peek_some(tcp, &mut buf, 16).await.map_err(io)?;
    match looks_like_proxy(&buf[..n]) {
        Some(true) => {}
        _ if n == 0 => return Err(ProxyError::Missing),
        _ if optional => return Ok(None),
        _ => return Err(ProxyError::Missing),
    }
    // Peek until the whole header is there, then consume exactly its length.
    let mut pause = Backoff::default();
    loop {
        let n = tcp.peek(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(ProxyError::Invalid(
                "connection closed inside the header".into(),
            ));
        }
        let parsed = HeaderResult::parse(&buf[..n]);
        if parsed.is_incomplete() {
            if n == buf.len() {
                return Err(ProxyError::Invalid(format!(
                    "header longer than {MAX_HEADER} bytes"
                )));
            }
            pause.wait().await;
            continue;
        }
        let (len, addr) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h.addresses)),
            HeaderResult::V1(Err(e)) => return Err(ProxyError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(ProxyError::Invalid(e.to_string())),
        };
        let mut sink = vec![0u8; len];
        tcp.read_exact(&mut sink).await.map_err(io)?;
        return Ok(addr);
    }
}

fn v1_source(a: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v1::Addresses::Tcp4(t) => {
            Some(SocketAddr::new(IpAddr::V4(t.source_address), t.source_port))
        }
        ppp::v1::Addresses::Tcp6(t) => {
            Some(SocketAddr::new(IpAddr::V6(t.source_address), t.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_source(a: &ppp::v2::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v2::Addresses::IPv4(x) => {
            Some(SocketAddr::new(IpAddr::V4(x.source_address), x.source_port))
        }
        ppp::v2::Addresses::IPv6(x) => {
            Some(SocketAddr::new(IpAddr::V6(x.source_address), x.source_port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_signatures_and_tls() {
        assert_eq!(looks_like_proxy(b"PROXY TCP4 1.2.3.4"), Some(true));
        assert_eq!(looks_like_proxy(V2_SIG), Some(true));
        assert_eq!(looks_like_proxy(&[0x16, 3, 1, 0, 200]), Some(false));
        assert_eq!(looks_like_proxy(b"PRO"), None);
        assert_eq!(looks_like_proxy(b"GET / HTTP/1.1\r\n"), Some(false));
    }
}
