//! Human-friendly units in the config: durations ("5s", "2m") and sizes ("16MiB").

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a humantime string such as `"30s"` or `"2m 30s"`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (write it like \"500ms\", \"30s\" or \"2m\")"
            ))
        })
    }
}

/// A byte size written as `"16MiB"`, `"64 KB"` or a plain integer number of bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl fmt::Debug for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl Size {
    /// Parses `"16MiB"`, `"10 kB"`, `"1GiB"` or `"4096"`.
    pub fn parse(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid size {s:?}: expected a number followed by a unit such as \"16MiB\"")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            other => {
                return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, kB, MB or GB)"
            ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(s) => Size::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("16MiB").unwrap().0, 16 << 20);
        assert_eq!(Size::parse("64 KB").unwrap().0, 64_000);
        assert_eq!(Size::parse("4096").unwrap().0, 4096);
        assert_eq!(Size::parse("2GiB").unwrap().0, 2 << 30);
        assert!(Size::parse("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(Size::parse("MiB").is_err());
    }
}
