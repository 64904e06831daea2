//! The Kubernetes manifests against the Kubernetes API's own schema
//! (`kubernetes-validate` from PyPI, in the test venv that `scripts/test`
//! makes), and what the network policies let in.

use std::collections::BTreeSet;
use std::process::Command;

use serde_norway::Value as Yaml;

use super::{files_under, labels_cover, repo, str_of, yaml_documents};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.34.1";

#[test]
fn manifests_validate_against_the_kubernetes_schema() {
    let tool = hrsync_tests::tools_dir().join("venv/bin/kubernetes-validate");
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/test, which installs it",
        tool.display()
    );
    let dir = repo().join("deploy/k8s");
    let manifests: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    assert!(manifests.len() >= 5, "{manifests:?}");
    let output = Command::new(&tool)
        .args(["--kubernetes-version", KUBERNETES, "--strict"])
        .args(&manifests)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let passed = text.matches(" passed for resource ").count();
    let objects: usize = manifests.iter().map(|m| yaml_documents(m).len()).sum();
    assert_eq!(passed, objects, "every object validated:\n{text}");
}

#[test]
fn network_policies_let_in_only_the_ports_the_pods_serve() {
    let dir = repo().join("deploy/k8s");
    let objects: Vec<Yaml> = files_under(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .flat_map(|p| yaml_documents(p))
        .collect();
    let policies: Vec<&Yaml> = objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("NetworkPolicy"))
        .collect();
    let mut deployments = 0;
    for deployment in objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Deployment"))
    {
        deployments += 1;
        let name = str_of(&deployment["metadata"]["name"], "name");
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let selecting: Vec<&&Yaml> = policies
            .iter()
            .filter(|p| labels_cover(labels, &p["spec"]["podSelector"]["matchLabels"]))
            .collect();
        assert!(
            !selecting.is_empty(),
            "{name}: no network policy isolates it"
        );
        let allowed: BTreeSet<u64> = selecting
            .iter()
            .flat_map(|p| p["spec"]["ingress"].as_sequence().into_iter().flatten())
            .flat_map(|rule| rule["ports"].as_sequence().into_iter().flatten())
            .filter_map(|port| port["port"].as_u64())
            .collect();
        let served: BTreeSet<u64> = deployment["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_sequence().into_iter().flatten())
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        assert_eq!(allowed, served, "{name}: ports let in vs ports served");
    }
    assert_eq!(deployments, 5, "one Deployment per role");
}
