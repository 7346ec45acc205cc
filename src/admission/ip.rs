//! IP allowlists compiled into sorted, merged ranges: a lookup is one binary
//! search, whatever the number of CIDRs.

use ipnet::IpNet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A set of addresses built from CIDRs. IPv4 addresses are stored as
/// IPv4-mapped IPv6, so `::ffff:10.0.0.1` and `10.0.0.1` are the same client.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    /// Inclusive, sorted, non-overlapping, non-adjacent ranges.
    ranges: Vec<(u128, u128)>,
}

/// An address as a 128-bit number, IPv4 mapped into `::ffff:0:0/96`.
pub fn as_u128(ip: IpAddr) -> u128 {
    match canonical(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// IPv4-mapped IPv6 addresses (as a dual-stack socket reports IPv4 peers) become IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl IpSet {
    pub fn from_nets(nets: &[IpNet]) -> IpSet {
        let mut ranges: Vec<(u128, u128)> = nets
            .iter()
            .map(|n| {
                let (lo, hi) = (n.network(), n.broadcast());
                (as_u128(lo), as_u128(hi))
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        IpSet { ranges: merged }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let x = as_u128(ip);
        // The last range starting at or below x is the only candidate.
        let i = self.ranges.partition_point(|r| r.0 <= x);
        i > 0 && self.ranges[i - 1].1 >= x
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

/// An allowlist: `None` admits everyone.
#[derive(Debug, Clone, Default)]
pub struct Allowlist(Option<IpSet>);

impl Allowlist {
    /// Everyone.
    pub fn open() -> Allowlist {
        Allowlist(None)
    }
    /// Only these addresses.
    pub fn only(set: IpSet) -> Allowlist {
        Allowlist(Some(set))
    }
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(ip))
    }
    pub fn is_open(&self) -> bool {
        self.0.is_none()
    }
}

/// A CIDR that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{text:?} has host bits set; did you mean {network}?")]
    HostBits { text: String, network: IpNet },
    #[error("{0:?} is not a CIDR (write e.g. \"10.20.0.0/16\" or \"2001:db8::/32\")")]
    NotACidr(String),
}

/// Parses one CIDR or bare address (a bare address is a /32 or /128).
pub fn parse_net(s: &str) -> Result<IpNet, NetError> {
    let t = s.trim();
    if let Ok(n) = t.parse::<IpNet>() {
        if n.trunc() != n {
            return Err(NetError::HostBits {
                text: t.to_owned(),
                network: n.trunc(),
            });
        }
        return Ok(n);
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| NetError::NotACidr(t.to_owned()))
}

/// Which prefixes of Salesforce's `ip-ranges.json` to keep.
#[derive(Debug, Clone, Default)]
pub struct JsonFilter {
    /// Keep only prefixes with this `direction` (e.g. "outbound").
    pub direction: Option<String>,
    /// Keep only prefixes in these regions; empty: all.
    pub regions: Vec<String>,
}

impl JsonFilter {
    fn is_empty(&self) -> bool {
        self.direction.is_none() && self.regions.is_empty()
    }
}

/// A CIDR file could not be used; names the file and, where it can, the line.
#[derive(Debug, thiserror::Error)]
pub enum IpFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {error}", .path.display())]
    Entry {
        path: PathBuf,
        line: usize,
        error: NetError,
    },
    #[error("{}:{line}: not valid JSON: {detail}", .path.display())]
    Json {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("{}: JSON without a \"prefixes\" list; expected Salesforce's ip-ranges.json format", .path.display())]
    NotIpRanges { path: PathBuf },
    #[error("{}: direction/regions filters apply to ip-ranges.json files only", .path.display())]
    FilterOnText { path: PathBuf },
}

/// Reads a CIDR file: Salesforce's `ip-ranges.json` when it parses as JSON,
/// otherwise one CIDR per line with `#` comments. Errors name file and line.
/// The word a CIDR file holds, alone, to admit nobody on purpose: a file
/// that merely came out empty (truncated, a bad export) is refused instead.
pub const NONE: &str = "none";

/// Whether a CIDR text file says, with `none` alone, that it admits nobody.
pub fn says_none(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        let entries: Vec<&str> = t
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|e| !e.is_empty())
            .collect();
        entries.len() == 1 && entries[0].eq_ignore_ascii_case(NONE)
    })
}

pub fn load_file(path: &Path, filter: &JsonFilter) -> Result<Vec<IpNet>, IpFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| IpFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim_start().starts_with('{') {
        return load_json(&text, path, filter);
    }
    if !filter.is_empty() {
        return Err(IpFileError::FilterOnText {
            path: path.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        if entry.eq_ignore_ascii_case(NONE) {
            continue;
        }
        out.push(parse_net(entry).map_err(|error| IpFileError::Entry {
            path: path.to_path_buf(),
            line: n + 1,
            error,
        })?);
    }
    Ok(out)
}

fn load_json(text: &str, path: &Path, f: &JsonFilter) -> Result<Vec<IpNet>, IpFileError> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| IpFileError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        detail: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut found_list = false;
    for (list, field) in [("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")] {
        let Some(entries) = doc.get(list).and_then(|v| v.as_array()) else {
            continue;
        };
        found_list = true;
        for e in entries {
            if let Some(d) = &f.direction {
                if e.get("direction").and_then(|v| v.as_str()) != Some(d.as_str()) {
                    continue;
                }
            }
            if !f.regions.is_empty()
                && !e
                    .get("region")
                    .and_then(|v| v.as_str())
                    .is_some_and(|r| f.regions.iter().any(|x| x == r))
            {
                continue;
            }
            // Salesforce publishes `ip_prefix` as a string or a list of strings.
            let values: Vec<&str> = match e.get(field) {
                Some(serde_json::Value::String(s)) => vec![s.as_str()],
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => Vec::new(),
            };
            for v in values {
                out.push(parse_net(v).map_err(|error| IpFileError::Entry {
                    path: path.to_path_buf(),
                    line: line_of(text, v),
                    error,
                })?);
            }
        }
    }
    if !found_list {
        return Err(IpFileError::NotIpRanges {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

fn line_of(text: &str, needle: &str) -> usize {
    let quoted = format!("\"{needle}\"");
    text.find(&quoted)
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> IpSet {
        let nets: Vec<IpNet> = list.iter().map(|s| parse_net(s).unwrap()).collect();
        IpSet::from_nets(&nets)
    }

    #[test]
    fn lookups_merge_and_map_ipv4_into_ipv6() {
        let s = set(&["10.0.0.0/8", "10.1.0.0/16", "192.168.1.7", "2001:db8::/32"]);
        assert_eq!(s.range_count(), 3);
        for yes in ["10.2.3.4", "::ffff:10.9.9.9", "192.168.1.7", "2001:db8::1"] {
            assert!(s.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "11.0.0.0",
            "192.168.1.8",
            "2001:db9::1",
            "::1",
            "9.255.255.255",
        ] {
            assert!(!s.contains(no.parse().unwrap()), "{no}");
        }
        assert!(set(&["0.0.0.0/0"]).contains("255.255.255.255".parse().unwrap()));
        assert!(set(&["::/0"]).contains("::".parse().unwrap()));
    }

    #[test]
    fn host_bits_and_garbage_are_refused() {
        assert!(parse_net("10.0.0.1/8")
            .unwrap_err()
            .to_string()
            .contains("10.0.0.0/8"));
        assert!(parse_net("10.0.0/8").is_err());
    }

    #[test]
    fn files_report_the_line() {
        let dir = std::env::temp_dir().join(format!("sg-ip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let txt = dir.join("r.txt");
        std::fs::write(&txt, "# ranges\n10.0.0.0/8  # office\n\n300.1.1.1/32\n").unwrap();
        let e = load_file(&txt, &JsonFilter::default())
            .unwrap_err()
            .to_string();
        assert!(e.ends_with(":4: \"300.1.1.1/32\" is not a CIDR (write e.g. \"10.20.0.0/16\" or \"2001:db8::/32\")"), "{e}");
        let json = dir.join("ip-ranges.json");
        std::fs::write(
            &json,
            "{\n \"prefixes\": [\n  {\"ip_prefix\": [\"13.108.0.0/14\"], \"region\": \"us-east-1\", \"direction\": \"outbound\"},\n  {\"ip_prefix\": \"96.43.144.0/20\", \"region\": \"eu-west-1\", \"direction\": \"inbound\"}\n ]\n}\n",
        )
        .unwrap();
        let all = load_file(&json, &JsonFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        let out = load_file(
            &json,
            &JsonFilter {
                direction: Some("outbound".into()),
                regions: vec![],
            },
        )
        .unwrap();
        assert_eq!(out, vec!["13.108.0.0/14".parse::<IpNet>().unwrap()]);
        std::fs::write(
            &json,
            "{\n \"prefixes\": [\n  {\"ip_prefix\": \"13.108.0.0/33\"}\n ]\n}\n",
        )
        .unwrap();
        let e = load_file(&json, &JsonFilter::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ip-ranges.json:3:"), "{e}");
    }
}
