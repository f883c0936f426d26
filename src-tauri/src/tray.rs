//! The tray icon: built once in `setup`, then redrawn from a
//! [`View`](crate::model::View) by the follow task. Icons are the PNGs in
//! `icons/`, embedded at compile time.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Runtime};

use crate::model::{Entry, TrayState, View};

pub const TRAY_ID: &str = "lockstep";

fn icon(state: TrayState) -> Image<'static> {
    match state {
        TrayState::Linked => tauri::include_image!("icons/linked.png"),
        TrayState::Idle => tauri::include_image!("icons/idle.png"),
        TrayState::Attention => tauri::include_image!("icons/attention.png"),
        TrayState::Stopped => tauri::include_image!("icons/stopped.png"),
    }
}

/// Builds the tray showing `view`; menu clicks go to `shell::on_menu`, a
/// left click (Windows, macOS) opens the dashboard.
pub fn create<R: Runtime>(app: &AppHandle<R>, view: &View) -> tauri::Result<TrayIcon<R>> {
    let builder = TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(view.state))
        .tooltip(&view.tooltip);
    // Linux has no tooltips: the label next to the icon says it. Elsewhere
    // the tooltip does, and the menu bar stays free of patient names.
    #[cfg(target_os = "linux")]
    let builder = builder.title(&view.label);
    builder
        .menu(&menu(app, &view.menu)?)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| crate::shell::on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                crate::window::show(tray.app_handle());
            }
        })
        .build(app)
}

/// Redraws what changed since `before`.
pub fn apply<R: Runtime>(app: &AppHandle<R>, view: &View, before: Option<&View>) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let result = (|| -> tauri::Result<()> {
        if before.map(|b| b.state) != Some(view.state) {
            tray.set_icon(Some(icon(view.state)))?;
        }
        if before.map(|b| &b.tooltip) != Some(&view.tooltip) {
            tray.set_tooltip(Some(&view.tooltip))?;
        }
        #[cfg(target_os = "linux")]
        if before.map(|b| &b.label) != Some(&view.label) {
            tray.set_title(Some(&view.label))?;
        }
        if before.map(|b| &b.menu) != Some(&view.menu) {
            tray.set_menu(Some(menu(app, &view.menu)?))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!("cannot update the tray: {e}");
    }
}

fn menu<R: Runtime>(app: &AppHandle<R>, entries: &[Entry]) -> tauri::Result<Menu<R>> {
    let items = items(app, entries)?;
    let refs: Vec<&dyn IsMenuItem<R>> = items.iter().map(|i| i.as_ref()).collect();
    Menu::with_items(app, &refs)
}

fn items<R: Runtime>(
    app: &AppHandle<R>,
    entries: &[Entry],
) -> tauri::Result<Vec<Box<dyn IsMenuItem<R>>>> {
    let mut out: Vec<Box<dyn IsMenuItem<R>>> = Vec::with_capacity(entries.len());
    for e in entries {
        out.push(match e {
            Entry::Item {
                id: Some(id),
                text,
                enabled,
            } => Box::new(MenuItem::with_id(app, *id, text, *enabled, None::<&str>)?),
            Entry::Item { id: None, text, .. } => {
                Box::new(MenuItem::new(app, text, false, None::<&str>)?)
            }
            Entry::Check {
                id,
                text,
                checked,
                enabled,
            } => Box::new(CheckMenuItem::with_id(
                app,
                *id,
                text,
                *enabled,
                *checked,
                None::<&str>,
            )?),
            Entry::Submenu { text, items: sub } => {
                let children = items(app, sub)?;
                let refs: Vec<&dyn IsMenuItem<R>> = children.iter().map(|i| i.as_ref()).collect();
                Box::new(Submenu::with_items(app, text, true, &refs)?)
            }
            Entry::AppAction { id, text } => Box::new(MenuItem::with_id(
                app,
                id.as_str(),
                text,
                true,
                None::<&str>,
            )?),
            Entry::Separator => Box::new(PredefinedMenuItem::separator(app)?),
        });
    }
    Ok(out)
}
