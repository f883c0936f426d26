//! `lockstep-hub`: the hub without the tray, for servers, tests and support.
//!
//! What is this binary's own: its flags (`args.rs`), logging, signals, its
//! messages and exit codes, and the subcommands (`apps.rs`, `audit.rs`,
//! `tls.rs`). Starting the hub is `lockstep_hub::launch`, as in the tray.

mod apps;
mod args;
mod audit;
mod tls;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use lockstep_hub::launch::{Launch, LaunchError};
use lockstep_hub::server;
use lockstep_hub::settings::{Settings, SettingsFiles, StartError};
use tracing::warn;

use crate::args::{Args, Command, FLAG_KEYS};

fn main() -> ExitCode {
    // The matches say which flags were typed: only those override the files.
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let launch = match Launch::open(args.data_dir.clone(), args.secret_store) {
        Ok(launch) => launch,
        Err(LaunchError::NoDataFolder) => {
            eprintln!("error: no data folder could be determined; pass --data-dir");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(command) = args.command.take() {
        return subcommand(command, launch);
    }
    if let (true, Some(w)) = (args.tls, &launch.store_warning) {
        // A key kept in memory only would mean a new certificate at every
        // start, breaking whatever trust IT set up for the old one.
        eprintln!("error: --tls needs a secret store that keeps the certificate's key: {w}");
        return ExitCode::from(2);
    }
    if let Some(w) = &launch.store_warning {
        warn!("{w}");
    }

    if !args.listen.ip().is_loopback() {
        if !args.allow_remote {
            eprintln!(
                "error: {} is not a loopback address. Lockstep serves the patient context of this workstation \
                 and listens on loopback only; pass --allow-remote to expose it to the network.",
                args.listen
            );
            return ExitCode::from(2);
        }
        warn!(listen = %args.listen, "listening on a non-loopback address: other machines can reach this hub");
    }

    // Settings files: under the flags typed on the command line.
    let layout = args.settings_layout(&launch.data_dir);
    let settings = match Settings::load(&layout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: the system settings file is not valid: {e}\n\
                 It is managed by your IT department; the hub does not start without its managed settings."
            );
            return ExitCode::from(2);
        }
    };
    for w in &settings.warnings {
        warn!("{w}");
    }
    let from_flags: Vec<&'static str> = FLAG_KEYS
        .iter()
        .filter(|(flag, _)| matches.value_source(flag) == Some(ValueSource::CommandLine))
        .map(|(_, key)| *key)
        .collect();
    let files = SettingsFiles { layout, from_flags };
    let mut config = match launch.configure(args.listen, |c| args.apply(c), &settings, Some(files))
    {
        Ok(config) => config,
        Err(LaunchError::Settings(StartError::NotLoopback(ip))) => {
            eprintln!(
                    "error: the settings file sets address {ip}, which is not loopback; pass --allow-remote to expose the hub to the network."
                );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.external_issuers = args.trust_issuers.clone();
    for pair in &args.issuer_audiences {
        let found = pair.split_once('=').and_then(|(iss, aud)| {
            let issuer = config
                .external_issuers
                .iter_mut()
                .find(|i| i.issuer == iss.trim())?;
            issuer.audience = Some(aud.trim().to_owned());
            Some(())
        });
        if found.is_none() {
            eprintln!(
                "error: --issuer-audience {pair:?}: expected ISSUER=AUDIENCE for an issuer given with --trust-issuer"
            );
            return ExitCode::from(2);
        }
    }
    if args.no_auth {
        warn!(
            "--no-auth: requests need no token; any local process or web page can read and change the \
             patient context. Use only for development."
        );
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let print_link = !args.no_dashboard_link;
    // A hub on port 0 (tests) is nobody's discoverable hub.
    let discovery_dir = (config.listen.port() != 0)
        .then(lockstep_hub::discovery_file::discovery_dir)
        .flatten();
    runtime.block_on(async move {
        // Before anything says ready: a SIGTERM right after the ready line
        // must stop the hub cleanly (discovery file removed, state saved).
        let stop = server::shutdown_signal();
        let started = match Launch::start(config, &settings, discovery_dir) {
            Ok(started) => started,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("Lockstep hub ready at {}", started.hub_url());
        if print_link {
            println!("Dashboard (one-time link): {}", started.hub.one_time_link());
        }
        match started.run(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `audit`, `apps`, `tls`: on the data folder and the secret store, with
/// no hub running.
fn subcommand(command: Command, launch: Launch) -> ExitCode {
    // A secret or key made now must outlive this process: not in memory.
    let durable = || match &launch.store_warning {
        Some(w) => {
            eprintln!("error: {w}");
            Err(ExitCode::from(2))
        }
        None => Ok(()),
    };
    match command {
        Command::Audit { action } => audit::audit_command(action, &launch.data_dir),
        Command::Apps { action } => match durable() {
            Ok(()) => apps::apps_command(action, launch.data_dir, launch.store),
            Err(code) => code,
        },
        Command::Tls { action } => match durable() {
            Ok(()) => tls::tls_command(action, &launch.data_dir, launch.store.as_ref()),
            Err(code) => code,
        },
    }
}
