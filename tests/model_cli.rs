//! `nfbench model list|info` and `nfbench spp`, run as a user runs them.

use std::process::Command;

fn nfbench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(args)
        .output()
        .expect("run nfbench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn model_list_names_every_family() {
    let (ok, out, _) = nfbench(&["model", "list"]);
    assert!(ok);
    for name in [
        "nf_resnet_cifar",
        "nf_resnet50",
        "nfnet_f0",
        "nfnet_f7",
        "bn_resnet50",
        "plain_resnet50",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{out}"
        );
    }
    assert!(out.contains("71,489,284"), "F0's count:\n{out}");
}

#[test]
fn model_info_json_has_the_counts_and_the_block_table() {
    let (ok, out, err) = nfbench(&["model", "info", "nfnet_f0", "--json", "--resolution", "256"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["params"].as_u64(), Some(71_489_284));
    assert_eq!(v["flops"].as_u64(), Some(12_384_198_656));
    let blocks = v["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 12);
    assert_eq!(blocks[0]["name"], "s1.b0");
    assert_eq!(blocks[1]["stage"], 2);
    assert_eq!(blocks[1]["stride"], 2);
    // The block after a transition: beta = 1 / sqrt(1 + alpha^2).
    let beta = blocks[2]["beta"].as_f64().unwrap();
    assert!((beta - 1.0 / 1.04f64.sqrt()).abs() < 1e-12);
}

#[test]
fn model_info_counts_at_any_class_count() {
    let (ok, out, _) = nfbench(&["model", "info", "nf_resnet50", "--classes", "10", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // 25,557,048 at 1000 classes, minus the classifier's 2048 * 990 + 990.
    assert_eq!(v["params"].as_u64(), Some(25_557_048 - 2048 * 990 - 990));
    let (ok, text, _) = nfbench(&["model", "info", "nf_resnet50"]);
    assert!(ok);
    assert!(
        text.contains("25,557,048") && text.contains("s4.b2"),
        "{text}"
    );
}

#[test]
fn unknown_model_is_a_clear_error() {
    let (ok, _, err) = nfbench(&["model", "info", "nf_resnet49"]);
    assert!(!ok);
    assert!(
        err.contains("nf_resnet49") && err.contains("model.name"),
        "{err}"
    );
    let (ok, _, err) = nfbench(&["spp", "--model", "nope"]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");
    let (ok, _, err) = nfbench(&["spp", "--model", "nf_resnet_cifar", "--batch", "0"]);
    assert!(!ok);
    assert!(err.contains("--batch"), "{err}");
}

#[test]
fn spp_json_and_text() {
    let args = [
        "spp",
        "--model",
        "nf_resnet_cifar",
        "--batch",
        "4",
        "--resolution",
        "16",
        "--json",
    ];
    let (ok, out, err) = nfbench(&args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 6);
    for b in blocks {
        for key in [
            "stage",
            "index",
            "predicted_var",
            "avg_var",
            "avg_sq_mean",
            "res_avg_var",
        ] {
            assert!(b[key].is_number(), "{key} in {b}");
        }
    }
    assert!((blocks[0]["predicted_var"].as_f64().unwrap() - 1.04).abs() < 1e-12);
    // Same seed, same numbers.
    let (_, again, _) = nfbench(&args);
    assert_eq!(out, again);
    let (ok, text, _) = nfbench(&[
        "spp",
        "--model",
        "nf_resnet_cifar",
        "--batch",
        "2",
        "--resolution",
        "8",
    ]);
    assert!(ok);
    assert!(
        text.contains("s3.b1") && text.contains("predicted") && text.contains('▁'),
        "{text}"
    );
}

/// `nfbench ARGS | head -0`: the reader has closed the pipe before the first line is written, so every write
/// fails (what `| head -1` does to the rest of a listing).
fn into_a_closed_pipe(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nfbench");
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_listing_into_a_closed_pipe_ends_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        &["model", "list"][..],
        &["model", "info", "nfnet_f0"][..],
        &["preset", "fields"][..],
    ] {
        let (status, stderr) = into_a_closed_pipe(args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: ends as a Unix filter does on a closed pipe: {status:?} {stderr}"
        );
    }
}
