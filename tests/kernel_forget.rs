//! Through a real mount: inodes the kernel forgets (FUSE FORGET) leave the
//! daemon, and the files stay readable. In a file of its own because it drops
//! the machine's dentry and inode caches, which would disturb tests that count
//! reads served from the page cache.

mod common;

use std::time::Duration;

use common::{fuse_available, wait_until, Mount};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};

fn inodes_total(mount: &Mount) -> u64 {
    let text = std::fs::read_to_string(mount.path(".gbo-fs/status.json")).expect("status file");
    let status: serde_json::Value = serde_json::from_str(&text).expect("status is JSON");
    status["inodes"]["total"].as_u64().expect("inodes.total")
}

#[test]
fn inodes_the_kernel_forgets_leave_the_daemon_and_the_files_stay_readable() {
    if !fuse_available() {
        return;
    }
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    for i in 0..50 {
        server.put_str(
            "secret",
            &format!("gbo/many/s{i}"),
            &[("k", &format!("v{i}"))],
        );
    }
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    for i in 0..50 {
        let value = std::fs::read(mount.path(&format!("gbo/many/s{i}/k"))).unwrap();
        assert_eq!(value, format!("v{i}").into_bytes());
    }
    let held = inodes_total(&mount);
    assert!(held > 100, "50 folders and 50 files: {held}");

    // The kernel forgets every unused dentry and inode: FORGET reaches gbo-fs.
    let forgotten = wait_until(Duration::from_secs(10), || {
        std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop caches");
        inodes_total(&mount) < 10
    });
    assert!(forgotten, "inodes stayed: {}", inodes_total(&mount));

    for i in 0..50 {
        let value = std::fs::read(mount.path(&format!("gbo/many/s{i}/k"))).unwrap();
        assert_eq!(value, format!("v{i}").into_bytes(), "readable again");
    }
    assert!(inodes_total(&mount) > 100);
}
