//! The `lockstep` binary: the tray app. Everything is in the library.
// No console window behind the tray app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // Answered before Tauri starts GTK, so they work without a display
    // (installers and IT scripts check the installed version this way).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("lockstep {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "lockstep {}: the Lockstep FHIRcast hub in the system tray\n\n\
             Usage: lockstep [--show-dashboard] [--autostart]\n\n  \
             --show-dashboard  open the dashboard window at start\n  \
             --autostart       started at login: quit at once if start_at_login is off\n  \
             --version         print the version\n\n\
             Settings: lockstep.toml (IT's system file, then the user's); the headless\n\
             hub is `lockstep-hub` (see `lockstep-hub --help`).",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    lockstep_tray::run()
}
