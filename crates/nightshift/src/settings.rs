//! The controller's settings as the command line gives them, and what only
//! a command at a terminal adds: asking for an SSH key's passphrase.

pub use nightshift_controller::Settings;

use crate::cli::Global;

/// The settings `--config` and `--data-dir` name.
pub fn resolve(global: &Global) -> anyhow::Result<Settings> {
    Ok(Settings::resolve(
        global.config.as_deref(),
        global.data_dir.clone(),
    )?)
}

/// SSH settings for a run (see [`Settings::ssh_config`]); when the
/// environment gives no passphrase, asks on a terminal for that of the
/// first encrypted identity file the inventory names.
pub fn ssh_config(
    settings: &Settings,
    inventory: &nightshift_plan::inventory::Inventory,
) -> anyhow::Result<nightshift_transport::SshConfig> {
    let mut config = settings.ssh_config()?;
    if config.passphrase.is_none() {
        config.passphrase = prompt_passphrase(inventory)?;
    }
    Ok(config)
}

fn prompt_passphrase(
    inventory: &nightshift_plan::inventory::Inventory,
) -> anyhow::Result<Option<String>> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let identities = inventory
        .hosts
        .values()
        .filter_map(|h| h.identity.as_ref())
        .chain(inventory.defaults.identity.as_ref());
    let mut seen = std::collections::BTreeSet::new();
    for path in identities.filter(|p| seen.insert(p.to_path_buf())) {
        if nightshift_transport::key_is_encrypted(path) {
            let prompt = format!("Passphrase for {}: ", path.display());
            return Ok(Some(rpassword::prompt_password(prompt)?));
        }
    }
    Ok(None)
}
