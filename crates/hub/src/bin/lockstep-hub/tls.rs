//! `lockstep-hub tls cert`.

use std::process::ExitCode;

use lockstep_hub::auth::SecretStore;

use crate::args::TlsAction;

/// `lockstep-hub tls cert`: what IT imports into the machine's trust store.
pub fn tls_command(
    action: TlsAction,
    data_dir: &std::path::Path,
    store: &dyn SecretStore,
) -> ExitCode {
    let TlsAction::Cert { path } = action;
    match lockstep_hub::tls::load_or_create(store, data_dir) {
        Ok(identity) => {
            if path {
                println!("{}", identity.cert_path.display());
            } else {
                print!("{}", identity.cert_pem);
                eprintln!("{}", identity.cert_path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
