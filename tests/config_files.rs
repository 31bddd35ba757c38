//! The shipped demo config loads from disk, and unreadable files are reported by name.

use std::path::Path;

use bkvy::config::load;

#[test]
fn demo_config_loads_from_disk() {
    let config = match load(Path::new("config/demo")) {
        Ok(c) => c,
        Err(problems) => panic!("demo config has problems: {problems:#?}"),
    };
    assert_eq!(config.providers.len(), 4);
    assert_eq!(config.scenarios.len(), 7);
}

#[test]
fn missing_routing_file_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "config/demo/providers.json",
        dir.path().join("providers.json"),
    )
    .unwrap();
    let problems = load(dir.path()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "routing.json");
    assert!(
        problems[0].message.starts_with("cannot read "),
        "{}",
        problems[0]
    );
}

#[test]
fn broken_files_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("providers.json"), "{\"openai\": }").unwrap();
    let problems = load(dir.path()).unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["providers.json", "routing.json"]);
    assert!(
        problems[0].message.contains("line 1, column 12"),
        "{}",
        problems[0]
    );
}

/// A `clients.json` that is there but cannot be read (here a link to nowhere) is an error,
/// never "no client keys": an unreadable file must not open the door.
#[test]
fn a_clients_file_that_cannot_be_read_is_a_problem_not_an_open_door() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["providers.json", "routing.json"] {
        std::fs::copy(Path::new("config/demo").join(f), dir.path().join(f)).unwrap();
    }
    assert!(load(dir.path()).unwrap().clients.is_none());
    std::os::unix::fs::symlink(
        dir.path().join("gone.json"),
        dir.path().join("clients.json"),
    )
    .unwrap();
    let problems = load(dir.path()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "clients.json");
}
