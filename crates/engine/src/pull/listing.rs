//! Reading the listing as it arrives: owner tables, then one find record
//! per entry, each handed to the store's [`Listing`] as soon as it is
//! read. Only the tree is kept, never the listing's text.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::str::FromStr;

use nightshift_store::{Entry, Listing, NodeKind, Result, Stat, StoreError};

use super::command::{OWNERS, UNREADABLE_DIR};

/// Reads the output of [`listing_command`](super::listing_command) as it
/// arrives. Entries must come after their directory, as find lists them; a
/// record that does not parse, is cut off, or has a path that is not
/// absolute or has an empty, `.` or `..` component is an error naming the
/// record.
pub fn read_listing(reader: impl Read) -> Result<Listing> {
    let mut listing = Listing::new();
    read_entries(reader, |entry| {
        listing.add(entry).map_err(|err| err.to_string())
    })?;
    Ok(listing)
}

/// Reads the records, handing each entry to `each` as it is read; what
/// `each` refuses is an error naming the record.
fn read_entries(
    reader: impl Read,
    mut each: impl FnMut(Entry<'_>) -> std::result::Result<(), String>,
) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut owners = Owners::default();
    let mut fields: [Vec<u8>; 5] = Default::default();
    let mut first = Vec::new();
    if read_field(&mut reader, &mut first)? && first == OWNERS {
        owners = Owners::read(&mut reader)?;
        first.clear();
    }
    for record in 1.. {
        let mut complete = 0;
        for (n, field) in fields.iter_mut().enumerate() {
            field.clear();
            let ended = if record == 1 && n == 0 && !first.is_empty() {
                field.append(&mut first);
                true
            } else {
                read_field(&mut reader, field)?
            };
            if !ended {
                break;
            }
            complete += 1;
        }
        match complete {
            5 => {
                each(entry(&owners, record, &fields)?).map_err(|what| bad(record, &fields, what))?
            }
            0 if fields[0].is_empty() => break,
            _ => {
                return Err(StoreError::Listing(format!(
                    "record {record} is cut off after {complete} of its 5 fields (was find interrupted?)"
                )));
            }
        }
    }
    Ok(())
}

/// Reads one NUL-ended field into `field` (without the NUL); false when
/// the stream ended first (what was read is left in `field`).
fn read_field(reader: &mut impl BufRead, field: &mut Vec<u8>) -> Result<bool> {
    reader
        .read_until(0, field)
        .map_err(|error| StoreError::Io {
            action: "reading",
            path: "the file listing".into(),
            error,
        })?;
    Ok(field.pop_if(|b| *b == 0).is_some())
}

/// Owner names by number, from the tables ahead of the records.
#[derive(Debug, Default)]
struct Owners {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Owners {
    /// Reads the `passwd` lines, then the `group` lines, each table ended
    /// by an empty field; `name:password:id:...`, as both databases write.
    fn read(reader: &mut impl BufRead) -> Result<Self> {
        let mut owners = Self::default();
        for table in [&mut owners.users, &mut owners.groups] {
            let mut line = Vec::new();
            loop {
                line.clear();
                if !read_field(reader, &mut line)? {
                    return Err(StoreError::Listing(
                        "the owner tables ahead of the records are cut off".into(),
                    ));
                }
                if line.is_empty() {
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let mut parts = text.split(':');
                let (Some(name), Some(id)) = (parts.next(), parts.nth(1)) else {
                    continue; // a comment or a line of another shape
                };
                if let Ok(id) = id.parse() {
                    // The first line for an id wins, as getpwuid's does.
                    table.entry(id).or_insert_with(|| name.to_string());
                }
            }
        }
        Ok(owners)
    }
}

/// An error naming a record.
fn bad(record: u64, fields: &[Vec<u8>; 5], what: String) -> StoreError {
    StoreError::Listing(format!(
        "record {record} (`{}`): {what}",
        String::from_utf8_lossy(&fields[3])
    ))
}

/// The entry one record describes.
fn entry<'f>(owners: &Owners, record: u64, fields: &'f [Vec<u8>; 5]) -> Result<Entry<'f>> {
    let [header, user, group, path, target] = fields;
    let (stat, readable) = parse_header(header).map_err(|what| bad(record, fields, what))?;
    let target = match stat.kind {
        NodeKind::Symlink => Some(target.clone()),
        _ if target.is_empty() => None,
        _ => {
            return Err(bad(
                record,
                fields,
                "only a symlink has a link target: the fields are out of step".into(),
            ));
        }
    };
    Ok(Entry {
        path,
        user: owner(user, stat.uid).or_else(|| owners.users.get(&stat.uid).cloned()),
        group: owner(group, stat.gid).or_else(|| owners.groups.get(&stat.gid).cloned()),
        stat,
        target,
        readable,
    })
}

/// What a record's numbers say, and whether find could read the entry.
fn parse_header(header: &[u8]) -> std::result::Result<(Stat, bool), String> {
    let text = std::str::from_utf8(header).map_err(|_| "its numbers are not text".to_string())?;
    let tokens: Vec<&str> = text.split(' ').collect();
    let [
        kind,
        mode,
        uid,
        gid,
        size,
        mtime,
        ctime,
        inode,
        device,
        links,
    ] = tokens[..]
    else {
        return Err(format!("expected type and 9 numbers, found `{text}`"));
    };
    let (kind, readable) = match kind {
        "f" => (NodeKind::File, true),
        "d" => (NodeKind::Dir, true),
        UNREADABLE_DIR => (NodeKind::Dir, false),
        "l" => (NodeKind::Symlink, true),
        "c" => (NodeKind::Chardev, true),
        "b" => (NodeKind::Blockdev, true),
        "p" => (NodeKind::Fifo, true),
        "s" => (NodeKind::Socket, true),
        other => return Err(format!("unknown type `{other}`")),
    };
    let mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("the mode `{mode}` is not octal permission bits"))?;
    let uid = number(uid, "uid")?;
    let gid = number(gid, "gid")?;
    let stat = Stat {
        kind,
        mode,
        uid,
        gid,
        size: number(size, "size")?,
        mtime_ns: time(mtime).ok_or_else(|| format!("the mtime `{mtime}` is not a time"))?,
        ctime_ns: time(ctime).ok_or_else(|| format!("the ctime `{ctime}` is not a time"))?,
        inode: number(inode, "inode")?,
        device: number(device, "device")?,
        links: number(links, "link count")?,
        // find has no directive for it: a tar header brings it.
        rdev: None,
    };
    Ok((stat, readable))
}

fn number<T: FromStr>(text: &str, what: &str) -> std::result::Result<T, String> {
    text.parse()
        .map_err(|_| format!("the {what} `{text}` is not a number"))
}

/// A time as find's `%T@` prints it: the seconds of `st_mtim`, a point,
/// then its nanoseconds and a zero (`-2.2500000000` is 2 s before the epoch
/// plus 0.25 s), in nanoseconds since the epoch, as `stat` gives it.
fn time(text: &str) -> Option<i64> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &fraction[..fraction.len().min(9)];
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// find prints the number for an owner without a name; that is no name.
fn owner(name: &[u8], id: u32) -> Option<String> {
    let name = String::from_utf8_lossy(name);
    (!name.is_empty() && name != id.to_string()).then(|| name.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_times_count_nanoseconds_up_from_the_seconds() {
        assert_eq!(
            time("1700000000.1234567890"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(time("-2.2500000000"), Some(-1_750_000_000));
        assert_eq!(time("5"), Some(5_000_000_000));
        assert_eq!(time("5.5"), Some(5_500_000_000));
        for bad in ["", "x", "1.2e3", "1.-5", "99999999999999999999"] {
            assert_eq!(time(bad), None, "{bad}");
        }
    }

    #[test]
    fn owner_tables_name_the_owners_the_records_give_by_number() {
        let mut stream = b"nightshift-owners\0root:x:0:0:root:/root:/bin/sh\0www-data:x:33:33::/var/www:/usr/sbin/nologin\0\0root:x:0:\0adm:x:4:alice\0\0".to_vec();
        stream.extend_from_slice(b"d 755 0 0 4096 1.0 1.0 2 1 3\0\0\0/srv\0\0");
        stream.extend_from_slice(b"f 640 33 4 5 1.0 1.0 3 1 1\0\0\0/srv/a\0\0");
        stream.extend_from_slice(b"f 600 1000 1000 5 1.0 1.0 4 1 1\0\0\0/srv/b\0\0");
        let mut seen = HashMap::new();
        read_entries(&stream[..], |entry| {
            seen.insert(entry.path.to_vec(), (entry.user, entry.group));
            Ok(())
        })
        .expect("a listing");
        assert_eq!(seen.len(), 3);
        let node = |name: &[u8]| &seen[&[&b"/srv/"[..], name].concat()];
        assert_eq!(node(b"a").0.as_deref(), Some("www-data"));
        assert_eq!(node(b"a").1.as_deref(), Some("adm"));
        assert_eq!(node(b"b").0, None, "an unknown uid stays a number");
        assert!(
            read_listing(&b"nightshift-owners\0root:x:0:0\0"[..]).is_err(),
            "cut-off tables"
        );
    }
}
