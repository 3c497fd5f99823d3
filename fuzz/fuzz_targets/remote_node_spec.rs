//! RemoteNode manifests as `kubemaker cib apply` reads them: YAML documents, validated into
//! desired nodes, rendered as the CIB primitives. Every node that passes validation renders to
//! XML that parses again.
#![no_main]

use kubemaker::cib::DesiredNode;
use kubemaker::cib::spec::RemoteNodeManifest;
use kubemaker::wire::Element;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifests) = RemoteNodeManifest::all_from_yaml(text) else {
        return;
    };
    for manifest in &manifests {
        if let Ok(node) = DesiredNode::from_manifest(manifest) {
            let xml = node.render().to_xml();
            Element::parse(&xml).unwrap_or_else(|e| {
                panic!("a valid node renders XML that does not parse: {e}\n{xml}")
            });
        }
    }
});
