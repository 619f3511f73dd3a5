//! The devnet's state file, `<dir>/state.json`: what `up` started (nodes,
//! their gateways and Redis servers, the functions deployed and their
//! processes), written by the supervisor after every change and read by
//! `status` and `down`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything one devnet runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DevnetState {
    /// The supervisor process, parent of every other process.
    pub supervisor_pid: u32,
    /// Whether every node is up.
    pub ready: bool,
    /// When `up` started (RFC 3339).
    pub started_at: String,
    /// The resolved hierarchy file (gateways, Redis addresses, passwords).
    pub hierarchy_file: PathBuf,
    /// The nodes, in the hierarchy's pre-order.
    pub nodes: Vec<NodeState>,
    /// The emulated links, when `up` was given `--link` or `--access`
    /// (their byte counters as of the last write of this file; the live
    /// ones are at `GET /system/links` on any gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<crate::topology::LinkStatus>,
}

/// One node: a gateway and a Redis server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeState {
    /// `areaName`.
    pub name: String,
    /// The node's level identifier.
    pub level: String,
    /// The gateway's URL.
    pub gateway: String,
    /// The gateway's `admin` password.
    pub password: String,
    /// The Redis server's port on 127.0.0.1.
    pub redis_port: u16,
    /// The Redis server's password.
    pub redis_password: String,
    /// The Redis server's process.
    pub redis_pid: u32,
    /// The functions deployed on this node.
    pub functions: Vec<FunctionState>,
    /// With emulated links: every node's gateway as a client attached to
    /// this node reaches it (through this node's access link and the tree
    /// path), by node name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub clients: std::collections::BTreeMap<String, String>,
}

/// One deployed function's process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionState {
    /// The function's name.
    pub name: String,
    /// The image it was deployed from.
    pub image: String,
    /// The binary the image resolved to.
    pub binary: PathBuf,
    /// Its process, while running.
    pub pid: Option<u32>,
    /// The port it listens on (`EDGE_LISTEN`).
    pub port: u16,
    /// How many times it was restarted after exiting on its own.
    pub restarts: u32,
    /// Its log file.
    pub log: PathBuf,
}

impl DevnetState {
    /// The state file of the devnet in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Reads the state of the devnet in `dir`, if there is one.
    pub fn read(dir: &Path) -> anyhow::Result<Option<DevnetState>> {
        let path = DevnetState::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Ok(Some(serde_json::from_str(&text).with_context(|| {
                    format!("corrupt state file {}", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the state atomically (a reader never sees half a file).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = DevnetState::path(dir);
        let temporary = dir.join(format!(".state.json.{}", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Every process the devnet started, supervisor last.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.functions
                    .iter()
                    .filter_map(|f| f.pid)
                    .chain([n.redis_pid])
            })
            .collect();
        pids.push(self.supervisor_pid);
        pids
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The command line of process `pid`, arguments separated by spaces.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}
