//! Reading a config file: TOML syntax and schema errors name the TOML path and line.

use super::{Config, ConfigError, Problem};
use std::path::{Path, PathBuf};

impl Config {
    /// Every WS-Security stage of every route, requests' and responses'.
    pub fn wssec_stages(&self) -> impl Iterator<Item = &super::WssecStageConfig> {
        self.routes
            .iter()
            .filter_map(|r| r.wssec.as_ref())
            .flat_map(|w| [w.request.as_ref(), w.response.as_ref()])
            .flatten()
    }

    /// Reads and parses a config file; relative paths in it resolve against its
    /// directory. `Runtime::compile` validates it.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::parse(&text).map_err(|problem| ConfigError::Syntax {
            file: file.to_path_buf(),
            problem,
        })?;
        config.text_sha256 = crate::runtime::material::sha256(text.as_bytes());
        config.base_dir = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        // Semantic checks run with everything else in `Runtime::compile`, so
        // `check` reports every problem of a file at once.
        Ok(config)
    }

    /// Parses TOML text; the error names the TOML path and line.
    pub fn parse(text: &str) -> Result<Config, Problem> {
        let de = toml::Deserializer::parse(text).map_err(|e| syntax_problem(text, "", &e))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            syntax_problem(text, &path, e.inner())
        })
    }

    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

fn syntax_problem(text: &str, path: &str, e: &toml::de::Error) -> Problem {
    let at = e
        .span()
        .map(|s| {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        })
        .unwrap_or_default();
    let path = if path.is_empty() || path == "." {
        "config".to_string()
    } else {
        path.to_string()
    };
    Problem::new(path, format!("{}{at}", e.message().trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[listener]]
name = "etl"
listen = "127.0.0.1:8443"
[listener.tls]
cert = "a.crt"
key = "a.key"
client_ca = "ca.crt"

[[route]]
name = "r"
listener = "etl"
upstream = "salesforce"

[upstream.salesforce]
url = "https://example.invalid"
"#;

    #[test]
    fn minimal_parses_and_validates() {
        let c = Config::parse(MINIMAL).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_upstream_is_named_with_path_and_known_names() {
        let text = MINIMAL.replace("upstream = \"salesforce\"", "upstream = \"salesfroce\"");
        let c = Config::parse(&text).unwrap();
        let problems = c.validate();
        assert_eq!(
            problems[0].to_string(),
            "route[0].upstream: no upstream named \"salesfroce\" (known: salesforce)"
        );
    }

    #[test]
    fn unknown_key_names_its_path() {
        let text = MINIMAL.replace(
            "client_ca = \"ca.crt\"",
            "client_ca = \"ca.crt\"\nclient_cert = \"x\"",
        );
        let e = Config::parse(&text).unwrap_err();
        assert_eq!(e.path, "listener[0].tls.client_cert");
        assert!(
            e.message.contains("unknown field `client_cert`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("line"), "{}", e.message);
    }

    #[test]
    fn bad_duration_names_its_path() {
        let text = MINIMAL.replace(
            "url = \"https://example.invalid\"",
            "url = \"https://example.invalid\"\nconnect_timeout = \"5 fortnights\"",
        );
        let e = Config::parse(&text).unwrap_err();
        assert_eq!(e.path, "upstream.salesforce.connect_timeout");
    }
}
