//! The Docker image's contract, checked without a Docker engine: the
//! Dockerfile's entrypoint, env and labels agree with `metadata.yaml` and
//! the crate version.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// `key: value` of the `data:` block of metadata.yaml (flat keys only).
fn metadata(key: &str) -> String {
    read("metadata.yaml")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("metadata.yaml has no {key}"))
}

fn dockerfile_values(instruction: &str) -> Vec<String> {
    read("Dockerfile")
        .lines()
        .filter_map(|l| {
            l.strip_prefix(&format!("{instruction} "))
                .map(|v| v.trim().to_string())
        })
        .collect()
}

#[test]
fn dockerfile_matches_metadata_and_crate_version() {
    let labels = dockerfile_values("LABEL");
    let repo = metadata("dockerRepository");
    let tag = metadata("dockerImageTag");
    assert!(
        labels.contains(&format!("io.airbyte.name={repo}")),
        "{labels:?}"
    );
    assert!(
        labels.contains(&format!("io.airbyte.version={tag}")),
        "{labels:?}"
    );
    assert_eq!(
        tag,
        env!("CARGO_PKG_VERSION"),
        "image tag follows the crate version"
    );
    assert_eq!(metadata("connectorType"), "destination");

    let entrypoint = dockerfile_values("ENTRYPOINT");
    assert_eq!(
        entrypoint,
        vec![r#"["/usr/local/bin/destination-duckdb"]"#.to_string()]
    );
    let env = dockerfile_values("ENV");
    assert!(
        env.contains(&r#"AIRBYTE_ENTRYPOINT="/usr/local/bin/destination-duckdb""#.to_string()),
        "{env:?}"
    );
    assert!(
        env.contains(&"DESTINATION_DUCKDB_LOCAL_ROOT=/local".to_string()),
        "{env:?}"
    );
    // The binary the build stage produces is the one copied and run.
    assert!(read("Dockerfile").contains("COPY --from=build /src/target/release/destination-duckdb /usr/local/bin/destination-duckdb"));
}
