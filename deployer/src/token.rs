//! The node token: the secret `edge-node-token` that every node's manager
//! presents to the others (SPEC §5, §7). All nodes get the same one.
//!
//! Where it comes from, in order:
//!
//! 1. `--node-token-file <path>`;
//! 2. the environment variable `EDGE_NODE_TOKEN`;
//! 3. the file `<hierarchy file>.node-token` next to the hierarchy file,
//!    generated on first use (32 random bytes, hex, mode 0600) and reused
//!    afterwards. A dry run never creates it.
//!
//! ```
//! use deployer::token::{TokenSource, resolve_node_token};
//! use std::path::Path;
//!
//! let token = resolve_node_token(None, Some("s3cret".into()), Path::new("h.json"), true)?;
//! assert_eq!(token.value.as_deref(), Some("s3cret"));
//! assert_eq!(token.source, TokenSource::Environment);
//! # Ok::<(), deployer::Error>(())
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The environment variable holding the node token.
pub const NODE_TOKEN_VAR: &str = "EDGE_NODE_TOKEN";

/// Where the node token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The file given with `--node-token-file`.
    GivenFile(PathBuf),
    /// The environment variable `EDGE_NODE_TOKEN`.
    Environment,
    /// The token file next to the hierarchy, which existed.
    StoredFile(PathBuf),
    /// The token file next to the hierarchy, just generated.
    GeneratedFile(PathBuf),
    /// The token file next to the hierarchy does not exist; a dry run does
    /// not create it.
    WouldGenerate(PathBuf),
}

/// The node token and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeToken {
    /// The token; `None` only for [`TokenSource::WouldGenerate`].
    pub value: Option<String>,
    /// Where it came from.
    pub source: TokenSource,
}

impl NodeToken {
    /// One line for the output, e.g. `node token: from EDGE_NODE_TOKEN`.
    pub fn describe(&self) -> String {
        match &self.source {
            TokenSource::GivenFile(path) => format!("node token: from {}", path.display()),
            TokenSource::Environment => format!("node token: from {NODE_TOKEN_VAR}"),
            TokenSource::StoredFile(path) => format!("node token: from {}", path.display()),
            TokenSource::GeneratedFile(path) => format!(
                "node token: generated a new one into {} (mode 0600); later deploys reuse it",
                path.display()
            ),
            TokenSource::WouldGenerate(path) => format!(
                "node token: {} does not exist; a deploy would generate it (mode 0600)",
                path.display()
            ),
        }
    }
}

/// `<hierarchy file>.node-token`, in the hierarchy file's folder.
pub fn default_token_path(hierarchy: &Path) -> PathBuf {
    let mut name = hierarchy.file_name().unwrap_or_default().to_os_string();
    name.push(".node-token");
    hierarchy.with_file_name(name)
}

/// Finds the node token (see the module docs). `from_env` is the value of
/// `EDGE_NODE_TOKEN`; with `dry_run` no file is created.
pub fn resolve_node_token(
    given_file: Option<&Path>,
    from_env: Option<String>,
    hierarchy: &Path,
    dry_run: bool,
) -> Result<NodeToken> {
    if let Some(path) = given_file {
        return Ok(NodeToken {
            value: Some(read_token(path)?),
            source: TokenSource::GivenFile(path.to_path_buf()),
        });
    }
    if let Some(value) = from_env.filter(|value| !value.trim().is_empty()) {
        return Ok(NodeToken {
            value: Some(checked(value.trim(), Path::new(NODE_TOKEN_VAR))?),
            source: TokenSource::Environment,
        });
    }
    let path = default_token_path(hierarchy);
    if path.exists() {
        return Ok(NodeToken {
            value: Some(read_token(&path)?),
            source: TokenSource::StoredFile(path),
        });
    }
    if dry_run {
        return Ok(NodeToken {
            value: None,
            source: TokenSource::WouldGenerate(path),
        });
    }
    match generate_token_file(&path) {
        Ok(value) => Ok(NodeToken {
            value: Some(value),
            source: TokenSource::GeneratedFile(path),
        }),
        // Another deploy created it in the meantime: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(NodeToken {
            value: Some(read_token(&path)?),
            source: TokenSource::StoredFile(path),
        }),
        Err(error) => Err(Error::File {
            path,
            message: format!(
                "cannot create the node token file: {error}; pass --node-token-file or set {NODE_TOKEN_VAR}"
            ),
        }),
    }
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::File {
        path: path.to_path_buf(),
        message: format!("cannot read the node token: {error}"),
    })?;
    checked(text.trim(), path)
}

fn checked(token: &str, origin: &Path) -> Result<String> {
    if token.is_empty() {
        return Err(Error::File {
            path: origin.to_path_buf(),
            message: "the node token is empty: write a token into it, or delete the file to have one generated"
                .into(),
        });
    }
    if token.chars().any(char::is_control) {
        return Err(Error::File {
            path: origin.to_path_buf(),
            message: "the node token must be one line of text".into(),
        });
    }
    Ok(token.to_owned())
}

/// 32 random bytes as 64 hex digits.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn generate_token_file(path: &Path) -> std::io::Result<String> {
    let token = random_token()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_sits_next_to_the_hierarchy() {
        assert_eq!(
            default_token_path(Path::new("conf/italy.json")),
            PathBuf::from("conf/italy.json.node-token")
        );
        assert_eq!(
            default_token_path(Path::new("h.json")),
            PathBuf::from("h.json.node-token")
        );
    }

    #[test]
    fn generated_once_then_reused_with_mode_0600() {
        let dir = test_support::tempdir();
        let hierarchy = dir.join("h.json");
        let first = resolve_node_token(None, None, &hierarchy, false).unwrap();
        let path = dir.join("h.json.node-token");
        assert_eq!(first.source, TokenSource::GeneratedFile(path.clone()));
        let value = first.value.unwrap();
        assert_eq!(value.len(), 64);
        assert!(value.chars().all(|c| c.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = resolve_node_token(None, None, &hierarchy, false).unwrap();
        assert_eq!(second.source, TokenSource::StoredFile(path));
        assert_eq!(second.value.unwrap(), value);
    }

    #[test]
    fn a_dry_run_creates_nothing() {
        let dir = test_support::tempdir();
        let hierarchy = dir.join("h.json");
        let token = resolve_node_token(None, None, &hierarchy, true).unwrap();
        assert_eq!(token.value, None);
        assert!(token.describe().contains("would generate"));
        assert!(!dir.join("h.json.node-token").exists());
    }

    #[test]
    fn the_flag_wins_over_the_environment_which_wins_over_the_file() {
        let dir = test_support::tempdir();
        let hierarchy = dir.join("h.json");
        std::fs::write(dir.join("h.json.node-token"), "stored\n").unwrap();
        let given = dir.join("given");
        std::fs::write(&given, "  from-flag \n").unwrap();
        let token =
            resolve_node_token(Some(&given), Some("env".into()), &hierarchy, false).unwrap();
        assert_eq!(token.value.as_deref(), Some("from-flag"));
        let token = resolve_node_token(None, Some("env".into()), &hierarchy, false).unwrap();
        assert_eq!(token.value.as_deref(), Some("env"));
        let token = resolve_node_token(None, Some(" ".into()), &hierarchy, false).unwrap();
        assert_eq!(token.value.as_deref(), Some("stored"));
    }

    #[test]
    fn empty_or_missing_token_files_are_errors() {
        let dir = test_support::tempdir();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let error = resolve_node_token(Some(&empty), None, Path::new("h.json"), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty"), "{error}");
        let error = resolve_node_token(Some(&dir.join("nope")), None, Path::new("h.json"), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot read the node token"), "{error}");
    }
}
