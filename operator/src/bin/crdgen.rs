//! Writes the TableSnap CRD: to stdout, or with `--write` into `crds/tablesnap.yaml` and the chart's
//! `charts/tablesnap/crds/tablesnap.yaml` and `deploy/crd.yaml` (paths relative to the repository root); with
//! `--rendered DIR` the sample objects as the operator patches them, one YAML file each.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let yaml = tablesnap_operator::crd::crd_yaml();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--rendered") {
        let dir = Path::new(
            args.get(1)
                .ok_or_else(|| anyhow::anyhow!("usage: crdgen --rendered DIR"))?,
        );
        std::fs::create_dir_all(dir)?;
        for (file, object) in tablesnap_operator::samples::rendered() {
            // JSON, which YAML parsers read without YAML 1.1 surprises (`no` read as false).
            std::fs::write(dir.join(&file), serde_json::to_string_pretty(&object)?)?;
            println!("{file}");
        }
    } else if args.first().map(String::as_str) == Some("--write") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for rel in tablesnap_operator::crd::CRD_FILES {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("CRD path has a parent"))?;
            std::fs::write(&path, &yaml)?;
            eprintln!("wrote {}", path.display());
        }
    } else {
        print!("{yaml}");
    }
    Ok(())
}
