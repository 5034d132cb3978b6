//! When each pack was last read and found sound, so `check
//! --read-data-subset` reads the least recently verified packs first: a
//! daily 5 % subset reads every pack within 20 days. Kept in
//! `state/verified.json` (pack ids and times only), rewritten whole after
//! each check; two checks finishing together lose only scheduling hints.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::index::Location;
use crate::pack::PackId;
use crate::repo::Store;

const STATE_FILE: &str = "state/verified.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Verified {
    /// Pack id (hex) → when its content was last read and found sound.
    packs: BTreeMap<String, DateTime<Utc>>,
}

/// How much of the store has been read and found sound, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationStatus {
    pub packs: usize,
    pub bytes: u64,
    pub unverified_packs: usize,
    pub unverified_bytes: u64,
    /// The oldest last verification among packs verified at least once.
    pub oldest: Option<DateTime<Utc>>,
}

impl Store {
    pub(crate) fn verified(&self) -> Verified {
        std::fs::read(self.root().join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Records `packs` as read and sound now; forgets packs that are gone.
    pub(crate) fn mark_verified(&self, packs: &[PackId]) -> Result<()> {
        let mut verified = self.verified();
        let now = Utc::now();
        for pack in packs {
            verified.packs.insert(pack.to_string(), now);
        }
        let live: std::collections::HashSet<String> = self
            .index()
            .packs()
            .iter()
            .map(ToString::to_string)
            .collect();
        verified.packs.retain(|pack, _| live.contains(pack));
        let bytes = serde_json::to_vec_pretty(&verified).expect("state serializes");
        self.write_file(Path::new(STATE_FILE), &bytes)
    }

    /// The packs to read for a share of the store's bytes: never verified
    /// first, then the longest ago; at least one pack when `share` > 0.
    pub(crate) fn rotation<'a>(
        &self,
        by_pack: &'a BTreeMap<PackId, Vec<Location>>,
        share: f64,
    ) -> Vec<(&'a PackId, &'a Vec<Location>)> {
        if share >= 1.0 {
            return by_pack.iter().collect();
        }
        let verified = self.verified();
        let mut order: Vec<_> = by_pack.iter().collect();
        order.sort_by_key(|(pack, _)| verified.packs.get(&pack.to_string()).copied());
        let total: u64 = by_pack.values().map(|l| pack_bytes(l)).sum();
        let budget = (share.clamp(0.0, 1.0) * total as f64) as u64;
        let mut taken = 0;
        order
            .into_iter()
            .take_while(|(_, locations)| {
                let take = taken == 0 || taken < budget;
                taken += pack_bytes(locations).max(1);
                take
            })
            .collect()
    }

    pub fn verification_status(&self) -> VerificationStatus {
        let verified = self.verified();
        let mut by_pack: BTreeMap<PackId, u64> = BTreeMap::new();
        for location in self.index().iter() {
            *by_pack.entry(location.pack).or_default() += u64::from(location.blob.stored_len);
        }
        let mut status = VerificationStatus {
            packs: by_pack.len(),
            bytes: by_pack.values().sum(),
            unverified_packs: 0,
            unverified_bytes: 0,
            oldest: None,
        };
        for (pack, bytes) in &by_pack {
            match verified.packs.get(&pack.to_string()) {
                Some(&when) => status.oldest = Some(status.oldest.map_or(when, |o| o.min(when))),
                None => {
                    status.unverified_packs += 1;
                    status.unverified_bytes += bytes;
                }
            }
        }
        status
    }
}

fn pack_bytes(locations: &[Location]) -> u64 {
    locations.iter().map(|l| u64::from(l.blob.stored_len)).sum()
}
