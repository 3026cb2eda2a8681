//! Link flags for the binaries.
//!
//! `-z pack-relative-relocs` stores the position-independent executable's relative relocations as a
//! bitmap (DT_RELR) instead of 24 bytes each: the release binary's `.rela.dyn` shrinks from about
//! 1 MiB to a few KiB, and the dynamic loader no longer reads that MiB at every start, which kept it in
//! the process's resident memory. Needs GNU ld >= 2.38 to link and glibc >= 2.36 to run (Debian
//! bookworm and the image's base have both); `CONNECT_OPERATOR_NO_RELR=1` leaves the flag out for an
//! older toolchain or C library. Linux with glibc only.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CONNECT_OPERATOR_NO_RELR");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu && std::env::var_os("CONNECT_OPERATOR_NO_RELR").is_none() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
