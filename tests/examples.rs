//! Every example a user copies renders to CIB XML (`kubemaker render -f`).

use std::process::Command;

#[test]
fn every_example_renders() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_kubemaker"))
            .arg("render")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run kubemaker render");
        let xml = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(xml.contains("<primitive "), "{}: {xml}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 2,
        "expected the remote and guest examples, found {seen}"
    );
}
