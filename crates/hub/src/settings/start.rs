//! The settings' share of starting a hub, the same for both front ends:
//! the files under the keys the front end set itself (its flags, or the
//! tray's environment), then the checks before anything says "ready".

use std::net::IpAddr;

use super::{Layout, Settings};
use crate::Config;

impl Settings {
    /// The settings' share of starting a hub, the same for `lockstep-hub`
    /// and the tray app: every key the front end did not set itself
    /// (`files.from_flags`) goes into `config`; the files are remembered for
    /// the dashboard; a non-loopback address is refused unless
    /// `config.allow_remote`; with TLS on, the certificate exists before
    /// anything says "ready" (it needs `config.secret_store` set).
    pub fn prepare(
        &self,
        config: &mut Config,
        files: Option<SettingsFiles>,
    ) -> Result<(), StartError> {
        let skip = files
            .as_ref()
            .map(|f| f.from_flags.clone())
            .unwrap_or_default();
        self.apply_except(config, |key| skip.contains(&key));
        config.settings_files = files;
        if !config.listen.ip().is_loopback() && !config.allow_remote {
            return Err(StartError::NotLoopback(config.listen.ip()));
        }
        if config.tls {
            let identity =
                crate::tls::load_or_create(config.secret_store.as_ref(), &config.data_dir)?;
            tracing::info!(certificate = %identity.cert_path.display(), "TLS on");
        }
        Ok(())
    }
}

/// What the running hub needs to answer `/admin/api/settings`: the files,
/// and which keys came from command-line flags.
#[derive(Clone, Debug)]
pub struct SettingsFiles {
    pub layout: Layout,
    pub from_flags: Vec<&'static str>,
}

/// Why `Settings::prepare` refused to start the hub.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The front end words the way out (a flag, or none in the tray).
    #[error("{0} is not a loopback address")]
    NotLoopback(IpAddr),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}
