//! The appliance files: the systemd unit verifies, the default config is
//! valid and documents every option, the install script works into DESTDIR.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn default_config_is_valid_and_complete() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["config", "check"])
        .arg(root().join("appliance/berth.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // every key of the effective config appears in the documented file
    let documented = std::fs::read_to_string(root().join("appliance/berth.toml")).unwrap();
    let effective = toml::from_str::<toml::Table>(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let defaults = toml::Table::try_from(berth::config::Config::default()).unwrap();
    assert_eq!(
        effective, defaults,
        "appliance/berth.toml must hold the defaults"
    );
    for (k, v) in &effective {
        match v {
            toml::Value::Table(t) => {
                assert!(
                    documented.contains(&format!("[{k}]")),
                    "section {k} undocumented"
                );
                for (sub, v) in t {
                    let Some(inner) = v.as_table().filter(|_| sub != "groups") else {
                        assert!(
                            documented.contains(&format!("\n{sub} = ")),
                            "{k}.{sub} undocumented"
                        );
                        continue;
                    };
                    // a nested section ([auth.token]): documented with its keys
                    assert!(
                        documented.contains(&format!("[{k}.{sub}]")),
                        "section {k}.{sub} undocumented"
                    );
                    for key in inner.keys() {
                        assert!(
                            documented.contains(&format!("\n{key} = ")),
                            "{k}.{sub}.{key} undocumented"
                        );
                    }
                }
            }
            _ => assert!(
                documented.contains(&format!("\n{k} = "))
                    || documented.contains(&format!("# [[{k}]]")),
                "{k} undocumented"
            ),
        }
    }
}

#[test]
fn install_into_destdir_and_unit_verifies() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("appliance/install.sh"))
        .arg(env!("CARGO_BIN_EXE_berth"))
        .env("DESTDIR", dest.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/local/bin/berth",
        "etc/berth/berth.toml",
        "etc/systemd/system/berth.service",
    ] {
        assert!(dest.path().join(f).is_file(), "{f} not installed");
    }
    let Ok(which) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: unit not verified");
        return;
    };
    assert!(which.status.success());
    // verify the unit as installed, pointing at the installed binary
    let unit =
        std::fs::read_to_string(dest.path().join("etc/systemd/system/berth.service")).unwrap();
    let bin = dest.path().join("usr/local/bin/berth");
    let check = dest.path().join("berth.service");
    std::fs::write(
        &check,
        unit.replace("/usr/local/bin/berth", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&check)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=berth",
        "StateDirectory=berth",
    ] {
        assert!(unit.contains(hardening), "{hardening} missing");
    }
}
