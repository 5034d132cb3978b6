//! `nightshift store key`: the passphrases that open the store.

use crate::keys::open_store;
use crate::keys::prompt;
use crate::settings::Settings;
use anyhow::Context;
use clap::Subcommand;
use comfy_table::{Table, presets};
use nightshift_store::Passphrase;
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the store's keys
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a passphrase (from --key-file, NIGHTSHIFT_NEW_PASSPHRASE, or asked twice)
    Add {
        /// Read the new passphrase from this file
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Remove a key by id prefix; the last key cannot be removed
    Remove { id: String },
    /// Print the passphrase in use (the generated key file's content), for safekeeping
    Export,
}

/// `nightshift store key add|list|remove|export`.
pub fn run(settings: &Settings, command: KeyCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match command {
        KeyCommand::List { json: as_json } => {
            let keys = store.keys()?;
            if as_json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|(id, key)| json!({"id": id, "created": key.created, "host": key.host, "kdf": key.kdf.algorithm}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table = Table::new();
                table.load_preset(presets::NOTHING);
                table.set_header(["ID", "CREATED", "HOST", "KDF"]);
                for (id, key) in &keys {
                    table.add_row([
                        id.get(..8).unwrap_or(id).to_string(),
                        key.created.format("%Y-%m-%d %H:%M UTC").to_string(),
                        key.host.clone(),
                        format!("{} {} MiB", key.kdf.algorithm, key.kdf.memory_kib / 1024),
                    ]);
                }
                println!("{table}");
            }
        }
        KeyCommand::Add { key_file } => {
            let passphrase = match key_file {
                Some(path) => nightshift_controller::read_key_file(&path)?,
                None => new_passphrase()?,
            };
            let id = store.add_key(&passphrase)?;
            println!("added key {}", id.get(..8).unwrap_or(&id));
        }
        KeyCommand::Remove { id } => {
            let removed = store.remove_key(&id)?;
            println!("removed key {}", removed.get(..8).unwrap_or(&removed));
        }
        KeyCommand::Export => {
            let passphrase = settings.configured_passphrase()?.context(
                "the passphrase was typed, not stored: it is what you typed; nothing to export",
            )?;
            println!("{}", passphrase.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn new_passphrase() -> anyhow::Result<Passphrase> {
    if let Ok(text) = std::env::var("NIGHTSHIFT_NEW_PASSPHRASE")
        && !text.is_empty()
    {
        return Ok(Passphrase::new(text));
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "give the new key with --key-file FILE or NIGHTSHIFT_NEW_PASSPHRASE, or run on a terminal"
    );
    let first = prompt("new passphrase: ")?;
    let again = prompt("the same again: ")?;
    anyhow::ensure!(
        first.expose() == again.expose(),
        "the two passphrases differ; nothing added"
    );
    anyhow::ensure!(
        first.expose().len() >= 8,
        "a passphrase needs at least 8 characters"
    );
    Ok(first)
}
