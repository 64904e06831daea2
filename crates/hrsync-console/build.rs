//! Embeds every file of `assets/` in the binary: writes the table of names
//! and contents that `src/assets.rs` includes.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read when the script runs, not when it was compiled: one compiled
    // build script may serve checkouts at other paths (a shared target
    // directory).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("assets");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("crates/hrsync-console/assets")
        .map(|entry| entry.expect("an assets entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut table = String::from("&[\n");
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name");
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?}).as_slice()),",
            path.display()
        )
        .expect("writing to a string");
    }
    table.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    std::fs::write(out, table).expect("writing the assets table");
}
