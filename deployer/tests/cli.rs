//! Transcript tests of the command line: help, usage errors, exit codes and
//! the output of every command on the files in `tests/fixtures`. The cases
//! are `tests/cmd/*.toml`, with the expected output beside them; after a
//! deliberate change, refresh them with
//! `TRYCMD=overwrite cargo test -p deployer --test cli` and review the diff.

#[test]
fn transcripts() {
    trycmd::TestCases::new()
        .register_bin(
            "deployer",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_deployer")),
        )
        .env("NO_COLOR", "1")
        .case("tests/cmd/*.toml");
}
