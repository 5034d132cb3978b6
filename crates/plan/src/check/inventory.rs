//! The inventory's own references (members, children, windows), groups
//! that look like typos, and the config's `[[exception]]`s.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{error, missing, nearest};
use crate::inventory::Inventory;
use crate::schedule::Window;
use crate::tree::Loaded;
use crate::{Diagnostic, Source};

pub(super) fn check(
    loaded: &Loaded<Inventory>,
    windows: &BTreeMap<String, Window>,
    out: &mut Vec<Diagnostic>,
) {
    let (source, inventory) = (&loaded.source, &loaded.value);
    let window_names = || windows.keys().map(String::as_str);
    let groups = inventory.group_names();
    stray_groups(source, inventory, out);
    for host in inventory.hosts.values() {
        if let Some(w) = host
            .window
            .as_ref()
            .filter(|w| !windows.contains_key(w.get_ref()))
        {
            out.push(missing(source, w, "window", window_names()));
        }
    }
    for group in inventory.groups.values() {
        for member in group
            .members
            .iter()
            .filter(|m| !inventory.hosts.contains_key(m.get_ref()))
        {
            out.push(missing(
                source,
                member,
                "host",
                inventory.hosts.keys().map(String::as_str),
            ));
        }
        for child in group
            .children
            .iter()
            .filter(|c| !groups.contains(c.get_ref().as_str()))
        {
            out.push(missing(source, child, "group", groups.iter().copied()));
        }
        if let Some(w) = group
            .window
            .as_ref()
            .filter(|w| !windows.contains_key(w.get_ref()))
        {
            out.push(missing(source, w, "window", window_names()));
        }
    }
}

/// A group that no `[groups]` table declares and only one host names, while
/// a group of a very similar name exists, is almost surely a typo that would
/// quietly drop the host out of its group.
fn stray_groups(source: &Source, inventory: &Inventory, out: &mut Vec<Diagnostic>) {
    let mut named: BTreeMap<&str, Vec<&Spanned<String>>> = BTreeMap::new();
    for host in inventory.hosts.values() {
        for group in &host.groups {
            named.entry(group.get_ref()).or_default().push(group);
        }
    }
    for (name, uses) in &named {
        let [only] = uses.as_slice() else { continue };
        if inventory.groups.contains_key(*name) {
            continue;
        }
        let others = named
            .keys()
            .copied()
            .filter(|g| g != name && named[g].len() > 1);
        let others = others.chain(inventory.groups.keys().map(String::as_str));
        if let Some(best) = nearest(name, others) {
            out.push(
                error(
                    source,
                    only,
                    format!("group `{name}` is named by this host alone"),
                )
                .with_help(format!(
                    "did you mean `{best}`? (declare `[groups.{name}]` if it is meant)"
                )),
            );
        }
    }
}

/// `[[exception]]`s of the config: each names one host or one group, and
/// one the inventory has.
pub(super) fn exceptions(
    source: &Source,
    exceptions: &[crate::Exception],
    inventory: &Inventory,
) -> Vec<Diagnostic> {
    let groups = inventory.group_names();
    let mut out = Vec::new();
    for e in exceptions {
        match (&e.host, &e.group) {
            (Some(h), None) if !inventory.hosts.contains_key(h.get_ref()) => {
                out.push(source.error(
                    h.span(),
                    format!(
                        "exception for host `{}`, which the inventory does not have",
                        h.get_ref()
                    ),
                ))
            }
            (None, Some(g)) if !groups.contains(g.get_ref().as_str()) => out.push(source.error(
                g.span(),
                format!(
                    "exception for group `{}`, which the inventory does not have",
                    g.get_ref()
                ),
            )),
            _ if e.policies.is_empty() => out.push(
                source
                    .error(
                        e.reason.span(),
                        "this exception names no policies, so it exempts nothing",
                    )
                    .with_help("list them: policies = [\"backup_rpo\", \"patch_security\"]"),
            ),
            (Some(_), Some(_)) | (None, None) => out.push(
                source
                    .error(
                        e.reason.span(),
                        "an exception names one `host` or one `group`",
                    )
                    .with_help("write one [[exception]] per host or group"),
            ),
            _ => {}
        }
    }
    out
}
