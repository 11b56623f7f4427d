//! The `serve` flags that override config keys, applied in one place so the
//! command line and the file cannot disagree about what a flag means.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::Config;

/// Flag values; `None` leaves the config's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `server.grpc_listen`.
    pub listen: Option<SocketAddr>,
    /// `server.http_listen`; `""` disables the HTTP front.
    pub http_listen: Option<String>,
    /// `server.database`.
    pub database: Option<PathBuf>,
    /// `classifier.model_dir`.
    pub model_dir: Option<PathBuf>,
}

impl Overrides {
    pub fn apply(self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(l) = self.listen {
            config.server.grpc_listen = l;
        }
        if let Some(h) = self.http_listen {
            config.server.http_listen = match h.trim() {
                "" => None,
                a => Some(a.parse().with_context(|| format!("--http-listen {a:?}"))?),
            };
        }
        if let Some(d) = self.database {
            config.server.database = d;
        }
        if let Some(m) = self.model_dir {
            config.classifier.model_dir = m;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_http_listen_disables_the_front_and_a_bad_one_is_refused() {
        let mut c = Config::embedded();
        let off = Overrides {
            http_listen: Some(" ".into()),
            ..Overrides::default()
        };
        off.apply(&mut c).unwrap();
        assert_eq!(c.server.http_listen, None);
        let bad = Overrides {
            http_listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        let err = bad.apply(&mut c).unwrap_err();
        assert!(format!("{err:#}").contains("--http-listen"), "{err:#}");
    }
}
