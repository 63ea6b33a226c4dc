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
    // The binary the build stage produces (stripped out of the cached
    // target folder) is the one copied and run.
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("strip -o /destination-duckdb target/release/destination-duckdb"));
    assert!(dockerfile
        .contains("COPY --from=build /destination-duckdb /usr/local/bin/destination-duckdb"));
    // Airbyte's convention, numeric so that Kubernetes' runAsNonRoot can
    // check it: uid and gid 1000, named airbyte.
    assert_eq!(dockerfile_values("USER"), vec!["1000:1000".to_string()]);
    assert!(dockerfile.contains("useradd --uid 1000 --gid 1000"));
}

/// The README's build command, which `.ci/run` takes from the README and
/// runs, tags the image with the crate version.
#[test]
fn readme_build_command_tags_the_crate_version() {
    let command = format!(
        "DOCKER_BUILDKIT=1 docker build -t {}:{} .",
        metadata("dockerRepository"),
        env!("CARGO_PKG_VERSION")
    );
    let readme = read("README.md");
    let builds: Vec<&str> = readme
        .lines()
        .filter(|l| l.contains("docker build"))
        .collect();
    assert!(!builds.is_empty());
    for line in builds {
        assert!(line.contains(&command), "{line:?} is not {command:?}");
    }
}
