//! The `lockstep` binary: the tray app. Everything is in the library.
// No console window behind the tray app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    lockstep_tray::run()
}
