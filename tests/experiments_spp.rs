//! `nfbench spp --compare A,B,C --out fig.png`: every network is measured (its table printed) and drawn in one
//! picture, one colour per network.

use std::process::Command;

#[test]
fn spp_compare_draws_every_network_in_one_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("fig.png");
    let out = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "spp",
            "--compare",
            "bn_resnet_cifar,nf_resnet_cifar,plain_resnet_cifar",
            "--batch",
            "4",
            "--out",
        ])
        .arg(&png)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["bn_resnet_cifar", "nf_resnet_cifar", "plain_resnet_cifar"] {
        assert!(
            stdout.contains(&format!("{name}: signal propagation at init")),
            "{stdout}"
        );
    }
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1200, 1300));
    for color in [[31u8, 119, 180], [255, 127, 14], [44, 160, 44]] {
        assert!(
            img.pixels().any(|p| p.0 == color),
            "no line of colour {color:?}"
        );
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_nfbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["spp", "--compare", "nf_resnet_cifar"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--out"));
}
