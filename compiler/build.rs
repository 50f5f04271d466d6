//! Generates the parser from `grammar/dmp.lalrpop` (kept at the workspace top level so the
//! grammar is one file a reader can find) into `$OUT_DIR/dmp.rs`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::var("OUT_DIR")?;
    println!("cargo:rerun-if-changed=../grammar/dmp.lalrpop");
    lalrpop::Configuration::new()
        .set_in_dir("../grammar")
        .set_out_dir(out_dir)
        .process()
}
