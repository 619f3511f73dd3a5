//! Compile-time behaviour of `#[blocking]` and `#[nonblocking]`: every
//! supported signature compiles, and every mistake is reported on the token
//! that causes it with a message saying what to write instead.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
