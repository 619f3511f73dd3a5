//! CPU limits for function processes, as `limits: cpu: 500m` asks in a
//! stack file: each limited function runs in a cgroup (v1 `cpu` controller)
//! of its own, `<root>/edge-devnet/<supervisor pid>/<node>.<function>`,
//! with `cpu.cfs_quota_us` = limit × `cpu.cfs_period_us`.
//!
//! Where the controller is missing or not writable (no cgroup v1, not
//! root), the limit is skipped and the function's log says why.
//!
//! ```
//! use edge_devnet::cpu::parse_cpu;
//!
//! assert_eq!(parse_cpu("500m").unwrap(), 500);
//! assert_eq!(parse_cpu("2").unwrap(), 2000);
//! assert_eq!(parse_cpu("0.25").unwrap(), 250);
//! assert!(parse_cpu("fast").is_err());
//! ```

use std::path::{Path, PathBuf};

/// Where the cgroup v1 `cpu` controller is mounted on Linux.
pub const CPU_CONTROLLER: &str = "/sys/fs/cgroup/cpu";
const PERIOD_US: u64 = 100_000;

/// Millicores of a Kubernetes-style CPU quantity (`500m`, `1`, `0.5`).
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let millis = if let Some(m) = text.strip_suffix('m') {
        m.parse::<u64>().ok()
    } else {
        text.parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(|c| (c * 1000.0).round() as u64)
    };
    match millis {
        Some(m) if m > 0 => Ok(m),
        _ => Err(format!(
            "limits.cpu {text:?} is not a CPU quantity like 500m, 1 or 0.5"
        )),
    }
}

/// The cgroup of one limited function.
#[derive(Debug)]
pub struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    /// The cgroup for `node`'s `function` in the devnet whose supervisor
    /// is this process, limited to `millicores`.
    pub fn create(node: &str, function: &str, millicores: u64) -> Result<CpuLimit, String> {
        let dir = Path::new(CPU_CONTROLLER)
            .join("edge-devnet")
            .join(std::process::id().to_string())
            .join(format!("{node}.{function}"));
        let failed =
            |what: &str, error: std::io::Error| format!("{what} {}: {error}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| failed("cannot create the cgroup", e))?;
        std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())
            .map_err(|e| failed("cannot set cpu.cfs_period_us of", e))?;
        std::fs::write(
            dir.join("cpu.cfs_quota_us"),
            (millicores * PERIOD_US / 1000).to_string(),
        )
        .map_err(|e| failed("cannot set cpu.cfs_quota_us of", e))?;
        Ok(CpuLimit { dir })
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("cannot move pid {pid} into {}: {e}", self.dir.display()))
    }

    /// The cgroup's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // Succeeds once the processes in it have exited.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes this supervisor's (now empty) cgroups.
pub fn remove_all() {
    let dir = Path::new(CPU_CONTROLLER)
        .join("edge-devnet")
        .join(std::process::id().to_string());
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
    // The parent too, unless another devnet still uses it.
    let _ = std::fs::remove_dir(Path::new(CPU_CONTROLLER).join("edge-devnet"));
}
