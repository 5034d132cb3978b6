//! The ways people name a snapshot: an id prefix (`7f3a91c2`), `latest`,
//! `web1/latest` (or `web1@latest`), and `web1@2026-11-20T03:00`: the
//! host's latest snapshot at or before that moment, read in the local time
//! zone unless it carries an offset.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::error::{Result, StoreError};
use crate::snapshot::SnapshotEntry;

/// A snapshot reference, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRef {
    /// An id or a prefix of one, optionally of one host.
    Id {
        host: Option<String>,
        prefix: String,
    },
    Latest {
        host: Option<String>,
    },
    /// The latest at or before `at`.
    AtOrBefore {
        host: Option<String>,
        at: DateTime<Utc>,
    },
}

impl SnapshotRef {
    /// Reads `spec`; local times are read in `zone` (the machine's own in
    /// [`SnapshotRef::parse`]).
    pub fn parse_in<Z: TimeZone>(spec: &str, zone: &Z) -> Result<Self> {
        let (host, rest) = match spec.split_once('@').or_else(|| spec.split_once('/')) {
            Some((host, rest)) if !host.is_empty() => (Some(host.to_string()), rest),
            _ => (None, spec),
        };
        if rest == "latest" {
            return Ok(Self::Latest { host });
        }
        if rest.is_empty() {
            return Err(StoreError::NoSuchSnapshot(spec.into()));
        }
        let looks_like_time = rest.len() >= 10 && rest.as_bytes()[4] == b'-';
        if looks_like_time {
            let at = time(rest, zone).ok_or_else(|| StoreError::BadSnapshotTime(rest.into()))?;
            return Ok(Self::AtOrBefore { host, at });
        }
        Ok(Self::Id {
            host,
            prefix: rest.to_string(),
        })
    }

    pub fn parse(spec: &str) -> Result<Self> {
        Self::parse_in(spec, &Local)
    }

    /// The snapshot this names among `all` (oldest first).
    pub fn pick(&self, spec: &str, all: &[SnapshotEntry]) -> Result<SnapshotEntry> {
        let of = |host: &Option<String>, e: &SnapshotEntry| {
            host.as_ref().is_none_or(|h| e.snapshot.host == *h)
        };
        match self {
            Self::Latest { host } => all
                .iter()
                .rfind(|e| of(host, e))
                .cloned()
                .ok_or_else(|| StoreError::NoSuchSnapshot(spec.into())),
            Self::AtOrBefore { host, at } => all
                .iter()
                .rfind(|e| of(host, e) && e.snapshot.time <= *at)
                .cloned()
                .ok_or_else(|| StoreError::NoSnapshotBefore {
                    given: spec.into(),
                    first: all
                        .iter()
                        .find(|e| of(host, e))
                        .map(|e| e.snapshot.time.format("%Y-%m-%d %H:%M UTC").to_string()),
                }),
            Self::Id { host, prefix } => {
                let matches: Vec<&SnapshotEntry> = all
                    .iter()
                    .filter(|e| of(host, e) && e.id.starts_with(prefix.as_str()))
                    .collect();
                match matches.as_slice() {
                    [one] => Ok((*one).clone()),
                    [] => Err(StoreError::NoSuchSnapshot(spec.into())),
                    many => Err(StoreError::AmbiguousSnapshot {
                        given: spec.into(),
                        count: many.len(),
                    }),
                }
            }
        }
    }
}

/// RFC 3339 (that very moment), or a local `YYYY-MM-DD[ T]HH:MM[:SS]` or
/// `YYYY-MM-DD`, meaning the end of the minute, second or day typed: the
/// 03:00 backup that ran at 03:00:12 is `web1@…T03:00`.
fn time<Z: TimeZone>(text: &str, zone: &Z) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    // The last instant of the unit typed: snapshot times carry
    // nanoseconds, so a backup at 03:00:12.9995 is still "03:00:12".
    let last = |seconds: i64| chrono::TimeDelta::nanoseconds(seconds * 1_000_000_000 - 1);
    let typed = [
        ("%Y-%m-%dT%H:%M:%S", last(1)),
        ("%Y-%m-%d %H:%M:%S", last(1)),
        ("%Y-%m-%dT%H:%M", last(60)),
        ("%Y-%m-%d %H:%M", last(60)),
    ];
    let (naive, rest) = typed
        .iter()
        .find_map(|(f, rest)| Some((NaiveDateTime::parse_from_str(text, f).ok()?, *rest)))
        .or_else(|| {
            let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((day.and_hms_opt(0, 0, 0)?, last(86_400)))
        })?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc) + rest)
}

/// Splits `SNAPSHOT[:PATH]`: the path starts at the first `:/` (a time's
/// own colons are never followed by a slash), or is `/` when there is none.
pub fn split_path(what: &str) -> (&str, &str) {
    match what.find(":/") {
        Some(at) => (&what[..at], &what[at + 1..]),
        None => (what.strip_suffix(':').unwrap_or(what), "/"),
    }
}

#[cfg(test)]
mod tests {
    use chrono_tz::Europe::Berlin;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").to_utc()
    }

    #[test]
    fn every_form_parses() {
        let parse = |s: &str| SnapshotRef::parse_in(s, &Berlin).expect(s);
        assert_eq!(
            parse("7f3a91c2"),
            SnapshotRef::Id {
                host: None,
                prefix: "7f3a91c2".into()
            }
        );
        assert_eq!(parse("latest"), SnapshotRef::Latest { host: None });
        for spec in ["web1/latest", "web1@latest"] {
            assert_eq!(
                parse(spec),
                SnapshotRef::Latest {
                    host: Some("web1".into())
                }
            );
        }
        // Local time, in the zone given: 03:00 in Berlin in November is
        // 02:00 UTC, and the minute typed counts whole.
        assert_eq!(
            parse("web1@2026-11-20T03:00"),
            SnapshotRef::AtOrBefore {
                host: Some("web1".into()),
                at: at("2026-11-20T02:00:59.999999999Z")
            }
        );
        assert_eq!(
            parse("web1@2026-11-20 03:00:30"),
            SnapshotRef::AtOrBefore {
                host: Some("web1".into()),
                at: at("2026-11-20T02:00:30.999999999Z")
            }
        );
        assert_eq!(
            parse("web1@2026-11-20T03:00:00+00:00"),
            SnapshotRef::AtOrBefore {
                host: Some("web1".into()),
                at: at("2026-11-20T03:00:00Z")
            }
        );
        assert_eq!(
            parse("web1@2026-11-20"),
            SnapshotRef::AtOrBefore {
                host: Some("web1".into()),
                at: at("2026-11-20T22:59:59.999999999Z")
            }
        );
        assert_eq!(
            parse("web1@7f3a"),
            SnapshotRef::Id {
                host: Some("web1".into()),
                prefix: "7f3a".into()
            }
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_forms_to_use() {
        let err = SnapshotRef::parse_in("web1@2026-13-45T03:00", &Berlin).expect_err("bad");
        assert!(err.to_string().contains("web1@2026-11-20T03:00"), "{err}");
        assert!(SnapshotRef::parse_in("", &Berlin).is_err());
        assert!(SnapshotRef::parse_in("web1@", &Berlin).is_err());
    }

    #[test]
    fn the_path_starts_at_the_first_colon_slash() {
        assert_eq!(split_path("latest:/etc/nginx"), ("latest", "/etc/nginx"));
        assert_eq!(
            split_path("web1@2026-11-20T03:00:/etc"),
            ("web1@2026-11-20T03:00", "/etc")
        );
        assert_eq!(
            split_path("web1@2026-11-20T03:00"),
            ("web1@2026-11-20T03:00", "/")
        );
        assert_eq!(split_path("7f3a:"), ("7f3a", "/"));
        assert_eq!(split_path("7f3a"), ("7f3a", "/"));
    }
}
