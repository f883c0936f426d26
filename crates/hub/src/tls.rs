//! `--tls`: this install's own certificate for `https://`/`wss://` on
//! loopback.
//!
//! The first start with TLS on makes an ECDSA P-256 key and a self-signed
//! certificate for `localhost`, `127.0.0.1` and `::1`. The private key lives
//! in the secret store (OS keyring, or the 0600 file on headless servers),
//! never in a plain file; the certificate is public and is written as PEM to
//! `lockstep-hub.crt` in the data folder, so installers and IT can add it to
//! the machine's trust store (`lockstep-hub tls cert` prints it).
//!
//! Later starts reuse both. The certificate is issued again, with the same
//! key, only when the file is missing or damaged, does not match the key, or
//! expires within [`RENEW_BEFORE`]; a new key is made only if the store lost
//! the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::auth::SecretStore;
use crate::Config;

/// The secret-store entry holding the private key (PKCS#8 PEM).
pub const KEY_NAME: &str = "tls-private-key";
/// The certificate's file name in the data folder. `.crt` because Debian's
/// `update-ca-certificates` only picks up that extension; the content is PEM.
pub const CERT_FILE: &str = "lockstep-hub.crt";
/// Certificate lifetime. macOS refuses TLS server certificates valid for
/// more than 825 days, even ones the user trusts explicitly.
pub const VALIDITY: Duration = Duration::from_secs(820 * 24 * 3600);
/// A certificate this close to expiry is issued again at start.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The names the certificate is valid for: every way a local app reaches
/// a loopback hub.
pub const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS private key: {0}")]
    Store(#[from] crate::auth::store::StoreError),
    #[error("TLS certificate: {0}")]
    Cert(String),
    #[error("TLS certificate file {path}: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// This install's certificate and key, ready to serve.
pub struct Identity {
    /// The certificate as PEM, exactly as in [`Identity::cert_path`].
    pub cert_pem: String,
    pub cert_path: PathBuf,
    /// True when this call issued the certificate (first start, renewal).
    pub issued: bool,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_path", &self.cert_path)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

/// Where the certificate of the install with data in `data_dir` lives.
pub fn cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CERT_FILE)
}

/// Loads this install's TLS identity, making the key and certificate the
/// first time. Fails (and the hub does not start) if the key can be neither
/// read nor stored: serving with a key that vanishes at exit would change the
/// certificate at every start and break every trust set up for it.
pub fn load_or_create(store: &dyn SecretStore, data_dir: &Path) -> Result<Identity, TlsError> {
    let key = match store.get(KEY_NAME)? {
        Some(pem) => match KeyPair::from_pem(&pem) {
            Ok(key) => key,
            // A damaged entry: replace it rather than refuse to start.
            Err(e) => {
                tracing::warn!(error = %e, "the stored TLS key is unreadable; making a new one");
                new_key(store)?
            }
        },
        None => new_key(store)?,
    };
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let path = cert_path(data_dir);
    if let Ok(pem) = std::fs::read_to_string(&path) {
        if let Ok(cert_der) = CertificateDer::from_pem_slice(pem.as_bytes()) {
            if still_good(&cert_der, &key_der) {
                return Ok(Identity {
                    cert_pem: pem,
                    cert_path: path,
                    issued: false,
                    cert_der,
                    key_der,
                });
            }
        }
    }
    let cert = issue(&key)?;
    let cert_pem = cert.pem();
    write_public(&path, cert_pem.as_bytes()).map_err(|error| TlsError::File {
        path: path.clone(),
        error,
    })?;
    info!(path = %path.display(), "issued this install's TLS certificate; apps and browsers must trust it (docs/SECURITY.md)");
    Ok(Identity {
        cert_pem,
        cert_path: path,
        issued: true,
        cert_der: cert.der().clone(),
        key_der,
    })
}

/// The acceptor `server::run` hands connections to when `config.tls`.
pub(crate) fn acceptor(config: &Config) -> Result<TlsAcceptor, TlsError> {
    let identity = load_or_create(config.secret_store.as_ref(), &config.data_dir)?;
    Ok(TlsAcceptor::from(server_config(&identity)?))
}

fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![identity.cert_der.clone()],
            identity.key_der.clone_key(),
        )
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    // axum serves HTTP/1.1 only; WebSockets upgrade from it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The ring provider, named explicitly: no process-wide default to set up,
/// and no surprise if another crate brings in a second provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A builder for the hub's outgoing HTTP clients (JWKS fetches, webhooks),
/// verifying servers against the OS trust store. reqwest is built without
/// a crypto provider of its own (no aws-lc-rs) and panics when a client is
/// built before one is installed: this installs ring, the one the hub's own
/// TLS uses, as the process default first. A provider an embedding program
/// installed earlier stays.
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// Makes ring the process's default rustls provider unless one is already
/// installed.
fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another thread's install is fine: one is set.
        let _ = ring::default_provider().install_default();
    }
}

fn new_key(store: &dyn SecretStore) -> Result<KeyPair, TlsError> {
    let key = KeyPair::generate().map_err(|e| TlsError::Cert(e.to_string()))?;
    store.set(KEY_NAME, &key.serialize_pem())?;
    Ok(key)
}

/// The certificate is ours (matches the key), names the loopback hosts, and
/// is still valid `RENEW_BEFORE` from now.
fn still_good(cert: &CertificateDer<'static>, key: &PrivateKeyDer<'static>) -> bool {
    let provider = provider();
    let matches = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key.clone_key())
                .is_ok()
        })
        .unwrap_or(false);
    if !matches {
        return false;
    }
    // Verify it the way a client that trusts it would, at a later date.
    let mut roots = RootCertStore::empty();
    if roots.add(cert.clone()).is_err() {
        return false;
    }
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()
    else {
        return false;
    };
    let later = SystemTime::now() + RENEW_BEFORE;
    let later = UnixTime::since_unix_epoch(
        later
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    NAMES.iter().all(|name| {
        ServerName::try_from(*name).is_ok_and(|name| {
            verifier
                .verify_server_cert(cert, &[], &name, &[], later)
                .is_ok()
        })
    })
}

fn issue(key: &KeyPair) -> Result<rcgen::Certificate, TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // What people see in a trust store or a browser's certificate viewer.
    dn.push(DnType::CommonName, "Lockstep FHIRcast hub (this computer)");
    dn.push(DnType::OrganizationName, "Lockstep");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().map_err(cert_error)?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    // An end-entity certificate, never a CA: trusting it lets it vouch for
    // the loopback hub and for nothing else.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // A fresh random serial each time: browsers reject two certificates with
    // the same issuer and serial, and a renewal keeps the issuer name.
    let mut serial: [u8; 16] = rand::rng().random();
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks that disagree a little.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + VALIDITY;
    params.self_signed(key).map_err(cert_error)
}

fn cert_error(e: rcgen::Error) -> TlsError {
    TlsError::Cert(e.to_string())
}

/// Writes the certificate next to the data, replacing any old one whole.
fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("crt.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::MemoryStore;

    #[test]
    fn first_start_issues_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::default();
        let first = load_or_create(&store, dir.path()).unwrap();
        assert!(first.issued);
        assert!(first.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(store.get(KEY_NAME).unwrap().is_some());
        let second = load_or_create(&store, dir.path()).unwrap();
        assert!(!second.issued);
        assert_eq!(first.cert_pem, second.cert_pem);
    }

    #[test]
    fn a_lost_key_means_a_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(&MemoryStore::default(), dir.path()).unwrap();
        let other = MemoryStore::default();
        let second = load_or_create(&other, dir.path()).unwrap();
        assert!(
            second.issued,
            "the old certificate does not match the new key"
        );
        assert_ne!(first.cert_pem, second.cert_pem);
    }

    #[test]
    fn a_damaged_file_is_replaced_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::default();
        load_or_create(&store, dir.path()).unwrap();
        let key = store.get(KEY_NAME).unwrap();
        std::fs::write(cert_path(dir.path()), "not a certificate").unwrap();
        let again = load_or_create(&store, dir.path()).unwrap();
        assert!(again.issued);
        assert_eq!(store.get(KEY_NAME).unwrap(), key);
    }
}
