//! Directory listings. A tree is stored as a chunk of its own (JSON, then
//! zstd like any chunk), so a directory whose entries did not change gets the
//! same id and is stored once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ChunkId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Chardev,
    Blockdev,
    Fifo,
    Socket,
}

/// One entry of a directory. Names and link targets are bytes, as on Linux;
/// they are written as JSON strings when they are UTF-8 and as byte arrays
/// when they are not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "bytes_or_text")]
    pub name: Vec<u8>,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Change detection only: ctime, inode and device as the backup saw them.
    #[serde(default)]
    pub ctime_ns: i64,
    #[serde(default)]
    pub inode: u64,
    #[serde(default)]
    pub device: u64,
    /// Hard-link count; entries with more than one link and the same
    /// device and inode are restored as one file with several names.
    #[serde(default = "one")]
    pub links: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_bytes_or_text"
    )]
    pub target: Option<Vec<u8>>,
    /// Device number of a character or block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ChunkId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<ChunkId>,
}

fn one() -> u64 {
    1
}

impl Node {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Whether the name is one entry of one directory: no slash, no NUL, not
    /// empty, `.` or `..`. Anything else could walk out of a restore target.
    pub fn has_safe_name(&self) -> bool {
        !self.name.is_empty()
            && self.name != b"."
            && self.name != b".."
            && !self.name.contains(&b'/')
            && !self.name.contains(&0)
    }
}

/// A directory's entries, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a tree serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|err| format!("its tree is unreadable: {err}"))
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|at| &self.nodes[at])
    }

    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesOrText {
    Text(String),
    Bytes(Vec<u8>),
}

fn to_repr(bytes: &[u8]) -> BytesOrText {
    match std::str::from_utf8(bytes) {
        Ok(text) => BytesOrText::Text(text.to_string()),
        Err(_) => BytesOrText::Bytes(bytes.to_vec()),
    }
}

fn from_repr(repr: BytesOrText) -> Vec<u8> {
    match repr {
        BytesOrText::Text(text) => text.into_bytes(),
        BytesOrText::Bytes(bytes) => bytes,
    }
}

mod bytes_or_text {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        to_repr(bytes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        BytesOrText::deserialize(d).map(from_repr)
    }
}

mod opt_bytes_or_text {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        bytes.as_deref().map(to_repr).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<BytesOrText>::deserialize(d).map(|repr| repr.map(from_repr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            user: Some("root".into()),
            group: None,
            size: 0,
            mtime_ns: 1,
            ctime_ns: 2,
            inode: 3,
            device: 4,
            links: 1,
            target: Some(b"../\xff".to_vec()),
            rdev: None,
            content: vec![],
            subtree: None,
        }
    }

    #[test]
    fn names_that_are_not_utf8_survive() {
        let tree = Tree {
            nodes: vec![node(b"caf\xc3\xa9\nline"), node(b"\xff\xfe")],
        };
        let text = String::from_utf8(tree.encode()).expect("JSON is UTF-8");
        assert!(text.contains(r#""name":"café\nline""#), "{text}");
        assert_eq!(Tree::decode(text.as_bytes()), Ok(tree));
    }

    #[test]
    fn names_that_could_escape_are_unsafe() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert!(!node(bad).has_safe_name(), "{bad:?}");
        }
        assert!(node(b"..hidden").has_safe_name());
    }
}
