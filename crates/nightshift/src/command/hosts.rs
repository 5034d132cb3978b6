use crate::settings::Settings;
use clap::Subcommand;
use comfy_table::{Table, presets};
use nightshift_engine::reach::{Reach, reach};
use nightshift_transport::{
    PublicKey, Verdict, fingerprint, host_key_name, key_type, scan_host_keys,
};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// List the inventory's hosts and how each is reached
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Fetch hosts' SSH keys, show their fingerprints, and record them after confirmation
    Trust {
        /// Inventory host names
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Record without asking (for scripts)
        #[arg(long)]
        yes: bool,
    },
}

/// `nightshift hosts list`.
pub fn list(settings: &Settings, json_out: bool) -> anyhow::Result<ExitCode> {
    let inventory = settings.plan()?.inventory;
    let mut rows = Vec::new();
    for (name, host) in &inventory.hosts {
        let groups: Vec<&str> = host.groups.iter().map(|g| g.get_ref().as_str()).collect();
        let (how, address, user) = match reach(&inventory, name)? {
            Reach::Local => ("local".to_string(), "localhost".to_string(), String::new()),
            Reach::Ssh(e) => {
                let via = e
                    .jump
                    .as_ref()
                    .map_or("ssh".to_string(), |j| format!("ssh via {}", j.name));
                (via, format!("{}:{}", e.address, e.port), e.user)
            }
        };
        rows.push(json!({ "name": name, "address": address, "user": user, "groups": groups, "transport": how,
                          "window": host.window.as_ref().map(|w| w.get_ref().clone()) }));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["HOST", "ADDRESS", "USER", "GROUPS", "TRANSPORT", "WINDOW"]);
    for r in &rows {
        let groups: Vec<String> = r["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(String::from))
            .collect();
        table.add_row([
            r["name"].as_str().unwrap_or(""),
            r["address"].as_str().unwrap_or(""),
            r["user"].as_str().unwrap_or(""),
            &groups.join(","),
            r["transport"].as_str().unwrap_or(""),
            r["window"].as_str().unwrap_or("-"),
        ]);
    }
    println!("{}", table.trim_fmt());
    Ok(ExitCode::SUCCESS)
}

/// `nightshift hosts trust HOST...`: show each key's fingerprint the way
/// OpenSSH does and record it after confirmation. A changed key is never
/// replaced from here.
pub fn trust(settings: &Settings, hosts: &[String], yes: bool) -> anyhow::Result<ExitCode> {
    let inventory = settings.plan()?.inventory;
    let mut config = crate::settings::ssh_config(settings, &inventory)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = false;
    for name in hosts {
        let Reach::Ssh(endpoint) = reach(&inventory, name)? else {
            println!("{name}: reached through the local transport; no host key to trust");
            continue;
        };
        let keys = runtime.block_on(scan_host_keys(&endpoint, &config))?;
        let target = host_key_name(&endpoint.address, endpoint.port);
        let mut new: Vec<PublicKey> = Vec::new();
        for key in keys {
            let verdict = config
                .known_hosts
                .check(&endpoint.address, endpoint.port, &key);
            let shown = format!("{name} ({target}) {} {}", key_type(&key), fingerprint(&key));
            match verdict {
                Verdict::Trusted => println!("{shown}: already trusted"),
                Verdict::Unknown => {
                    println!("{shown}: new");
                    new.push(key);
                }
                Verdict::Changed { file, line } | Verdict::Revoked { file, line } => {
                    eprintln!(
                        "error: {shown} does not match {}:{line}; the host key changed or is revoked. \
                         If the host was reinstalled, remove that line and run this again",
                        file.display()
                    );
                    failed = true;
                    new.clear();
                    break;
                }
            }
        }
        if new.is_empty() {
            continue;
        }
        if !yes && !confirm(&format!("Trust {} key(s) of {name}? [y/N] ", new.len()))? {
            println!("{name}: nothing recorded");
            failed = true;
            continue;
        }
        let known = std::sync::Arc::make_mut(&mut config.known_hosts);
        for key in &new {
            let file = known.record(&endpoint.address, endpoint.port, key)?;
            println!(
                "{name}: recorded {} key in {}",
                key_type(key),
                file.display()
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "refusing to trust host keys without confirmation; check the fingerprints above and pass --yes"
    );
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
