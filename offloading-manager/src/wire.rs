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
//! Neither side copies a big value: the encoding is a list of chunks that
//! share the exported values, and the decoding slices the received body.
//!
//! ```
//! use edge_store::Exported;
//! use offloading_manager::wire::{decode_transfer, encode_transfer};
//!
//! let mut session = Exported::default();
//! session.data.push(("photo".into(), vec![0u8; 1000].into()));
//! let bytes: Vec<u8> = encode_transfer(&session).unwrap().concat();
//! assert!(bytes.len() < 1000 + 64);
//! assert_eq!(decode_transfer(&bytes.into()).unwrap(), session);
//! ```

use bytes::{Bytes, BytesMut};
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

/// Parts at least this long travel as chunks of their own, shared rather
/// than copied into the framing.
const SHARED_MIN: usize = 16 * 1024;

/// Encodes an exported session, as the chunks of the body in order (their
/// concatenation is the transfer). Fails on a section of 2^32 entries or
/// more, or a part of 4 GiB or more (which Redis cannot hold anyway).
pub fn encode_transfer(session: &Exported) -> Result<Vec<Bytes>, MalformedTransfer> {
    let length = |n: usize| {
        u32::try_from(n)
            .map(u32::to_be_bytes)
            .map_err(|_| MalformedTransfer("a part or section too large for the framing"))
    };
    let mut chunks = Vec::new();
    let mut framing = BytesMut::with_capacity(4096);
    framing.extend_from_slice(MAGIC);
    for section in [&session.meta, &session.data, &session.ids] {
        framing.extend_from_slice(&length(section.len())?);
        for (key, value) in section {
            for part in [key, value] {
                framing.extend_from_slice(&length(part.len())?);
                if part.len() >= SHARED_MIN {
                    chunks.push(framing.split().freeze());
                    chunks.push(part.clone());
                } else {
                    framing.extend_from_slice(part);
                }
            }
        }
    }
    chunks.push(framing.freeze());
    Ok(chunks)
}

/// Decodes a transfer; the session's bytes are slices of `bytes`.
pub fn decode_transfer(bytes: &Bytes) -> Result<Exported, MalformedTransfer> {
    if !bytes.starts_with(MAGIC) {
        return Err(MalformedTransfer("bad magic"));
    }
    let mut at = MAGIC.len();
    let take_u32 = |at: &mut usize| -> Result<usize, MalformedTransfer> {
        let head = bytes
            .get(*at..*at + 4)
            .ok_or(MalformedTransfer("truncated length"))?;
        *at += 4;
        Ok(u32::from_be_bytes(head.try_into().expect("four bytes")) as usize)
    };
    let mut sections: [Vec<(Bytes, Bytes)>; 3] = Default::default();
    for section in &mut sections {
        let count = take_u32(&mut at)?;
        for _ in 0..count {
            let mut pair = [Bytes::new(), Bytes::new()];
            for part in &mut pair {
                let len = take_u32(&mut at)?;
                let end = at
                    .checked_add(len)
                    .filter(|end| *end <= bytes.len())
                    .ok_or(MalformedTransfer("truncated value"))?;
                *part = bytes.slice(at..end);
                at = end;
            }
            let [key, value] = pair;
            section.push((key, value));
        }
    }
    if at != bytes.len() {
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
            meta: vec![("prop".into(), "milan".into())],
            data: vec![
                ("k".into(), (0..=255u8).collect::<Vec<u8>>().into()),
                ("".into(), "".into()),
                ("big".into(), vec![9u8; 3 * SHARED_MIN].into()),
            ],
            ids: vec![("id".into(), "1700000000000".into())],
        };
        let chunks = encode_transfer(&transfer).unwrap();
        let bytes = Bytes::from(chunks.concat());
        assert_eq!(decode_transfer(&bytes).unwrap(), transfer);
        assert!(decode_transfer(&Bytes::from_static(b"nope")).is_err());
        assert!(decode_transfer(&bytes.slice(..bytes.len() - 1)).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode_transfer(&longer.into()).is_err());
        // A declared length past the end is refused, not trusted.
        let mut lying = bytes.to_vec();
        lying[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&[0, 0, 0, 1]);
        lying[MAGIC.len() + 4..MAGIC.len() + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_transfer(&lying.into()).is_err());
    }

    #[test]
    fn a_large_session_costs_little_more_than_its_bytes() {
        let mut transfer = Exported::default();
        let file = Bytes::from(vec![7u8; 10 * 1024 * 1024]);
        transfer.data.push(("file".into(), file.clone()));
        let chunks = encode_transfer(&transfer).unwrap();
        let encoded: usize = chunks.iter().map(Bytes::len).sum();
        assert!(encoded as f64 <= 1.1 * transfer.payload_bytes() as f64 + 64.0);
        // The value travels as itself, not as a copy.
        assert!(chunks.iter().any(|chunk| chunk.as_ptr() == file.as_ptr()));
    }
}
