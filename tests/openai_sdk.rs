//! The official `openai` Python package against a running bkvy: a plain completion, a
//! streamed one, tool calls (plain and streamed) and JSON mode on every provider kind,
//! and errors, checked through the SDK's own types.
//!
//! `.ci/run` installs the package into `target/sdk-venv`. Elsewhere, when that virtual
//! environment is missing, the test says so and is skipped; under `CI=true` a missing
//! environment fails the test.

mod common;

use std::path::PathBuf;

use common::*;

fn sdk_python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/sdk-venv/bin/python");
    python.exists().then_some(python)
}

#[actix_web::test]
async fn the_official_openai_sdk_works_against_bkvy() {
    let Some(python) = sdk_python() else {
        assert!(
            std::env::var("CI").is_err(),
            "target/sdk-venv is missing: .ci/run must install the openai package"
        );
        eprintln!("skipped: no target/sdk-venv (create it with: python3 -m venv target/sdk-venv && target/sdk-venv/bin/pip install openai)");
        return;
    };
    let h = start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_client.py");
    let base = format!("{}/v1", h.url);
    // The script blocks; run it off the actix thread so bkvy keeps serving.
    let output = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(base)
            .output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("openai SDK checks passed"), "{stdout}");
}
