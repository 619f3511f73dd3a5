//! What travels between managers: the session token (JSON metadata, in the
//! `X-session-token` header) and the session itself, in a binary framing
//! with no base64, so that a transfer costs the session's bytes plus a few
//! bytes per field.
//!
//! Framing: the magic `EDGS2`, then three sections — the portable
//! metadata, the data, the request-id records, as the store exports them —
//! each a `u32` count of entries, every entry two length-prefixed (`u32`,
//! big endian) byte strings.
//!
//! ```
//! use edge_store::Exported;
//! use offloading_manager::wire::{decode_transfer, encode_transfer};
//!
//! let mut session = Exported::default();
//! session.data.push((b"photo".to_vec(), vec![0u8; 1000]));
//! let bytes = encode_transfer(&session);
//! assert!(bytes.len() < 1000 + 64);
//! assert_eq!(decode_transfer(&bytes).unwrap(), session);
//! ```

use edge_store::Exported;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"EDGS2";

/// A session's metadata as it travels in `X-session-token` (thesis B.2
/// names, plus the migration's epoch).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionToken {
    /// The session's name.
    pub session: String,
    /// Its proprietary node.
    pub proprietary_location: String,
    /// The node that holds it (the source of a migration).
    pub current_location: String,
    /// Creation time, ISO-8601.
    #[serde(default)]
    pub timestamp_creation: String,
    /// Last access time, ISO-8601.
    #[serde(default)]
    pub timestamp_last_access: String,
    /// The epoch the migration will give the session.
    pub epoch: u64,
}

/// The request of `update-session`: a compare-and-set of the session's
/// location at its proprietary node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocationUpdate {
    /// The session's name.
    pub session: String,
    /// The location the proprietary node must still record…
    pub expected_location: String,
    /// …with this epoch.
    pub expected_epoch: u64,
    /// The new location.
    pub current_location: String,
    /// The new epoch (greater than `expected_epoch`).
    pub epoch: u64,
}

/// What the proprietary node records for a session (answer of
/// `update-session`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// Where the session is.
    pub current_location: String,
    /// Its epoch.
    pub epoch: u64,
}

/// A transfer body that is not one.
#[derive(Debug, thiserror::Error)]
#[error("malformed session transfer: {0}")]
pub struct MalformedTransfer(&'static str);

/// Encodes an exported session.
pub fn encode_transfer(session: &Exported) -> Vec<u8> {
    let sections = [&session.meta, &session.data, &session.ids];
    let entries: usize = sections.iter().map(|s| s.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 12 + entries * 8 + session.payload_bytes());
    out.extend_from_slice(MAGIC);
    for section in sections {
        out.extend_from_slice(&(section.len() as u32).to_be_bytes());
        for (key, value) in section {
            for part in [key, value] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
    }
    out
}

/// Decodes a transfer.
pub fn decode_transfer(bytes: &[u8]) -> Result<Exported, MalformedTransfer> {
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or(MalformedTransfer("bad magic"))?;
    let take_u32 = |rest: &mut &[u8]| -> Result<usize, MalformedTransfer> {
        let (head, tail) = rest
            .split_at_checked(4)
            .ok_or(MalformedTransfer("truncated length"))?;
        *rest = tail;
        Ok(u32::from_be_bytes(head.try_into().expect("four bytes")) as usize)
    };
    let mut sections: [Vec<(Vec<u8>, Vec<u8>)>; 3] = Default::default();
    for section in &mut sections {
        let count = take_u32(&mut rest)?;
        for _ in 0..count {
            let mut pair = [Vec::new(), Vec::new()];
            for part in &mut pair {
                let len = take_u32(&mut rest)?;
                let (head, tail) = rest
                    .split_at_checked(len)
                    .ok_or(MalformedTransfer("truncated value"))?;
                *part = head.to_vec();
                rest = tail;
            }
            let [key, value] = pair;
            section.push((key, value));
        }
    }
    if !rest.is_empty() {
        return Err(MalformedTransfer("trailing bytes"));
    }
    let [meta, data, ids] = sections;
    Ok(Exported { meta, data, ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let transfer = Exported {
            meta: vec![(b"prop".to_vec(), b"milan".to_vec())],
            data: vec![
                (b"k".to_vec(), (0..=255u8).collect()),
                (b"".to_vec(), b"".to_vec()),
            ],
            ids: vec![(b"id".to_vec(), b"1700000000000".to_vec())],
        };
        let bytes = encode_transfer(&transfer);
        assert_eq!(decode_transfer(&bytes).unwrap(), transfer);
        assert!(decode_transfer(b"nope").is_err());
        assert!(decode_transfer(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_transfer(&longer).is_err());
    }

    #[test]
    fn a_large_session_costs_little_more_than_its_bytes() {
        let mut transfer = Exported::default();
        transfer
            .data
            .push((b"file".to_vec(), vec![7u8; 10 * 1024 * 1024]));
        let encoded = encode_transfer(&transfer).len();
        assert!(encoded as f64 <= 1.1 * transfer.payload_bytes() as f64 + 64.0);
    }
}
