//! Finding the local programs the deployer runs (`kubectl`, `faas-cli`),
//! with an environment variable to override each.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The program to run: the value of `override_var` if set (a path or a
/// name looked up in `PATH`), else `default_name` looked up in `PATH`.
/// `None` if it cannot be found.
pub(crate) fn find_program(override_var: &str, default_name: &str) -> Option<PathBuf> {
    let wanted: OsString = std::env::var_os(override_var)
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default_name.into());
    let wanted = Path::new(&wanted);
    if wanted.components().count() > 1 {
        return is_executable(wanted).then(|| wanted.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(wanted))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Shell-style quoting of one argument, for showing commands to people.
pub(crate) fn shell_quote(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        argument.to_owned()
    } else {
        format!("'{}'", argument.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_arguments() {
        assert_eq!(shell_quote("--gateway=http://a:1"), "--gateway=http://a:1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote(r#"{"a":1}"#), r#"'{"a":1}'"#);
    }

    #[test]
    fn programs_are_found_in_path() {
        assert!(find_program("DEPLOYER_TEST_UNSET_VARIABLE", "sh").is_some());
        assert!(
            find_program(
                "DEPLOYER_TEST_UNSET_VARIABLE",
                "surely-no-such-program-here"
            )
            .is_none()
        );
    }
}
